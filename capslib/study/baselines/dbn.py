"""Paper B's DBN baseline (Li et al. 2019, appendix B): three Bernoulli RBMs of 500 hidden
units, pretrained greedily layer by layer with contrastive divergence (Hinton, Osindero &
Teh, *A fast learning algorithm for deep belief nets*, Neural Computation 18, 2006), pixels
in [0, 1]; anomaly score = reconstruction error of an up–down pass.

Decisions where paper B is silent (each a common default of Hinton, *A practical guide to
training restricted Boltzmann machines*, UTML TR 2010-003):

- CD-1; the data (pixel intensities, or the layer below's hidden probabilities) enter as
  probabilities, not sampled; the hidden states driving the negative phase are sampled, the
  reconstruction and the statistics use probabilities;
- SGD on the batch-mean gradient, learning rate 0.1, momentum 0.5 in the first epoch and 0.9
  after, weight decay 2e-4 on the weights; weights start N(0, 0.01²), hidden biases at 0,
  visible biases of the first RBM at log(p/(1−p)) of the mean training pixel p;
- the cell's epochs and batch size (one epoch = one pass per RBM); no fine-tuning after
  pretraining (the paper names none);
- up–down pass: deterministic mean-field, up through the three recognition layers
  (sigmoid(vW + b)), then down through the same weights transposed (sigmoid(hWᵀ + a));
- two scores from the same reconstruction x′: ``re`` = ‖x − x′‖² / ‖x‖² (paper B eq. 2
  negated, the formula of CapsNet's RE) and ``mse`` = mean squared pixel error.

The RBMs are plain torch tensors (no autograd), so the same code runs on a GPU.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

import numpy as np
import torch

from capslib.core.config import CellSpec
from capslib.data.datasets import Dataset
from capslib.study.protocols import CellResult, RunContext
from capslib.model.scores import reconstruction_mse, re_score
from capslib.data.splits import Split
from capslib.train.plain import NonFiniteLoss, set_seed, synchronize
from capslib.study.baselines.common import as_seen, input_shape

LR, MOMENTUM, FIRST_MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 0.5, 2e-4


class BernoulliRBM(torch.nn.Module):
    """A Bernoulli–Bernoulli RBM: p(h=1|v) = σ(vW + b), p(v=1|h) = σ(hWᵀ + a)."""

    def __init__(self, n_visible: int, n_hidden: int, generator: Optional[torch.Generator] = None):
        super().__init__()
        self.W = torch.nn.Parameter(0.01 * torch.randn(n_visible, n_hidden, generator=generator), requires_grad=False)
        self.b = torch.nn.Parameter(torch.zeros(n_hidden), requires_grad=False)    # hidden biases
        self.a = torch.nn.Parameter(torch.zeros(n_visible), requires_grad=False)   # visible biases

    def up(self, v: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(v @ self.W + self.b)

    def down(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(h @ self.W.T + self.a)

    @torch.no_grad()
    def cd1_step(self, v0: torch.Tensor, velocity: list[torch.Tensor], momentum: float,
                 generator: Optional[torch.Generator] = None) -> float:
        """One CD-1 update on a batch of visible probabilities; returns its reconstruction MSE."""
        h0 = self.up(v0)
        gen = generator if h0.device.type == "cpu" else None   # CUDA draws from the seeded default generator
        h0_sample = (torch.rand(h0.shape, generator=gen, device=h0.device) < h0).to(h0.dtype)
        v1 = self.down(h0_sample)
        h1 = self.up(v1)
        n = len(v0)
        grads = ((v0.T @ h0 - v1.T @ h1) / n - WEIGHT_DECAY * self.W, (h0 - h1).mean(0), (v0 - v1).mean(0))
        for p, vel, g in zip((self.W, self.b, self.a), velocity, grads):
            vel.mul_(momentum).add_(g, alpha=LR)
            p.add_(vel)
        return float(((v0 - v1) ** 2).mean())


class DBN(torch.nn.Module):
    """A stack of RBMs; :meth:`reconstruct` is the deterministic up–down pass."""

    def __init__(self, n_visible: int, hidden: tuple[int, ...] = (500, 500, 500),
                 generator: Optional[torch.Generator] = None):
        super().__init__()
        sizes = (n_visible,) + tuple(hidden)
        self.rbms = torch.nn.ModuleList(BernoulliRBM(i, o, generator) for i, o in zip(sizes[:-1], sizes[1:]))

    @torch.no_grad()
    def reconstruct(self, v: torch.Tensor) -> torch.Tensor:
        """(B, D) probabilities → (B, D): up through every RBM, then down through every RBM."""
        h = v
        for rbm in self.rbms:
            h = rbm.up(h)
        for rbm in reversed(self.rbms):
            h = rbm.down(h)
        return h

    @torch.no_grad()
    def pretrain(self, v: torch.Tensor, epochs: int, batch_size: int, generator: torch.Generator,
                 progress: Optional[Callable[[dict], None]] = None, name: str = "") -> float:
        """Greedy layer-wise CD-1 on v (N, D) in [0, 1] (on the RBMs' device); returns the last
        batch's reconstruction MSE of the top RBM."""
        p = v.mean(0).clamp(1e-3, 1 - 1e-3)
        self.rbms[0].a.copy_(torch.log(p / (1 - p)))
        data, err = v, float("nan")
        for layer, rbm in enumerate(self.rbms):
            velocity = [torch.zeros_like(t) for t in (rbm.W, rbm.b, rbm.a)]
            for epoch in range(epochs):
                order = torch.randperm(len(data), generator=generator).to(data.device)
                for start in range(0, len(data), batch_size):
                    err = rbm.cd1_step(data[order[start:start + batch_size]], velocity,
                                       FIRST_MOMENTUM if epoch == 0 else MOMENTUM, generator)
                    if not np.isfinite(err):
                        raise NonFiniteLoss(f"{name}: RBM {layer + 1} reconstruction error is {err} at epoch {epoch + 1}")
                    if progress is not None:
                        progress({"epoch": epoch + 1, "loss": err, "images": min(batch_size, len(data) - start),
                                  "layer": layer + 1})
            data = torch.cat([rbm.up(data[i:i + 4096]) for i in range(0, len(data), 4096)])
        return err


def run_novelty_dbn(spec: CellSpec, data: Dataset, split: Split, ctx: RunContext) -> CellResult:
    """Protocol *novelty*: a 3x500 DBN pretrained on the normal training images; scores
    ``re`` (normalized squared error) and ``mse`` of the up–down reconstruction."""
    r = spec.resolved()
    g = set_seed(r.seed)
    D = int(np.prod(input_shape(data)))
    dbn = DBN(D, generator=g).to(ctx.device)
    x_tr = as_seen(data, data.x_train[split.train_idx]).reshape(-1, D).to(ctx.device)
    synchronize(ctx.device)
    t0 = time.perf_counter()
    err = dbn.pretrain(x_tr, r.epochs, r.batch_size, g, ctx.progress, r.cell_id)
    synchronize(ctx.device)
    train_seconds = time.perf_counter() - t0
    x_te = as_seen(data, data.x_test[split.test_idx])
    recon = torch.cat([dbn.reconstruct(x_te[i:i + 1024].reshape(-1, D).to(ctx.device)).cpu()
                       for i in range(0, len(x_te), 1024)]).reshape(x_te.shape)
    scores = {"re": re_score(x_te, recon).numpy(), "mse": reconstruction_mse(x_te, recon).numpy()}
    return CellResult(split.test_labels, scores, {"re": None, "mse": None}, train_seconds,
                      info={"final_loss": err, "hidden": [500, 500, 500], "lr": LR, "momentum": MOMENTUM})
