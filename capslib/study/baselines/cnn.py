"""The plain CNN of paper B's CNN+OCSVM baseline (Li et al. 2019, appendix B), and the two
reference detectors built on it:

- protocol *novelty*, ``cnn_msp``: the maximum softmax probability of a classifier of the
  normal classes (Hendrycks & Gimpel, *A baseline for detecting misclassified and
  out-of-distribution examples in neural networks*, ICLR 2017); anomaly score = −MSP;
- protocol *imbalanced*, ``cnn``: the same network trained as a two-class (normal /
  anomaly) classifier on paper A's imbalanced training set, plain cross-entropy with no
  re-weighting; anomaly score = its softmax probability of the anomaly class.

Under *novelty* the classifier of the normal classes serves two methods, ``cnn_msp`` and
``cnn_ocsvm`` (:mod:`.ocsvm`); a process trains it once for both (:func:`normal_classifier`).

Network (paper B): conv 3x3x32, conv 3x3x64 (both unpadded), max-pool 2x2, FC 128, all
ReLU, then a linear layer to the classes (softmax in the loss). Inputs as the CapsNet cell
it is compared with gets them: [0, 1] under *novelty*, standardized under *imbalanced*.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from capslib.core.config import CellSpec
from capslib.data.datasets import Dataset
from capslib.study.protocols import CellResult, RunContext
from capslib.data.splits import Split
from capslib.train.plain import set_seed
from capslib.study.baselines.common import as_seen, fit, forward_all, input_shape


class PlainCNN(nn.Module):
    """conv3x3x32 → ReLU → conv3x3x64 → ReLU → maxpool 2 → FC 128 → ReLU → FC n_classes."""

    def __init__(self, in_shape: tuple[int, int, int], n_classes: int, width: int = 128):
        super().__init__()
        C, H, W = in_shape
        self.features = nn.Sequential(
            nn.Conv2d(C, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(64 * ((H - 4) // 2) * ((W - 4) // 2), width), nn.ReLU())
        self.head = nn.Linear(width, n_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The FC-128 activations (after ReLU), the representation fed to the OCSVM."""
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (softmax is applied by the loss and the scores)."""
        return self.head(self.features(x))


def train_classifier(r: CellSpec, data: Dataset, x: torch.Tensor, y: torch.Tensor, n_classes: int,
                     ctx: RunContext, standardize: bool) -> tuple[PlainCNN, dict]:
    """A :class:`PlainCNN` trained with cross-entropy on (x, y); returns it and the fit record."""
    g = set_seed(r.seed)
    model = PlainCNN(input_shape(data), n_classes).to(ctx.device)
    rec = fit(model, lambda xb, yb: F.cross_entropy(model(xb), yb), x, y, r, g, ctx.device, data=data,
              standardize=standardize, progress=ctx.progress, name=r.cell_id)
    model.eval()
    return model, rec


_LAST_CLASSIFIER: dict = {}   # what determines it -> (network, fit record, the cell that trained it)


def normal_classifier(r: CellSpec, data: Dataset, split: Split, ctx: RunContext) -> tuple[PlainCNN, dict]:
    """Paper B's CNN classifier of the normal classes, for the two methods built on it (CNN+OCSVM's
    features and the CNN's maximum softmax). It is trained once per process for both: the same
    spec (all but the method), split, data and device give the same network, so the second cell
    of a held-out case reuses the network of the first instead of training it again. The reused
    record keeps the training seconds the network cost and names the cell that trained it
    (``trained_by``)."""
    import hashlib
    import json

    key = json.dumps({**r.to_dict(), "method": None, "device": str(ctx.device), "data": data.name,
                      "split": hashlib.sha1(split.train_idx.tobytes() + split.train_labels.tobytes()).hexdigest()},
                     sort_keys=True)
    if key in _LAST_CLASSIFIER:
        model, rec, trained_by = _LAST_CLASSIFIER[key]
        return model, {**rec, "trained_by": trained_by}
    x_tr, y_tr = data.x_train[split.train_idx], torch.from_numpy(split.train_labels)
    model, rec = train_classifier(r, data, x_tr, y_tr, r.n_normal_classes, ctx, standardize=False)
    _LAST_CLASSIFIER.clear()      # one network kept: the two cells that share it run one after the other
    _LAST_CLASSIFIER[key] = (model, rec, r.cell_id)
    return model, {**rec, "trained_by": r.cell_id}


def softmax_probs(model: PlainCNN, images: torch.Tensor, device, standardize: bool) -> np.ndarray:
    """(N, K) softmax probabilities of images already as the network sees them."""
    return forward_all(lambda x: F.softmax(model(x), 1), images, device, standardize=standardize)[0]


def msp_score(probs: np.ndarray) -> np.ndarray:
    """Anomaly score −max_c p(c | x) (Hendrycks & Gimpel 2017, negated: higher = more anomalous)."""
    return -np.asarray(probs).max(1)


def run_novelty_msp(spec: CellSpec, data: Dataset, split: Split, ctx: RunContext) -> CellResult:
    """Protocol *novelty*: a CNN classifier of the normal classes; score −MSP."""
    r = spec.resolved()
    k = r.n_normal_classes
    model, rec = normal_classifier(r, data, split, ctx)
    probs = softmax_probs(model, as_seen(data, data.x_test[split.test_idx]), ctx.device, False)
    return CellResult(split.test_labels, {"msp": msp_score(probs)}, {"msp": None}, rec["train_seconds"],
                      arrays={"test_probs": probs.astype(np.float32)},
                      info={"final_loss": rec["final_loss"], "n_classes": k, "cnn_trained_by": rec["trained_by"],
                            "normal_test_accuracy": normal_accuracy(probs, data, split, r.held_out)})


def run_imbalanced_cnn(spec: CellSpec, data: Dataset, split: Split, ctx: RunContext) -> CellResult:
    """Protocol *imbalanced*: a two-class CNN (0 normal, 1 anomaly) on paper A's training set;
    score p(anomaly | x), decision at 0.5 (the classifier's own)."""
    r = spec.resolved()
    x_tr, y_tr = data.x_train[split.train_idx], torch.from_numpy(split.train_labels)
    model, rec = train_classifier(r, data, x_tr, y_tr, 2, ctx, standardize=True)
    probs = softmax_probs(model, as_seen(data, data.x_test[split.test_idx]), ctx.device, True)
    return CellResult(split.test_labels, {"p_anomaly": probs[:, 1]}, {"p_anomaly": 0.5}, rec["train_seconds"],
                      info={"final_loss": rec["final_loss"],
                            "n_train_normal": int((split.train_labels == 0).sum()),
                            "n_train_anomalous": int((split.train_labels == 1).sum())})


def normal_accuracy(probs: np.ndarray, data: Dataset, split: Split, held_out) -> float:
    """Classification accuracy of the normal-class test images (a sanity check of the CNN)."""
    lab = np.full(data.n_classes, -1)
    normal = [c for c in range(data.n_classes) if c not in held_out]
    lab[normal] = np.arange(len(normal))
    y = data.y_test[split.test_idx].numpy()
    keep = split.test_labels == 0
    return float(np.mean(probs[keep].argmax(1) == lab[y[keep]]))
