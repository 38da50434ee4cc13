"""Shared plumbing of the baseline cells: input geometry, one Adam training loop, and a
batched forward pass that returns numpy.

Training budget, one decision for every baseline: a baseline trains for the cell's
*resolved* epochs, batch size, learning rate and learning-rate decay (``CellSpec.resolved``),
i.e. exactly the budget, counted in passes over the same training images, of the CapsNet
cell it is compared with (paper B: 20 epochs on MNIST, 50 on Fashion-MNIST and smallNORB,
batch 100 / 64, Adam lr 0.001 decayed ×0.96 every 2000 steps; paper A: 10 epochs, batch 32,
no decay). A profile's epoch override (the quick profile's 3 and 5) applies to them too, so
a cell's id (which names its epochs) always says what was trained.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch

from capslib.core.config import CellSpec
from capslib.data.datasets import Dataset
from capslib.study.protocols import input_transform
from capslib.train.plain import adam_steps, model_input


def input_shape(data: Dataset) -> tuple[int, int, int]:
    """(C, H, W) the networks see: smallNORB is cropped from 48x48 to 32x32, others pass."""
    C, H, W = data.image_shape
    return (C, 32, 32) if data.name == "smallnorb" else (C, H, W)


def fit(model: torch.nn.Module, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        images: torch.Tensor, targets: torch.Tensor, r: CellSpec, generator: torch.Generator,
        device: torch.device, *, data: Optional[Dataset] = None, standardize: bool = False,
        progress: Optional[Callable[[dict], None]] = None, name: str = "",
        weight_decay: float = 0.0) -> dict:
    """Minibatch Adam on ``loss_fn(model_input, batch_targets)`` for ``r.epochs`` epochs.

    images (N, C, H, W) in [0, 1] (on any device); targets (N,) or (N, ...) per image; the
    loss function gets the (optionally standardized, smallNORB-cropped) batch and its
    targets and returns a scalar. Returns {'train_seconds', 'final_loss'}; the clock runs
    from the first step to the last, device synchronized.
    """
    transform = input_transform(data) if data is not None else None

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        x = images[idx.to(images.device)].to(device, non_blocking=True)
        if transform is not None:
            x = transform(x, generator)
        return loss_fn(model_input(x, standardize), targets[idx.to(targets.device)].to(device))

    return adam_steps(model, batch_loss, len(images), r.epochs, r.batch_size, r.lr, r.lr_decay, generator,
                      device, weight_decay=weight_decay, progress=progress, name=name)


@torch.no_grad()
def forward_all(fn: Callable[[torch.Tensor], torch.Tensor | tuple], images: torch.Tensor, device: torch.device,
                *, standardize: bool = False, batch_size: int = 256) -> list[np.ndarray]:
    """Apply ``fn`` batch by batch to every image (already as seen, see :func:`as_seen`;
    optionally standardized); returns one concatenated numpy array per output of ``fn``."""
    outs: list[list[np.ndarray]] = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device)
        y = fn(model_input(x, standardize))
        y = y if isinstance(y, tuple) else (y,)
        if not outs:
            outs = [[] for _ in y]
        for o, t in zip(outs, y):
            o.append(t.float().cpu().numpy())
    return [np.concatenate(o) for o in outs]


def as_seen(data: Dataset, x: torch.Tensor) -> torch.Tensor:
    """Images as the networks see them at test time (smallNORB centre-cropped to 32x32)."""
    t = input_transform(data)
    return x if t is None else t(x, None)
