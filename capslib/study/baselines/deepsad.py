"""Deep SAD (Ruff, Vandermeulen, Görnitz, Binder, Müller, Müller & Kloft, *Deep semi-supervised
anomaly detection*, ICLR 2020) under protocol *imbalanced*: the labelled anomalies of paper
A's training set are pushed away from a hypersphere centre c, the normal images pulled in.

Settings (those of Ruff et al.'s public code where this study has no reason to differ):

- network: their MNIST LeNet, with no bias terms anywhere (a bias would let the network map
  everything onto c): conv 5x5x8 and conv 5x5x4 (padding 2), each followed by
  BatchNorm without affine parameters, leaky ReLU and max-pool 2x2, then a linear map to a
  32-D representation φ(x);
- pretraining: an autoencoder with that encoder and a mirrored decoder (linear 32 → 4 maps of
  H/4 x W/4, upsample, transposed conv 5x5 4→8, BatchNorm, leaky ReLU, upsample, transposed
  conv 5x5 8→C), mean squared error on every training image, normal and anomalous;
- c = the mean of φ over the training images after pretraining, with coordinates closer than
  0.1 to 0 set to ±0.1 (their code);
- loss, per image: ‖φ(x) − c‖² for a normal image, η (‖φ(x) − c‖² + ε)⁻¹ for a labelled
  anomaly, η = 1, ε = 1e-6; batch mean;
- Adam with weight decay 5e-7 in both phases, the cell's lr and batch size; each phase
  runs the cell's epochs (so Deep SAD trains twice the CapsNet cell's passes, and
  train_seconds counts both phases). Ruff et al. ran 150 + 150 epochs at lr 1e-4; this
  study holds the budget to the CapsNet's instead;
- inputs standardized exactly as paper A's CapsNet sees them (mean 0.1307, std 0.3081);
- anomaly score = ‖φ(x) − c‖²; its threshold is paper A's rule, a logistic regression on
  the training set's scores and labels.
"""
from __future__ import annotations

import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from capslib.core.config import CellSpec
from capslib.data.datasets import Dataset
from capslib.study.protocols import CellResult, RunContext
from capslib.model.scores import logistic_threshold
from capslib.data.splits import Split
from capslib.train.plain import set_seed
from capslib.study.baselines.common import as_seen, fit, forward_all, input_shape

REP_DIM, ETA, EPS, WEIGHT_DECAY, MIN_CENTER = 32, 1.0, 1e-6, 5e-7, 0.1


class LeNetEncoder(nn.Module):
    """Bias-free φ: (B, C, H, W) → (B, 32), H and W divisible by 4."""

    def __init__(self, in_shape: tuple[int, int, int], rep_dim: int = REP_DIM):
        super().__init__()
        C, H, W = in_shape
        block = lambda i, o: [nn.Conv2d(i, o, 5, padding=2, bias=False), nn.BatchNorm2d(o, eps=1e-4, affine=False),
                              nn.LeakyReLU(), nn.MaxPool2d(2)]
        self.net = nn.Sequential(*block(C, 8), *block(8, 4), nn.Flatten(),
                                 nn.Linear(4 * (H // 4) * (W // 4), rep_dim, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LeNetDecoder(nn.Module):
    """The encoder's mirror, for pretraining: (B, 32) → (B, C, H, W), linear output."""

    def __init__(self, in_shape: tuple[int, int, int], rep_dim: int = REP_DIM):
        super().__init__()
        C, H, W = in_shape
        self.net = nn.Sequential(
            nn.Linear(rep_dim, 4 * (H // 4) * (W // 4), bias=False), nn.Unflatten(1, (4, H // 4, W // 4)),
            nn.LeakyReLU(), nn.Upsample(scale_factor=2),
            nn.ConvTranspose2d(4, 8, 5, padding=2, bias=False), nn.BatchNorm2d(8, eps=1e-4, affine=False),
            nn.LeakyReLU(), nn.Upsample(size=(H, W)), nn.ConvTranspose2d(8, C, 5, padding=2, bias=False))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def deep_sad_loss(z: torch.Tensor, c: torch.Tensor, labels: torch.Tensor, eta: float = ETA,
                  eps: float = EPS) -> torch.Tensor:
    """Ruff et al. 2020 eq. 4 with every image labelled: labels 0 normal (pulled to c),
    1 anomaly (pushed away, inverse squared distance)."""
    dist = ((z - c) ** 2).sum(1)
    return torch.where(labels == 1, eta / (dist + eps), dist).mean()


def center(z, min_abs: float = MIN_CENTER) -> torch.Tensor:
    """Mean representation, with near-zero coordinates moved to ±min_abs (Ruff et al.'s code)."""
    c = torch.as_tensor(z).mean(0)
    c[(c.abs() < min_abs) & (c < 0)] = -min_abs
    c[(c.abs() < min_abs) & (c >= 0)] = min_abs
    return c


def run_imbalanced_deepsad(spec: CellSpec, data: Dataset, split: Split, ctx: RunContext) -> CellResult:
    """Protocol *imbalanced*: Deep SAD with paper A's labelled anomalies; score ‖φ(x) − c‖²."""
    r = spec.resolved()
    g = set_seed(r.seed)
    shape = input_shape(data)
    enc, dec = LeNetEncoder(shape).to(ctx.device), LeNetDecoder(shape).to(ctx.device)
    x_tr, y_tr = data.x_train[split.train_idx], torch.from_numpy(split.train_labels)
    ae = nn.Sequential(enc, dec)
    pre = fit(ae, lambda x, _: F.mse_loss(ae(x), x), x_tr, y_tr, r, g, ctx.device, data=data, standardize=True,
              progress=ctx.progress, name=r.cell_id + " (pretraining)", weight_decay=WEIGHT_DECAY)
    t0 = time.perf_counter()
    enc.eval()
    z_tr = forward_all(enc, as_seen(data, x_tr), ctx.device, standardize=True)[0]
    c = center(z_tr).to(ctx.device)
    enc.train()
    center_seconds = time.perf_counter() - t0
    sad = fit(enc, lambda x, y: deep_sad_loss(enc(x), c, y), x_tr, y_tr, r, g, ctx.device, data=data,
              standardize=True, progress=ctx.progress, name=r.cell_id, weight_decay=WEIGHT_DECAY)
    enc.eval()
    dist = lambda x: ((enc(x) - c) ** 2).sum(1)
    train_score = forward_all(dist, as_seen(data, x_tr), ctx.device, standardize=True)[0]
    test_score = forward_all(dist, as_seen(data, data.x_test[split.test_idx]), ctx.device, standardize=True)[0]
    return CellResult(split.test_labels, {"distance": test_score},
                      {"distance": logistic_threshold(train_score, split.train_labels)},
                      pre["train_seconds"] + center_seconds + sad["train_seconds"],
                      info={"final_loss": sad["final_loss"], "pretrain_final_loss": pre["final_loss"],
                            "pretrain_seconds": pre["train_seconds"], "deepsad_seconds": sad["train_seconds"],
                            "eta": ETA, "rep_dim": REP_DIM,
                            "n_train_normal": int((split.train_labels == 0).sum()),
                            "n_train_anomalous": int((split.train_labels == 1).sum())})
