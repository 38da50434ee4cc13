"""Anomaly scores and metrics.

**Convention, stated once for the whole library: every score is an *anomaly* score,
higher = more anomalous.** Paper B defines *normality* scores (higher = more normal);
``normality_pp`` and ``normality_re`` return them as written, and ``pp_score`` /
``re_score`` are their negations, which is what the library stores and plots.

Every score is a pure function from tensors to one value per image (shape (B,)).
Paper A's network has two capsules: index 0 is z_n (normal), index 1 is z_a (anomaly).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:        # torch is imported where a score is computed: reading a store's scores needs none
    import torch

NORMAL, ANOMALY = 0, 1


# ---- paper A (Piciarelli et al. 2019) ---------------------------------------------------

def length_difference(lengths: torch.Tensor) -> torch.Tensor:
    """‖z_a‖ − ‖z_n‖, the first term of paper A eq. 1; (B, 2) → (B,), in (−1, 1)."""
    return lengths[:, ANOMALY] - lengths[:, NORMAL]


def reconstruction_mse(images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """r_l, paper A §3: mean squared pixel error, images in [0, 1]; (B, C, H, W) → (B,)."""
    return ((images - reconstructions) ** 2).flatten(1).mean(dim=1)


def anomaly_score(lengths: torch.Tensor, images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """AS = ‖z_a‖ − ‖z_n‖ + r_l, paper A eq. 1; in [−1, 2]."""
    return length_difference(lengths) + reconstruction_mse(images, reconstructions)


# ---- paper A's threshold: three rules (the paper's text allows the first two) ----------
#
# Paper A §3: the training AS values are "fed into a logistic regressor to find the optimal
# threshold separating normal from anomalous data"; it does not say how the regression weighs
# the two classes. With 1% anomalies a plain maximum-likelihood fit carries the training
# prior (99:1) into its intercept, which moves the 0.5 crossing towards the anomalies; a
# class-balanced fit weighs each class by the inverse of its frequency, i.e. a prior of 1:1,
# which is what paper A's test set has (roughly balanced). The third rule looks at the *test*
# labels: an oracle upper bound, never a result.

def _logistic(scores: np.ndarray, labels: np.ndarray, class_weight) -> float:
    from sklearn.linear_model import LogisticRegression

    scores = np.asarray(scores, dtype=np.float64).reshape(-1, 1)
    labels = np.asarray(labels).astype(int)
    if labels.min() == labels.max():
        raise ValueError("a logistic threshold needs both normal and anomalous training scores")
    lr = LogisticRegression(C=1e6, max_iter=1000, class_weight=class_weight).fit(scores, labels)
    w, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    if w <= 0:   # scores do not rise with the anomaly label: no meaningful threshold
        return float("inf")
    return -b / w


def logistic_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """Paper A §3, read as plain maximum likelihood (the study's main rule): fit a logistic
    regression on training scores and labels (1 = anomaly), every image weighing 1; the
    threshold is the score where its probability crosses 0.5."""
    return _logistic(scores, labels, None)


def balanced_logistic_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """Paper A §3, read with the classes balanced: the same logistic regression on the
    training scores, each image weighted by n / (2 · n_its_class), so both classes weigh
    the same in the likelihood; the threshold is where its probability crosses 0.5."""
    return _logistic(scores, labels, "balanced")


def oracle_threshold(test_scores: np.ndarray, test_labels: np.ndarray) -> float:
    """The threshold of highest accuracy on the *test* set itself (decision "anomaly iff
    score > threshold"): an upper bound on what any threshold rule can reach with these
    scores, not a result, since it looks at the test labels. Among ties the lowest threshold
    wins; it is the midpoint between two neighbouring distinct scores (below the smallest
    score by 1 when calling everything anomalous is best, the largest score when calling
    everything normal is)."""
    s = np.asarray(test_scores, dtype=np.float64)
    y = np.asarray(test_labels).astype(bool)
    values, inverse = np.unique(s, return_inverse=True)
    normals = np.bincount(inverse, weights=~y, minlength=len(values))
    anomalies = np.bincount(inverse, weights=y, minlength=len(values))
    # threshold just below values[k]: normals under k said normal, anomalies from k on said anomalous
    correct_below = np.concatenate([[0.0], np.cumsum(normals)]) + np.concatenate([np.cumsum(anomalies[::-1])[::-1], [0.0]])
    k = int(np.argmax(correct_below))
    if k == 0:
        return float(values[0] - 1.0)
    if k == len(values):
        return float(values[-1])
    return float((values[k - 1] + values[k]) / 2)


#: the threshold rules of paper A's *proposed* decision, by name: (function, what it is fitted on)
THRESHOLD_RULES = {
    "plain logistic": (logistic_threshold, "train"),
    "balanced logistic": (balanced_logistic_threshold, "train"),
    "oracle (best on test)": (oracle_threshold, "test"),
}


# ---- paper B (Li et al. 2019) -----------------------------------------------------------

def normality_pp(lengths: torch.Tensor) -> torch.Tensor:
    """PP(x) = max_c ‖h_c‖, paper B eq. 1 (a *normality* score); (B, K) → (B,)."""
    return lengths.max(dim=1).values


def normality_re(images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """RE(x) = −‖x − x′‖² / ‖x‖², paper B eq. 2 (a *normality* score); (B, C, H, W) → (B,)."""
    err = ((images - reconstructions) ** 2).flatten(1).sum(dim=1)
    return -err / images.flatten(1).pow(2).sum(dim=1).clamp_min(1e-12)


def pp_score(lengths: torch.Tensor) -> torch.Tensor:
    """Anomaly score −PP (paper B eq. 1 negated)."""
    return -normality_pp(lengths)


def re_score(images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """Anomaly score −RE = ‖x − x′‖² / ‖x‖² (paper B eq. 2 negated)."""
    return -normality_re(images, reconstructions)


# ---- Kirillov & Panov (2022) -------------------------------------------------------------

def gini_coefficient(values: torch.Tensor) -> torch.Tensor:
    """Gini coefficient of non-negative values along the last dim: (..., N) → (...).

    G = Σ_i (2i − N − 1) x_(i) / (N Σ x), with x sorted ascending, i = 1..N; 0 when all
    values are equal, (N−1)/N when one value holds everything.
    """
    import torch
    x, _ = torch.sort(values, dim=-1)
    n = x.shape[-1]
    i = torch.arange(1, n + 1, dtype=x.dtype, device=x.device)
    return ((2 * i - n - 1) * x).sum(-1) / (n * x.sum(-1).clamp_min(1e-12))


def routing_gini(couplings: torch.Tensor, capsule: int = ANOMALY) -> torch.Tensor:
    """Gini of the routing coefficients c_{i,a} into one class capsule (Kirillov & Panov
    2022); (B, N, K) → (B,). Its orientation (which sign is anomalous) is fitted on the
    training set by the protocol, see :func:`orient`."""
    return gini_coefficient(couplings[:, :, capsule])


def orient(train_scores: np.ndarray, train_labels: np.ndarray) -> float:
    """+1 if a score is higher on the training anomalies than on the normals, else −1."""
    s, y = np.asarray(train_scores), np.asarray(train_labels).astype(bool)
    return 1.0 if s[y].mean() >= s[~y].mean() else -1.0


# ---- metrics ----------------------------------------------------------------------------

def accuracy_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """Accuracy of the decision "anomaly iff score > threshold"; labels 1 = anomaly."""
    pred = np.asarray(scores) > threshold
    return float((pred == np.asarray(labels).astype(bool)).mean())


def _ranked(scores, labels):
    """(scores as float64, labels as bool) when both classes are present and every score is
    finite, else None (then scikit-learn's own functions answer, or raise, as they do)."""
    x, y = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(int)
    if x.ndim != 1 or x.shape != y.shape or not np.isfinite(x).all() or not np.isin(y, (0, 1)).all():
        return None
    y = y.astype(bool)
    return (x, y) if 0 < y.sum() < len(y) else None


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve, anomalies (label 1) positive: the Mann–Whitney statistic
    U / (n₊·n₋) with tied scores counted half, which is scikit-learn's ``roc_auc_score``
    (equal to rounding, tests/test_scores.py) without its per-call input checks."""
    r = _ranked(scores, labels)
    if r is None:
        from sklearn.metrics import roc_auc_score
        return float(roc_auc_score(np.asarray(labels).astype(int), np.asarray(scores, dtype=np.float64)))
    x, y = r
    _, group, count = np.unique(x, return_inverse=True, return_counts=True)
    rank = (np.cumsum(count) - (count - 1) / 2.0)[group]      # 1-based, ties at their mean rank
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    return float((rank[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auprc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision with the anomalies as the positive class: Σ (R_k − R_{k−1}) P_k over
    the distinct thresholds, scikit-learn's ``average_precision_score`` (equal to rounding)."""
    r = _ranked(scores, labels)
    if r is None:
        from sklearn.metrics import average_precision_score
        return float(average_precision_score(np.asarray(labels).astype(int), np.asarray(scores, dtype=np.float64)))
    tp, seen = _counts_above(*r)
    precision, recall = tp / seen, tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _counts_above(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At each distinct score, highest first: the anomalies and the images scored at or above it."""
    order = np.argsort(-x, kind="mergesort")
    x, y = x[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(x)), len(x) - 1]      # the last image of each distinct score
    return np.cumsum(y)[last], last + 1


def roc_points(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ROC curve, anomalies (label 1) positive: (false-positive rates, true-positive rates)
    from (0, 0) through every distinct threshold, scikit-learn's ``roc_curve`` with
    ``drop_intermediate=False`` (equal to rounding) without its per-call input checks."""
    r = _ranked(scores, labels)
    if r is None:
        from sklearn.metrics import roc_curve
        fpr, tpr, _ = roc_curve(np.asarray(labels).astype(int), np.asarray(scores, dtype=np.float64),
                                drop_intermediate=False)
        return fpr, tpr
    tp, seen = _counts_above(*r)
    fp = seen - tp
    return np.r_[0.0, fp / fp[-1]], np.r_[0.0, tp / tp[-1]]


def score_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float | None = None) -> dict:
    """accuracy (where a threshold exists), AUROC and AUPRC of one score on a test set."""
    return {
        "accuracy": accuracy_at(scores, labels, threshold) if threshold is not None else float("nan"),
        "auroc": auroc(scores, labels),
        "auprc": auprc(scores, labels),
        "threshold": float("nan") if threshold is None else float(threshold),
    }
