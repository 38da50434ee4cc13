"""Baselines and reference detectors (capslib.study.baselines): networks' shapes, score
direction, a known-answer AUROC floor on a tiny synthetic set, and one end-to-end cell
per method on the embedded digits. CPU, well under two minutes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import capslib.study.baselines as B
from capslib.study.baselines.cnn import PlainCNN, msp_score
from capslib.study.baselines.dbn import DBN
from capslib.study.baselines.deepsad import LeNetDecoder, LeNetEncoder, center, deep_sad_loss
from capslib.study.baselines.ocsvm import gamma_sensitivity, select_ocsvm, selection_fits
from capslib.study.baselines.vae import ConvVAE, negative_elbo
from capslib.core.config import CellSpec
from capslib.data.datasets import Dataset
from capslib.study.methods import METHODS
from capslib.study.protocols import RunContext
from capslib.run.runner import run_cell
from capslib.study.profiles import PROFILES
from capslib.model.scores import auroc
from capslib.data.splits import imbalanced_split, novelty_split
from capslib.run.store.results import ResultsStore

CPU = RunContext(torch.device("cpu"))
SIZE = 20                                                  # small images keep the file fast
CENTRES = [(5, 5), (5, 15), (15, 5), (15, 15), (10, 10)]    # classes 0-3 normal; 4 = the anomaly
FLOOR = 0.9


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: these tiny networks run faster so on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _image(rng, c):
    """A bright 6x6 square near CENTRES[c] (±1 px jitter) on a faint noise background."""
    x = rng.uniform(0, 0.1, (SIZE, SIZE)).astype(np.float32)
    i, j = (v + int(rng.integers(-1, 2)) for v in CENTRES[c])
    x[i - 3:i + 3, j - 3:j + 3] = rng.uniform(0.8, 1.0)
    return x


@pytest.fixture(scope="module")
def squares() -> Dataset:
    """Five classes of squares at five places: a tiny set where the anomaly (class 4, a square
    where no normal image has one) is known and easy."""
    rng = np.random.default_rng(0)

    def part(n):
        ys = np.repeat(np.arange(5), n)
        return torch.from_numpy(np.stack([_image(rng, c) for c in ys])[:, None]), torch.from_numpy(ys)
    (xtr, ytr), (xte, yte) = part(50), part(20)
    return Dataset("squares", xtr, ytr, xte, yte, n_classes=5)


# ---- networks ----------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 28, 28), (2, 32, 32)])
def test_network_shapes(shape):
    x = torch.rand(3, *shape)
    cnn = PlainCNN(shape, 7)
    assert cnn(x).shape == (3, 7) and cnn.embed(x).shape == (3, 128)
    assert (cnn.embed(x) >= 0).all()                                   # FC-128 after ReLU
    vae = ConvVAE(shape)
    logits, mu, logvar = vae(x)
    assert logits.shape == x.shape and mu.shape == logvar.shape == (3, 64)
    rec = vae.reconstruct(x)
    assert rec.shape == x.shape and rec.min() >= 0 and rec.max() <= 1
    assert torch.isfinite(negative_elbo(logits, x, mu, logvar))
    enc, dec = LeNetEncoder(shape), LeNetDecoder(shape)
    assert enc(x).shape == (3, 32) and dec(enc(x)).shape == x.shape
    assert not any("bias" in n for n, _ in enc.named_parameters())    # Deep SAD: no bias terms
    dbn = DBN(int(np.prod(shape)))
    assert [r.W.shape[1] for r in dbn.rbms] == [500, 500, 500]
    v = x.reshape(3, -1)
    assert dbn.reconstruct(v).shape == v.shape


def test_dbn_pretraining_lowers_reconstruction_error(squares):
    v = squares.x_train.reshape(len(squares.x_train), -1)
    g = torch.Generator().manual_seed(0)
    dbn = DBN(v.shape[1], generator=g)
    before = ((dbn.reconstruct(v) - v) ** 2).mean()
    dbn.pretrain(v, epochs=3, batch_size=16, generator=g)
    after = ((dbn.reconstruct(v) - v) ** 2).mean()
    assert after < 0.5 * before


def test_msp_and_deep_sad_loss_direction():
    confident, unsure = np.array([[0.97, 0.01, 0.02]]), np.array([[0.4, 0.3, 0.3]])
    assert msp_score(unsure)[0] > msp_score(confident)[0]
    c = torch.ones(1, 4)
    near, far = c + 0.1, c + 3.0
    normal, anomaly = torch.tensor([0]), torch.tensor([1])
    assert deep_sad_loss(far, c, normal) > deep_sad_loss(near, c, normal)      # normals pulled in
    assert deep_sad_loss(far, c, anomaly) < deep_sad_loss(near, c, anomaly)    # anomalies pushed out
    assert (center(torch.tensor([[0.01, -0.02, 2.0], [0.03, -0.04, 4.0]])).abs() >= 0.1).all()


def test_ocsvm_selection_on_normal_data_only():
    """The rule sees normal features only, keeps gamma on its grid, and its held-out
    rejection at the chosen gamma is within the tolerance it states."""
    rng = np.random.default_rng(1)
    normal = rng.normal(size=(400, 8))
    sel = select_ocsvm(normal, seed=0)
    i = sel["gamma_grid"].index(sel["gamma"])
    assert sel["heldout_rejection"][i] <= sel["rejection_tolerance"]
    assert sel["nu"] == 0.1 and sel["n_select_heldout"] == 80
    # larger gammas (tighter boundaries) reject more unseen normal data, up to everything
    assert sel["heldout_rejection"][-1] > sel["heldout_rejection"][0]


def test_ocsvm_gamma_sensitivity_is_an_oracle_beside_the_rule():
    """The sensitivity scores the rule's own grid of OCSVMs on labelled test data, one AUROC per
    gamma; it changes nothing the rule chose. Two normal clusters with an anomaly cluster midway
    between them: a wide kernel takes the middle as normal (AUROC < 0.5), a tight one does not."""
    rng = np.random.default_rng(2)
    centres = np.array([[-4.0, 0.0], [4.0, 0.0]])
    normal = np.concatenate([c + rng.normal(scale=0.5, size=(300, 2)) for c in centres])
    test_normal = np.concatenate([c + rng.normal(scale=0.5, size=(50, 2)) for c in centres])
    anomalies = rng.normal(scale=0.5, size=(100, 2))
    test = np.concatenate([test_normal, anomalies])
    labels = np.r_[np.zeros(100), np.ones(100)]
    fits = selection_fits(normal, seed=0)
    assert select_ocsvm(normal, seed=0, fits=fits) == select_ocsvm(normal, seed=0)
    auroc = gamma_sensitivity(fits, test, labels)
    assert len(auroc) == len(fits["gammas"]) and all(0.0 <= a <= 1.0 for a in auroc)
    assert auroc[0] < 0.5 < 0.95 < max(auroc)


# ---- known answer on the squares -----------------------------------------------------------

@pytest.mark.parametrize("name", sorted(B.NOVELTY))
def test_novelty_method_finds_the_new_square(squares, name):
    split = novelty_split(squares.y_train, squares.y_test, (4,), 5)
    spec = CellSpec("novelty", "digits", name, held_out=(4,), epochs=6, batch_size=16)
    res = METHODS["novelty"][name](spec, squares, split, CPU)
    assert res.train_seconds > 0 and set(res.scores) == set(res.thresholds)
    for score, s in res.scores.items():
        assert s.shape == split.test_labels.shape and np.isfinite(s).all()
        assert auroc(s, res.test_labels) >= FLOOR, (name, score)


@pytest.mark.parametrize("name", sorted(B.IMBALANCED))
def test_imbalanced_method_separates_the_classes(squares, name):
    split = imbalanced_split(squares.y_train, squares.y_test, 0, 0.1, seed=0)
    spec = CellSpec("imbalanced", "digits", name, normal_class=0, anomaly_fraction=0.1, epochs=6, batch_size=16)
    res = METHODS["imbalanced"][name](spec, squares, split, CPU)
    (score, s), = res.scores.items()
    assert s.shape == split.test_labels.shape and res.train_seconds > 0
    assert auroc(s, res.test_labels) >= FLOOR, name
    assert res.info["n_train_anomalous"] == round(0.1 / 0.9 * 50)


def test_same_seed_same_scores(squares):
    split = imbalanced_split(squares.y_train, squares.y_test, 0, 0.1, seed=0)
    spec = CellSpec("imbalanced", "digits", "deepsad", normal_class=0, anomaly_fraction=0.1, epochs=1, batch_size=16)
    a = B.run_imbalanced_deepsad(spec, squares, split, CPU).scores["distance"]
    b = B.run_imbalanced_deepsad(spec, squares, split, CPU).scores["distance"]
    np.testing.assert_array_equal(a, b)


# ---- registration and end to end on the digits ------------------------------------------

def test_registered_and_in_the_profiles():
    for protocol, names in (("novelty", B.NOVELTY), ("imbalanced", B.IMBALANCED)):
        for name, fn in names.items():
            assert METHODS[protocol][name] is fn
    for profile in ("quick", "paper"):
        g = PROFILES[profile]
        assert set(B.NOVELTY) <= set(g.novelty_methods) and set(B.IMBALANCED) <= set(g.imbalanced_methods)
        assert all(c.variant == "" for c in g.cells() if c.method in B.IMBALANCED)


DIGIT_CELLS = [CellSpec("novelty", "digits", m, held_out=(9,), epochs=1) for m in sorted(B.NOVELTY)] + \
              [CellSpec("imbalanced", "digits", m, normal_class=0, anomaly_fraction=0.1, epochs=1)
               for m in sorted(B.IMBALANCED)]


@pytest.mark.slow
@pytest.mark.parametrize("spec", DIGIT_CELLS, ids=lambda s: s.method)
def test_runs_end_to_end_on_the_digits(tmp_path, spec):
    store = ResultsStore(tmp_path, "t")
    doc = run_cell(spec, store, device="cpu")
    assert store.is_done(spec)
    arrays = store.load_arrays(spec)
    n = len(arrays["test_labels"])
    for row in doc["rows"]:
        assert row["method"] == spec.method and 0 <= row["auroc"] <= 1 and row["train_seconds"] > 0
        assert arrays[f"score_{row['score']}"].shape == (n,)
    assert doc["provenance"]["train_seconds"] > 0
    assert (store.dir / "cells.csv").read_text().count(spec.cell_id) == len(doc["rows"])


@pytest.mark.slow
def test_cnn_msp_reuses_the_classifier_cnn_ocsvm_trained_and_scores_as_if_it_trained_it(tmp_path):
    """CNN+OCSVM and the CNN's maximum softmax train the same classifier of the normal classes:
    run one after the other in a process, the second reuses the first's network (and says so)
    and stores the scores it would have got by training the network itself."""
    from capslib.study.baselines import cnn
    ocsvm = CellSpec("novelty", "digits", "cnn_ocsvm", held_out=(9,), epochs=1)
    msp = CellSpec("novelty", "digits", "cnn_msp", held_out=(9,), epochs=1)
    cnn._LAST_CLASSIFIER.clear()
    alone = ResultsStore(tmp_path / "alone", "t")
    run_cell(msp, alone, device="cpu")
    cnn._LAST_CLASSIFIER.clear()              # a fresh process
    shared = ResultsStore(tmp_path / "shared", "t")
    run_cell(ocsvm, shared, device="cpu")
    run_cell(msp, shared, device="cpu")
    info = shared.load_cell(msp)["info"]
    assert info["cnn_trained_by"] == ocsvm.cell_id and shared.load_cell(ocsvm)["info"]["cnn_trained_by"] == ocsvm.cell_id
    assert alone.load_cell(msp)["info"]["cnn_trained_by"] == msp.cell_id
    assert np.array_equal(alone.load_arrays(msp)["score_msp"], shared.load_arrays(msp)["score_msp"])
    assert info["final_loss"] == alone.load_cell(msp)["info"]["final_loss"]
    # another seed is another network: trained, not reused
    other = CellSpec("novelty", "digits", "cnn_msp", held_out=(9,), epochs=1, seed=1)
    run_cell(other, shared, device="cpu")
    assert shared.load_cell(other)["info"]["cnn_trained_by"] == other.cell_id
