"""A CapsNet training and its evaluation passes, described before anything runs: the plain
path runs one job at a time (:func:`train_job`, :func:`evaluate_requests`), the fast path
(:mod:`capslib.train.stacked`) stacks several."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from capslib.data.datasets import Dataset
from capslib.model.capsnet import CapsNet
from capslib.train.checkpoint import Checkpoint
from capslib.train.plain import TrainSettings, evaluate_capsnet, train_capsnet


@dataclass
class CapsNetJob:
    """One CapsNet cell's training inputs, built before any training: the plain path
    trains it with :func:`train_job`, the batched fast path (:mod:`capslib.train.stacked`) stacks
    several. Building it seeds the RNGs and initialises the model, so both paths start
    from the same weights and draw the same batches."""
    model: CapsNet                          # initialised with the cell's seed
    train_idx: np.ndarray                   # (n,) indices into data.x_train
    targets: torch.Tensor                   # (n,) margin-loss class per training image
    settings: TrainSettings
    generator: torch.Generator              # the cell's data order (and smallNORB crops)
    decoder_mask: Optional[torch.Tensor] = None   # (n,) capsule the decoder keeps (None: target)
    recon_mask: Optional[torch.Tensor] = None     # (n,) 0/1 images in the reconstruction loss
    name: str = ""


def train_job(job: CapsNetJob, data: Dataset, progress=None, checkpoint: Optional[Checkpoint] = None) -> dict:
    """The plain path: train one job's model, one model at a time."""
    return train_capsnet(job.model, data.x_train[job.train_idx], job.targets, job.settings, job.generator,
                         decoder_mask=job.decoder_mask, recon_mask=job.recon_mask, progress=progress,
                         name=job.name, checkpoint=checkpoint)


@dataclass(frozen=True)
class EvalRequest:
    """One evaluation pass of a trained CapsNet over a set of images: the arguments of
    :func:`capslib.train.plain.evaluate_capsnet` (plain path) or, one per model, of
    :func:`capslib.train.stacked_eval.evaluate_stacked` (fast path)."""
    images: torch.Tensor                              # (N, C, H, W) in [0, 1]
    standardize: bool
    decoder_capsule: Optional[int] = None             # None: the longest capsule
    keep_reconstructions: Optional[np.ndarray] = None
    transform: Optional[Callable] = None


def evaluate_requests(model: CapsNet, requests: dict[str, EvalRequest], precision: str = "fp32") -> dict[str, dict]:
    """The plain path's evaluation: each request through ``evaluate_capsnet``."""
    return {name: evaluate_capsnet(model, q.images, q.standardize, q.decoder_capsule,
                                   keep_reconstructions=q.keep_reconstructions, transform=q.transform,
                                   precision=precision)
            for name, q in requests.items()}
