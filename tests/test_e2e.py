"""End to end on the embedded digits: one cell of each protocol, AUROC clearly above chance,
and determinism on CPU (same seed, same scores)."""
import numpy as np
import pytest

from capslib.core.config import CellSpec
from capslib.run.runner import run_cell
from capslib.run.store.results import ResultsStore

pytestmark = pytest.mark.slow


def rows_by_score(doc):
    return {r["score"]: r for r in doc["rows"]}


@pytest.mark.slow(seconds=15)
def test_imbalanced_proposed_cell_on_digits(tmp_path):
    spec = CellSpec("imbalanced", "digits", "capsnet", "proposed", normal_class=0, anomaly_fraction=0.1, epochs=3)
    doc = run_cell(spec, ResultsStore(tmp_path, "t"), device="cpu")
    rows = rows_by_score(doc)
    assert set(rows) == {"length_difference", "r_l", "anomaly_score", "pp", "re", "routing_gini"}
    assert rows["anomaly_score"]["auroc"] > 0.9
    assert rows["anomaly_score"]["accuracy"] > 0.8
    assert -1 <= rows["anomaly_score"]["threshold"] <= 2
    r = rows["anomaly_score"]
    assert r["n_test_normal"] == 54 and r["n_test_anomalous"] == 486   # all other-class digits (< 1024)
    prov = doc["provenance"]
    assert prov["device"].startswith("cpu") and prov["commit"] and prov["train_seconds"] > 0
    arrays = ResultsStore(tmp_path, "t").load_arrays(spec)
    assert arrays["gallery_images"].shape == (16, 1, 28, 28) and arrays["gallery_images"].dtype == np.uint8
    assert arrays["gallery_reconstructions"].shape == (16, 1, 28, 28)
    assert arrays["score_anomaly_score"].shape == (540,)


@pytest.mark.slow(seconds=60)
def test_novelty_cell_on_digits(tmp_path):
    # paper B's batch of 100 gives the digits too few steps; batch 32 as in the quick profile
    spec = CellSpec("novelty", "digits", "capsnet", held_out=(9,), epochs=2, batch_size=32)
    doc = run_cell(spec, ResultsStore(tmp_path, "t"), device="cpu")
    rows = rows_by_score(doc)
    assert set(rows) == {"pp", "re"}
    assert rows["pp"]["auroc"] > 0.75 and rows["re"]["auroc"] > 0.6
    assert rows["pp"]["n_test_normal"] == rows["pp"]["n_test_anomalous"] == 54
    assert doc["info"]["n_capsules"] == 9 and doc["info"]["normal_test_accuracy"] > 0.7


def test_same_seed_same_scores(tmp_path, tiny_splits):
    """Bitwise the same scores and reconstructions from the same seed, others from another (on
    the 16-image training and 32-image test splits: the property does not depend on their size)."""
    spec = CellSpec("imbalanced", "digits", "capsnet", "standard", normal_class=1, anomaly_fraction=0.1, epochs=1)
    a, b = ResultsStore(tmp_path / "a", "t"), ResultsStore(tmp_path / "b", "t")
    run_cell(spec, a, device="cpu")
    run_cell(spec, b, device="cpu")
    xa, xb = a.load_arrays(spec), b.load_arrays(spec)
    for k in ("score_anomaly_score", "score_pp", "score_re", "gallery_reconstructions"):
        np.testing.assert_array_equal(xa[k], xb[k])
    other = CellSpec("imbalanced", "digits", "capsnet", "standard", normal_class=1, anomaly_fraction=0.1,
                     epochs=1, seed=1)
    run_cell(other, a, device="cpu")
    assert not np.array_equal(a.load_arrays(other)["score_anomaly_score"], xa["score_anomaly_score"])
