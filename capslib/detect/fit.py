"""Fit a detector on a folder of images: the folder as a study cell, trained and evaluated
like the study's cells, and reused when a saved model was fitted on the same request."""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from capslib import __version__
from capslib.study import protocols
from capslib.core.errors import ConfigError
from capslib.core.config import PAPER_A_TRAINING, PAPER_B_DEFAULT
from capslib.train.jobs import evaluate_requests, train_job
from capslib.data.datasets import Dataset
from capslib.data.folder import FolderData
from capslib.model.scores import score_metrics
from capslib.data.splits import Split
from capslib.train.plain import check_precision, default_device

from capslib.detect.detector import DECISION, Detector, FORMAT, FORMAT_VERSION, META, ModelFileError, VARIANT


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
    """What :mod:`capslib.study.protocols` reads of a CellSpec, for a folder (which the dataset
    registry does not name): the protocol, the variant and the resolved training settings."""
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


def folder_cell(data: FolderData, settings: FitSettings) -> FolderCell:
    paper = PAPER_A_TRAINING if data.protocol == "imbalanced" else PAPER_B_DEFAULT
    pick = lambda name: paper[name] if getattr(settings, name) is None else getattr(settings, name)
    K = len(data.classes)
    return FolderCell(data.protocol, VARIANT[data.protocol], settings.seed, pick("epochs"), pick("batch_size"),
                      settings.lr, pick("lr_decay"), K, (K,) if data.protocol == "novelty" else (),
                      f"folder-{data.root.name}-{data.protocol}")


def study_data(data: FolderData) -> tuple[Dataset, Split]:
    """The folder as the protocols' Dataset and Split (paper B's anomalies are class K)."""
    K = len(data.classes)
    y_test = data.test_labels * (1 if data.protocol == "imbalanced" else K)
    ds = Dataset("folder", data.x_train, torch.from_numpy(data.train_labels), data.x_test,
                 torch.from_numpy(y_test), n_classes=2 if data.protocol == "imbalanced" else K + 1)
    return ds, Split(np.arange(len(data.train_labels)), data.train_labels, np.arange(len(data.test_labels)),
                     data.test_labels)


def progress_bar(total: int, desc: str = "fit"):
    """A tqdm bar over training steps and the progress callback that advances it."""
    from tqdm.auto import tqdm
    bar = tqdm(total=total, desc=desc, unit="step")

    def update(info: dict) -> None:
        bar.set_postfix(epoch=info["epoch"], loss=f"{info['loss']:.4f}", refresh=False)
        bar.update(1)
    return bar, update


def _finite(v: Optional[float]):
    return v if v is None or math.isfinite(v) else repr(float(v))     # JSON has no inf: "inf"


def fit(data: FolderData, settings: FitSettings = FitSettings(), device=None, progress: bool = False) -> "Detector":
    """Train the protocol's CapsNet on the folder's training images, evaluate its test set."""
    from capslib.core.provenance import device_name, git_commit

    commit = git_commit()                       # the code this fit starts with
    device = torch.device(device) if device else default_device()
    cell = folder_cell(data, settings)
    ds, split = study_data(data)
    job = protocols.capsnet_job(cell, ds, split, device, settings.precision)
    steps = cell.epochs * -(-len(split.train_idx) // cell.batch_size)
    bar, callback = progress_bar(steps) if progress else (None, None)
    try:
        trained = train_job(job, ds, callback)
    finally:
        if bar is not None:
            bar.close()
    requests = protocols.evaluation_requests(cell, ds, split)
    result = protocols.cell_result(cell, ds, split, evaluate_requests(job.model, requests, settings.precision),
                                   trained)
    metrics = ({s: score_metrics(v, data.test_labels, result.thresholds.get(s)) for s, v in result.scores.items()}
               if data.labelled else {})
    test = requests["test"]
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "capslib_version": __version__,
        "commit": commit, "torch": torch.__version__, "device": device_name(device),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "protocol": data.protocol, "paper": "A" if data.protocol == "imbalanced" else "B", "variant": cell.variant,
        "classes": list(data.classes), "capsnet": asdict(job.model.config),
        "preprocessing": {**data.prep.to_dict(), "resize": "bilinear", "standardize": test.standardize,
                          "decoder_capsule": test.decoder_capsule},
        "training": {"epochs": cell.epochs, "batch_size": cell.batch_size, "lr": cell.lr, "lr_decay": cell.lr_decay,
                     "seed": cell.seed, "precision": settings.precision, "train_seconds": trained["train_seconds"],
                     "final_loss": trained["final_loss"]},
        "data": {"root": str(data.root), "test_from": data.test_from, "n_train": len(data.train_labels),
                 "n_test_normal": int((data.test_labels == 0).sum()), "n_test_anomalous": int(data.test_labels.sum()),
                 "skipped": len(data.skipped)},
        "thresholds": {s: _finite(t) for s, t in result.thresholds.items()},
        "decision_score": DECISION[data.protocol], "gini_sign": result.info.get("gini_sign", 1.0),
        "test_metrics": metrics, "request": fit_request(data, settings),
    }
    return Detector(job.model, meta)

def fit_request(data: FolderData, settings: FitSettings) -> dict:
    """What a fit was asked (kept in model.json): a saved model is reused only for the same."""
    return {"root": str(data.root.resolve()), "preprocessing": data.prep.to_dict(), "test_from": data.test_from,
            "settings": asdict(settings)}


def fit_or_load(data: FolderData, model_dir: str | os.PathLike, settings: FitSettings = FitSettings(),
                device=None, train: bool = True, progress: bool = False) -> tuple[Detector, str]:
    """The model saved in ``model_dir`` when it was fitted on this folder with these settings;
    else (``train``) fit and save one. Returns the detector and "loaded" or "fitted"."""
    request = fit_request(data, settings)
    if (Path(model_dir) / META).exists():
        det = Detector.load(model_dir, device)
        differs = [k for k in request if det.meta.get("request", {}).get(k) != request[k]]
        if not differs:
            return det, "loaded"
        if not train:
            raise ModelFileError(f"{model_dir}: the saved model was fitted with another {', '.join(differs)}; "
                                 f"fit again (train=True) or point model_dir elsewhere")
    elif not train:
        raise ModelFileError(f"{model_dir}: no saved model, and train=False only loads one")
    det = fit(data, settings, device, progress)
    det.save(model_dir)
    return det, "fitted"
