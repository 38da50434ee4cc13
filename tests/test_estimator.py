"""CapsNetDetector, the estimator on arrays: paper A on a normal class with ~1% known anomalies
separates a held-out test set, paper B fits on normal images only, predict is the decision
score against threshold_, clone gives an unfitted copy, save -> load scores bitwise, and bad
input is one line. The embedded digits (one epoch, CPU); real MNIST where it is installed."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

pytest.importorskip("safetensors")
from capslib import CapsNetDetector  # noqa: E402
from capslib.core.errors import ConfigError, DataError  # noqa: E402
from capslib.data.datasets import load_dataset  # noqa: E402
from capslib.data.splits import imbalanced_split  # noqa: E402
from capslib.detect.detector import META, Detector, ModelFileError  # noqa: E402
from capslib.model.scores import auroc  # noqa: E402

pytestmark = pytest.mark.slow
FAST = dict(epochs=1, device="cpu", precision="fp32")


def paper_a_arrays(dataset: str, normal_class: int = 0, fraction: float = 0.01):
    """Training images (N, H, W) and labels (1 = known anomaly), test images (N, 1, H, W) and labels."""
    data = load_dataset(dataset)
    split = imbalanced_split(data.y_train, data.y_test, normal_class, fraction, seed=0)
    return (data.x_train[split.train_idx].numpy()[:, 0], split.train_labels,
            data.x_test[split.test_idx].numpy(), split.test_labels)


@pytest.fixture(scope="module")
def digits_a():
    return paper_a_arrays("digits")


@pytest.fixture(scope="module")
def fitted(digits_a):
    """Paper A on digits class 0 and one known anomaly in 125, one epoch, with its test scores."""
    X, y, X_test, y_test = digits_a
    est = CapsNetDetector(**FAST).fit(X, y)
    return est, est.decision_function(X_test)


def test_paper_a_separates_a_held_out_test_set(digits_a, fitted):
    X, y, X_test, y_test = digits_a
    est, scores = fitted
    assert y.sum() == 1 and len(y) == 125                                  # 124 normal + 1 anomaly (0.8%)
    a = auroc(scores, y_test)
    print(f"digits class 0, 1 anomaly in 125, 1 epoch: test AUROC {a:.4f}")
    assert a >= 0.95
    assert est.score_ == "anomaly_score" and est.normal_classes_ is None
    assert est.threshold_ == est.detector_.thresholds["anomaly_score"]     # paper A's logistic threshold
    assert np.array_equal(est.decision_function(X), est.decision_scores_)  # the training scores, recomputed
    assert np.array_equal(est.labels_, (est.decision_scores_ > est.threshold_).astype(int))


def test_predict_is_the_score_against_threshold_(digits_a, fitted):
    X_test = digits_a[2][::8]
    est, scores = fitted
    assert np.array_equal(est.predict(X_test), (scores[::8] > est.threshold_).astype(np.int64))
    moved = copy.copy(est)
    moved.threshold_ = float(np.median(scores[::8]))
    assert moved.predict(X_test).sum() == (scores[::8] > moved.threshold_).sum() > 0


def test_clone_is_unfitted_with_the_same_params(digits_a, fitted):
    est, _ = fitted
    twin = clone(est)
    assert twin.get_params() == est.get_params() and twin.get_params()["epochs"] == 1
    assert not hasattr(twin, "detector_")
    for call in (lambda: twin.decision_function(digits_a[2][:2]), lambda: twin.predict(digits_a[2][:2]),
                 lambda: twin.save("never")):
        with pytest.raises(NotFittedError):
            call()
    assert CapsNetDetector(protocol="novelty", lr=2e-3).set_params(lr=5e-4).get_params()["lr"] == 5e-4


def test_save_then_load_scores_bitwise(digits_a, fitted, tmp_path):
    X_test = digits_a[2][:40]
    est, scores = fitted
    est.save(tmp_path / "m")
    back = CapsNetDetector.load(tmp_path / "m")
    assert back.get_params() == est.get_params()
    assert (back.score_, back.threshold_, back.image_shape_) == (est.score_, est.threshold_, est.image_shape_)
    assert np.array_equal(back.decision_scores_, est.decision_scores_)
    assert np.array_equal(back.decision_function(X_test), scores[:40])
    assert np.array_equal(back.decision_function((X_test * 255).round().astype(np.uint8)),
                          est.decision_function((X_test * 255).round().astype(np.uint8)))
    assert json.loads((tmp_path / "m" / META).read_text())["format_version"] == 2
    assert Detector.load(tmp_path / "m").decision_score == "anomaly_score"     # `capslib score` reads it too


def test_a_model_without_the_estimators_part_is_one_line(fitted, tmp_path):
    """A format-1 model folder (written by `capslib fit` before the estimator) still loads as a
    Detector; as an estimator it is refused in one line."""
    est, _ = fitted
    meta = {k: v for k, v in est.detector_.meta.items() if k != "estimator"}
    Detector(est.detector_.model, meta).save(tmp_path / "old")
    (tmp_path / "old" / META).write_text(json.dumps({**meta, "format_version": 1}))
    assert Detector.load(tmp_path / "old").protocol == "imbalanced"
    with pytest.raises(ModelFileError, match="without the estimator's parameters") as e:
        CapsNetDetector.load(tmp_path / "old")
    assert "\n" not in str(e.value)


def test_novelty_fits_a_normal_only_array(digits_a, tmp_path):
    """Paper B with one normal class (no y): one capsule, decided on −RE; uint8 input."""
    X, y, X_test, y_test = digits_a
    normal = (X[y == 0] * 255).round().astype(np.uint8)
    est = CapsNetDetector(protocol="novelty", batch_size=32, **FAST).fit(normal)
    assert est.score_ == "re" and list(est.normal_classes_) == [0]
    assert est.detector_.model.config.n_classes == 1
    assert est.threshold_ == np.percentile(est.decision_scores_, 90)        # contamination 0.1, PyOD's rule
    assert est.labels_.mean() == pytest.approx(0.1, abs=0.01)
    test = np.concatenate([np.flatnonzero(y_test == 0), np.flatnonzero(y_test == 1)[:100]])   # 53 + 100
    scores = est.decision_function(X_test[test])
    a = auroc(scores, y_test[test])
    print(f"novelty, one class, 1 epoch: test AUROC {a:.4f}")
    assert a > 0.7
    est.save(tmp_path / "b")
    assert np.array_equal(CapsNetDetector.load(tmp_path / "b").decision_function(X_test[test[:16]]), scores[:16])


def test_novelty_takes_class_labels(digits):
    """Paper B with two named classes: one capsule each, in sorted order; decided on −PP."""
    y = digits.y_train.numpy()
    pick = np.concatenate([np.flatnonzero(y == 1)[:16], np.flatnonzero(y == 7)[:16]])
    names = np.where(y[pick] == 1, "one", "seven")
    est = CapsNetDetector(protocol="novelty", **FAST).fit(digits.x_train[pick].numpy(), names)
    assert est.score_ == "pp" and list(est.normal_classes_) == ["one", "seven"]
    assert est.detector_.meta["classes"] == ["one", "seven"] and est.detector_.model.config.n_classes == 2
    assert est.predict(digits.x_test[:5].numpy()).shape == (5,)


def test_paper_a_on_mnist():
    """Real MNIST (skipped where it is not installed): class 0, 100 normal images + 1 known
    anomaly (1%), one epoch; a test set of 150 normal and 150 anomalous images."""
    try:
        X, y, X_test, y_test = paper_a_arrays("mnist")
    except DataError as e:
        pytest.skip(f"MNIST is not installed: {e}")
    keep = np.concatenate([np.flatnonzero(y == 0)[:100], np.flatnonzero(y == 1)[:1]])
    test = np.concatenate([np.flatnonzero(y_test == 0)[:150], np.flatnonzero(y_test == 1)[:150]])
    est = CapsNetDetector(**FAST).fit((X[keep] * 255).round().astype(np.uint8), y[keep])
    a = auroc(est.decision_function(X_test[test]), y_test[test])
    print(f"MNIST class 0, 1 anomaly in 101, 1 epoch: test AUROC {a:.4f}")
    assert a >= 0.95


IMG = np.zeros((4, 28, 28), np.float32)
BAD = [
    (dict(X=np.zeros((4, 784))), DataError, "shape (4, 784)"),
    (dict(X=np.zeros((0, 28, 28))), DataError, "no images"),
    (dict(X=np.zeros((4, 28, 28), np.int64)), DataError, "dtype int64"),
    (dict(X=IMG + 2), DataError, "values in [2, 2]"),
    (dict(X=IMG * np.nan), DataError, "must lie in [0, 1]"),
    (dict(X=np.zeros((4, 28, 28, 3))), DataError, "channels last"),
    (dict(X=np.zeros((4, 28, 30))), DataError, "28x30"),
    (dict(X=np.zeros((4, 16, 16))), DataError, "at least 17x17"),
    (dict(y=[0, 1]), DataError, "one label per image"),
    (dict(y=None), DataError, "needs y"),
    (dict(y=[0, 0, 0, 0]), DataError, "no anomaly"),
    (dict(y=[0, 1, 2, 0]), DataError, "y holds [0, 1, 2]"),
    (dict(protocol="oneclass"), ConfigError, "protocol 'oneclass'"),
    (dict(score="pp"), ConfigError, "score 'pp'"),
    (dict(contamination=0.7), ConfigError, "contamination"),
    (dict(epochs=0), ConfigError, "epochs"),
    (dict(device="tpu"), ConfigError, "device 'tpu'"),
    (dict(precision="fp8"), ConfigError, "precision 'fp8'"),
]


@pytest.mark.parametrize("bad, error, says", BAD, ids=[b[2] for b in BAD])
def test_bad_input_is_one_line(bad, error, says):
    args = {"X": IMG, "y": [0, 0, 0, 1], **bad}
    X, y = args.pop("X"), args.pop("y")
    with pytest.raises(error) as e:
        CapsNetDetector(**{**FAST, **args}).fit(X, y)
    assert says in str(e.value) and "\n" not in str(e.value)
    assert isinstance(e.value, ValueError)                 # what scikit-learn's users catch


def test_images_of_another_shape_than_fitted_are_one_line(fitted):
    est, _ = fitted
    with pytest.raises(DataError, match=r"shape \(1, 32, 32\).*fitted on \(1, 28, 28\)"):
        est.decision_function(np.zeros((2, 32, 32), np.float32))
