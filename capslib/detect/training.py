"""Training a detector on images in memory: the images as a study cell (the same job, seeds and
evaluation as the study's cells), and the trained model with its training-set scores.

:class:`capslib.detect.estimator.CapsNetDetector` and, through it, the folder route
(:mod:`capslib.detect.fit`) train here."""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
import torch

from capslib import __version__
from capslib.study import protocols
from capslib.core.errors import ConfigError
from capslib.core.config import PAPER_A_TRAINING, PAPER_B_DEFAULT
from capslib.train.jobs import evaluate_requests, train_job
from capslib.data.datasets import Dataset
from capslib.data.splits import Split
from capslib.train.plain import check_precision

from capslib.detect.detector import DECISION, Detector, FORMAT, FORMAT_VERSION, VARIANT


@dataclass(frozen=True)
class FitSettings:
    """Training settings; None takes the paper's (A: 10 epochs, batch 32; B: 20, 100, decay 0.96)."""
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    lr: float = 1e-3
    lr_decay: Optional[float] = None
    seed: int = 0
    precision: str = "fp32"

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"{name} must be a whole number >= 1 (or None: the paper's), got {v!r}")
        if not self.lr > 0 or (self.lr_decay is not None and not 0 < self.lr_decay <= 1):
            raise ConfigError(f"lr must be > 0 and lr_decay in (0, 1], got {self.lr!r}, {self.lr_decay!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a whole number >= 0, got {self.seed!r}")
        check_precision(self.precision)


@dataclass(frozen=True)
class FolderCell:
    """What :mod:`capslib.study.protocols` reads of a CellSpec, for images the dataset registry
    does not name (a folder, arrays): the protocol, the variant and the resolved training settings."""
    protocol: str
    variant: str
    seed: int
    epochs: int
    batch_size: int
    lr: float
    lr_decay: float
    n_normal_classes: int
    held_out: tuple[int, ...]
    cell_id: str

    def resolved(self) -> "FolderCell":
        return self

    @property
    def init_seed(self) -> int:
        return self.seed


def detector_cell(protocol: str, n_classes: int, settings: FitSettings, name: str) -> FolderCell:
    """The cell of ``n_classes`` normal classes (paper B; paper A: normal and anomalous)."""
    paper = PAPER_A_TRAINING if protocol == "imbalanced" else PAPER_B_DEFAULT
    pick = lambda key: paper[key] if getattr(settings, key) is None else getattr(settings, key)
    return FolderCell(protocol, VARIANT[protocol], settings.seed, pick("epochs"), pick("batch_size"), settings.lr,
                      pick("lr_decay"), n_classes, (n_classes,) if protocol == "novelty" else (), name)


def progress_bar(total: int, desc: str = "fit"):
    """A tqdm bar over training steps and the progress callback that advances it."""
    from tqdm.auto import tqdm
    bar = tqdm(total=total, desc=desc, unit="step")

    def update(info: dict) -> None:
        bar.set_postfix(epoch=info["epoch"], loss=f"{info['loss']:.4f}", refresh=False)
        bar.update(1)
    return bar, update


def finite(v: Optional[float]):
    """A threshold as JSON holds it: a number, None, or a string for inf ("inf")."""
    return v if v is None or math.isfinite(v) else repr(float(v))


def train_detector(protocol: str, x: torch.Tensor, labels: np.ndarray, n_classes: int, settings: FitSettings,
                   device: torch.device, progress: bool = False, name: str = "arrays"
                   ) -> tuple[Detector, protocols.CellResult]:
    """Train the protocol's CapsNet on ``x`` (N, C, S, S) in [0, 1] and score its training set.

    ``labels``: paper A (``imbalanced``) 1 = known anomaly, 0 = normal; paper B (``novelty``)
    the normal class, 0..n_classes-1. The images are a study cell whose test set is the training
    set itself, so :func:`capslib.study.protocols.cell_result` gives the training scores and
    paper A's thresholds (logistic regression on the training scores, §3) as the study has them.
    Returns the detector (its ``meta`` is the model.json of the fit) and that result."""
    from capslib.core.provenance import device_name, git_commit

    commit = git_commit()                       # the code this fit starts with
    cell = detector_cell(protocol, n_classes, settings, name)
    y = torch.from_numpy(labels)
    idx = np.arange(len(labels))
    test_labels = labels if protocol == "imbalanced" else np.zeros_like(labels)
    ds = Dataset(name, x, y, x, y, n_classes=2 if protocol == "imbalanced" else n_classes + 1)
    split = Split(idx, labels, idx, test_labels)
    job = protocols.capsnet_job(cell, ds, split, device, settings.precision)
    steps = cell.epochs * -(-len(idx) // cell.batch_size)
    bar, callback = progress_bar(steps) if progress else (None, None)
    try:
        trained = train_job(job, ds, callback)
    finally:
        if bar is not None:
            bar.close()
    test = protocols.evaluation_requests(cell, ds, split)["test"]
    outputs = evaluate_requests(job.model, {"test": test}, settings.precision)
    outputs["train"] = outputs["test"]          # paper A's training pass: the same images, the same request
    result = protocols.cell_result(cell, ds, split, outputs, trained)
    C, S = int(x.shape[1]), int(x.shape[2])
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "capslib_version": __version__,
        "commit": commit, "torch": torch.__version__, "device": device_name(device),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "protocol": protocol, "paper": "A" if protocol == "imbalanced" else "B", "variant": cell.variant,
        "classes": ["normal", "anomalous"] if protocol == "imbalanced" else [str(c) for c in range(n_classes)],
        "capsnet": asdict(job.model.config),
        "preprocessing": {"channels": C, "image_size": S, "standardize": test.standardize,
                          "decoder_capsule": test.decoder_capsule},
        "training": {"epochs": cell.epochs, "batch_size": cell.batch_size, "lr": cell.lr, "lr_decay": cell.lr_decay,
                     "seed": cell.seed, "precision": settings.precision, "train_seconds": trained["train_seconds"],
                     "final_loss": trained["final_loss"], "n_train": len(idx)},
        "thresholds": {s: finite(t) for s, t in result.thresholds.items()},
        "decision_score": DECISION[protocol], "gini_sign": result.info.get("gini_sign", 1.0),
    }
    return Detector(job.model, meta), result
