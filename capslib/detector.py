"""A capsule anomaly detector fitted on a folder of images (issue 16): fit, save, load, score.

Both ways in are the study's own code on the folder's images (:mod:`capslib.folder`):
:mod:`capslib.protocols` builds, trains and evaluates the network exactly as for a cell of the
grid (paper A: the *proposed* two-capsule CapsNet, AS with the logistic-regression threshold;
paper B: the CapsNet classifier of the normal classes, −PP and −RE), and a saved detector
scores new images with the same functions. Scores: higher = more anomalous.

A model folder holds ``model.safetensors`` (the weights: tensors only, so loading a model
someone sends you runs no code) and ``model.json`` (format version, CapsNet config, classes,
preprocessing, thresholds, training settings, test metrics, the code's commit, the weights'
SHA-256). A corrupt file or one of another format version is refused in one line.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from . import __version__, protocols
from .capsnet import CapsNet, CapsNetConfig
from .config import PAPER_A_TRAINING, PAPER_B_DEFAULT, ConfigError
from .data import DataError, Dataset
from .folder import (IMAGE_SUFFIXES, FolderData, FolderError, Preprocessing, Skipped, list_images, load_folder,
                     read_images)
from .scores import score_metrics
from .splits import Split
from .train import check_precision, default_device, evaluate_capsnet

FORMAT, FORMAT_VERSION = "capslib-detector", 1
WEIGHTS, META = "model.safetensors", "model.json"
DECISION = {"imbalanced": "anomaly_score", "novelty": None}    # the score a threshold decides on
VARIANT = {"imbalanced": "proposed", "novelty": ""}
SCORE_ORDER = ("anomaly_score", "length_difference", "r_l", "routing_gini", "pp", "re")


class ModelFileError(DataError):
    """A model folder cannot be loaded (missing, corrupt, another format version); one line."""


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
    """What :mod:`capslib.protocols` reads of a CellSpec, for a folder (which the dataset
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
    from .store import device_name, git_commit

    commit = git_commit()                       # the code this fit starts with
    device = torch.device(device) if device else default_device()
    cell = folder_cell(data, settings)
    ds, split = study_data(data)
    job = protocols.capsnet_job(cell, ds, split, device, settings.precision)
    steps = cell.epochs * -(-len(split.train_idx) // cell.batch_size)
    bar, callback = progress_bar(steps) if progress else (None, None)
    try:
        trained = protocols.train_job(job, ds, callback)
    finally:
        if bar is not None:
            bar.close()
    requests = protocols.evaluation_requests(cell, ds, split)
    result = protocols.cell_result(cell, ds, split, protocols.evaluate_requests(job.model, requests, settings.precision),
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


class Detector:
    """A trained CapsNet and what scoring with it needs (``meta``, the model.json)."""

    def __init__(self, model: CapsNet, meta: dict):
        self.model, self.meta = model, meta

    @property
    def protocol(self) -> str:
        return self.meta["protocol"]

    @property
    def prep(self) -> Preprocessing:
        p = self.meta["preprocessing"]
        return Preprocessing(p["channels"], p["image_size"])

    @property
    def thresholds(self) -> dict[str, Optional[float]]:
        return {s: None if t is None else float(t) for s, t in self.meta["thresholds"].items()}

    @property
    def decision_score(self) -> Optional[str]:
        return self.meta["decision_score"]

    def evaluate(self, x: torch.Tensor, keep: Optional[Sequence[int]] = None) -> dict[str, np.ndarray]:
        """Every score of the protocol per image (N,), with ``reconstructions`` of ``keep``
        and, under paper B, the ``predicted_class`` (the longest capsule)."""
        p = self.meta["preprocessing"]
        o = evaluate_capsnet(self.model, x, p["standardize"], p["decoder_capsule"],
                             keep_reconstructions=None if keep is None else np.asarray(keep),
                             precision=self.meta["training"]["precision"])
        if self.protocol == "imbalanced":
            out = protocols.imbalanced_measures(o)
            out["routing_gini"] = self.meta["gini_sign"] * out["routing_gini"]
        else:
            out = protocols.novelty_measures(o)
            out["predicted_class"] = o["lengths"].argmax(1)
        if keep is not None:
            out["reconstructions"] = o.get("reconstructions", np.zeros((0, *x.shape[1:]), np.float32))
        return out

    def decide(self, scores: dict[str, np.ndarray]) -> Optional[np.ndarray]:
        """1 where the decision score exceeds its threshold (paper A: AS > logistic threshold)."""
        s = self.decision_score
        return None if s is None else (scores[s] > self.thresholds[s]).astype(np.int64)

    def score_files(self, paths: Sequence[Path], skip_unreadable: bool = False, chunk: int = 512
                    ) -> tuple[list[dict], list[Skipped]]:
        """One row per readable image: path, every score, threshold and decision where one exists."""
        rows, skipped = [], []
        for start in range(0, len(paths), chunk):
            x, kept, skip = read_images(paths[start:start + chunk], self.prep, skip_unreadable)
            skipped += skip
            if not kept:
                continue
            scores = self.evaluate(x)
            decision = self.decide(scores)
            for i, p in enumerate(kept):
                row = {"path": str(p)}
                row.update({s: float(scores[s][i]) for s in SCORE_ORDER if s in scores})
                if "predicted_class" in scores:
                    row["predicted_class"] = self.meta["classes"][int(scores["predicted_class"][i])]
                if decision is not None:
                    row["threshold"] = self.thresholds[self.decision_score]
                    row["anomalous"] = int(decision[i])
                rows.append(row)
        return rows, skipped

    # ---- saving and loading -------------------------------------------------------------
    def save(self, model_dir: str | os.PathLike) -> Path:
        from safetensors.torch import save_file

        d = Path(model_dir)
        d.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        tmp = d / (WEIGHTS + ".tmp")
        # one metadata key: safetensors writes its metadata map in hash order, so two keys would
        # make two saves of the same weights differ in their header's bytes
        save_file(state, str(tmp), metadata={"format": f"{FORMAT} {FORMAT_VERSION}"})
        self.meta["weights_sha256"] = hashlib.sha256(tmp.read_bytes()).hexdigest()
        tmp_meta = d / (META + ".tmp")
        tmp_meta.write_text(json.dumps(self.meta, indent=1, sort_keys=True))
        os.replace(tmp, d / WEIGHTS)
        os.replace(tmp_meta, d / META)
        return d

    @classmethod
    def load(cls, model_dir: str | os.PathLike, device=None) -> "Detector":
        from safetensors import SafetensorError
        from safetensors.torch import load

        d = Path(model_dir)
        meta_path, weights = d / META, d / WEIGHTS
        for p in (meta_path, weights):
            if not p.is_file():
                raise ModelFileError(f"{p}: missing; a model folder is written by `python -m capslib fit`")
        try:
            meta = json.loads(meta_path.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise ModelFileError(f"{meta_path}: not valid JSON, the file is corrupt ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ModelFileError(f"{meta_path}: not a capslib detector (no \"format\": \"{FORMAT}\")")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ModelFileError(f"{meta_path}: detector format {meta.get('format_version')!r} (commit "
                                 f"{meta.get('commit', '?')}), this capslib reads format {FORMAT_VERSION}: "
                                 f"fit the model again, or score with that commit")
        raw = weights.read_bytes()
        if hashlib.sha256(raw).hexdigest() != meta.get("weights_sha256"):
            raise ModelFileError(f"{weights}: its SHA-256 differs from the one in {META}: the file is corrupt "
                                 f"or from another fit")
        try:
            cfg = dict(meta["capsnet"])
            cfg["decoder_hidden"] = tuple(cfg["decoder_hidden"])
            model = CapsNet(CapsNetConfig(**cfg))
            model.load_state_dict(load(raw), strict=True)
        except (SafetensorError, KeyError, TypeError, RuntimeError, ValueError) as e:
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelFileError(f"{d}: the weights do not load into the model its {META} describes ({why})") from None
        model.to(torch.device(device) if device else default_device()).eval()
        return cls(model, meta)


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


def collect_images(items: Sequence[str | os.PathLike]) -> tuple[list[Path], list[Skipped]]:
    """Image files named on the command line, folders searched recursively; other files listed."""
    files, skipped = [], []
    for item in map(Path, items):
        if item.is_dir():
            found, skip = list_images(item, recursive=True)
            files += found
            skipped += skip
        elif not item.exists():
            raise FolderError(f"{item}: no such file or folder")
        elif item.suffix.lower() in IMAGE_SUFFIXES:
            files.append(item)
        else:
            skipped.append(Skipped(item, f"not an image file (suffix {item.suffix or 'none'!r})"))
    return files, skipped


def write_csv(rows: list[dict], out) -> None:
    """Rows as CSV, the columns in the rows' order (to a path, or a text stream)."""
    if not rows:
        return
    stream = open(out, "w", newline="") if isinstance(out, (str, os.PathLike)) else out
    try:
        w = csv.DictWriter(stream, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    finally:
        if stream is not out:
            stream.close()


EXAMPLE = {"dataset": "digits", "protocol": "imbalanced", "normal_class": 0, "anomaly_fraction": 0.1}


def example(where: str | os.PathLike, fit_model: bool = False, data_root=None, device=None) -> dict[str, str]:
    """The chapter's example: the digits cell of :data:`EXAMPLE` written as a folder under
    ``where/images`` (if not there yet), and with ``fit_model`` a model fitted on it with the
    default settings in ``where/model`` (if not there yet; the book's build does this, so the
    chapter only loads it). Returns the chapter's parameters ``image_root`` and ``model_dir``."""
    from .folder import write_example_folder

    where = Path(where)
    images, model_dir = where / "images", where / "model"
    if not (images / "normal").is_dir():
        write_example_folder(images, data_root=data_root, **EXAMPLE)
    if fit_model:
        fit_or_load(load_folder(images), model_dir, FitSettings(), device, train=True)
    return {"image_root": str(images), "model_dir": str(model_dir)}
