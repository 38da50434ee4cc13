"""The two protocols' CapsNet cells: train one network, score its test set.

A method is a function ``(spec, data, split, ctx) -> CellResult``; :mod:`capslib.study.methods`
maps names to them. Scores follow the library's convention: higher = more anomalous.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch

from capslib.model.capsnet import CapsNet, CapsNetConfig
from capslib.core.config import CellSpec
from capslib.data.datasets import Dataset, norb_crop
from capslib.model.scores import ANOMALY, length_difference, logistic_threshold, orient, pp_score
from capslib.train.checkpoint import Checkpoint
from capslib.data.splits import Split
from capslib.train.jobs import CapsNetJob, EvalRequest, evaluate_requests, train_job
from capslib.train.plain import TrainSettings, set_seed

GALLERY_SIZE = 8   # images per side (normal, anomalous) kept for the galleries


@dataclass
class RunContext:
    device: torch.device
    progress: Optional[Callable[[dict], None]] = None   # called once per training step
    precision: str = "fp32"                              # the plain path's CapsNet forward: fp32 | bf16
    checkpoint: Optional[Checkpoint] = None              # resume from / save the CapsNet's training per epoch


@dataclass
class CellResult:
    test_labels: np.ndarray                       # (n_test,) 1 = anomaly
    scores: dict[str, np.ndarray]                 # score name -> (n_test,) anomaly scores
    thresholds: dict[str, Optional[float]]        # score name -> decision threshold (None: AUROC only)
    train_seconds: float
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # galleries, extra per-image data
    info: dict = field(default_factory=dict)      # JSON-serialisable extras


def gallery_positions(test_labels: np.ndarray, k: int = GALLERY_SIZE, seed: int = 0) -> np.ndarray:
    """k normal then k anomalous positions in the test set, drawn with a fixed seed."""
    rng = np.random.default_rng(seed)
    pick = lambda pos: np.sort(rng.choice(pos, size=min(k, len(pos)), replace=False))
    return np.concatenate([pick(np.flatnonzero(test_labels == 0)), pick(np.flatnonzero(test_labels == 1))])


def to_uint8(x: torch.Tensor | np.ndarray) -> np.ndarray:
    x = x.numpy() if isinstance(x, torch.Tensor) else x
    return np.clip(np.rint(np.asarray(x) * 255), 0, 255).astype(np.uint8)


def capsnet_for(data: Dataset, n_classes: int) -> CapsNet:
    C, H, _ = data.image_shape
    size = 32 if data.name == "smallnorb" else H
    return CapsNet(CapsNetConfig(n_classes=n_classes, in_channels=C, image_size=size))


def input_transform(data: Dataset):
    """smallNORB is stored at 48x48 and cropped to 32x32 per batch; others pass unchanged."""
    return (lambda x, g: norb_crop(x, 32, g)) if data.name == "smallnorb" else None


def capsnet_job(spec: CellSpec, data: Dataset, split: Split, device, precision: str = "fp32") -> CapsNetJob:
    """Seed, initialise and describe one CapsNet cell's training (either protocol)."""
    r = spec.resolved()
    g = set_seed(r.init_seed)   # the seed, offset for a retraining (stall rule); the split is the seed's
    y_tr = torch.from_numpy(split.train_labels)
    if r.protocol == "imbalanced":
        model = capsnet_for(data, 2).to(device)
        proposed = r.variant == "proposed"
        settings = TrainSettings(r.epochs, r.batch_size, r.lr, r.lr_decay, standardize=True, precision=precision)
        return CapsNetJob(model, split.train_idx, y_tr, settings, g,
                          decoder_mask=torch.zeros_like(y_tr) if proposed else y_tr,  # proposed: always from z_n
                          recon_mask=(y_tr == 0).float() if proposed else None,       # proposed: normal images only
                          name=spec.cell_id)
    k = r.n_normal_classes
    model = capsnet_for(data, k).to(device)
    settings = TrainSettings(r.epochs, r.batch_size, r.lr, r.lr_decay, transform=input_transform(data),
                             precision=precision)
    return CapsNetJob(model, split.train_idx, y_tr, settings, g, name=spec.cell_id)


def evaluation_requests(spec: CellSpec, data: Dataset, split: Split) -> dict[str, EvalRequest]:
    """What a cell evaluates after training: paper A the training set (for the logistic
    thresholds) and the test set; paper B the test set."""
    r = spec.resolved()
    gal = gallery_positions(split.test_labels)
    x_te = data.x_test[split.test_idx]
    if r.protocol == "imbalanced":
        decoder_capsule = 0 if r.variant == "proposed" else None   # proposed: always from z_n
        return {"train": EvalRequest(data.x_train[split.train_idx], True, decoder_capsule),
                "test": EvalRequest(x_te, True, decoder_capsule, keep_reconstructions=gal)}
    return {"test": EvalRequest(x_te, False, None, keep_reconstructions=gal, transform=input_transform(data))}


def cell_result(spec: CellSpec, data: Dataset, split: Split, outputs: dict[str, dict], fit: dict) -> CellResult:
    """A CapsNet cell's CellResult from its evaluation ``outputs`` (one dict per request of
    :func:`evaluation_requests`) and ``fit`` (train_capsnet's dict)."""
    result_fn = imbalanced_result if spec.resolved().protocol == "imbalanced" else novelty_result
    return result_fn(spec, data, split, outputs, fit)


def run_capsnet(spec: CellSpec, data: Dataset, split: Split, ctx: RunContext) -> CellResult:
    """Either protocol's CapsNet cell on the plain path: train, evaluate, score."""
    job = capsnet_job(spec, data, split, ctx.device, ctx.precision)
    fit = train_job(job, data, ctx.progress, ctx.checkpoint)
    outputs = evaluate_requests(job.model, evaluation_requests(spec, data, split), ctx.precision)
    return cell_result(spec, data, split, outputs, fit)


def run_imbalanced_capsnet(spec: CellSpec, data: Dataset, split: Split, ctx: RunContext) -> CellResult:
    """Paper A: a two-capsule CapsNet (z_n = capsule 0, z_a = capsule 1), *standard* or *proposed*."""
    return run_capsnet(spec, data, split, ctx)


def imbalanced_measures(o: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Paper A's per-image scores (AS = ‖z_a‖ − ‖z_n‖ + r_l, eq. 1, and the others) from one
    evaluation pass (:func:`capslib.train.plain.evaluate_capsnet`'s dict); the routing Gini unoriented."""
    lengths = torch.from_numpy(o["lengths"])
    ld = length_difference(lengths).numpy()
    return {"length_difference": ld, "r_l": o["r_l"], "anomaly_score": ld + o["r_l"],   # AS, eq. 1
            "pp": pp_score(lengths).numpy(), "re": o["nse"], "routing_gini": o["gini"][:, ANOMALY]}


def imbalanced_result(spec: CellSpec, data: Dataset, split: Split, outputs: dict[str, dict], fit: dict) -> CellResult:
    """Paper A's scores, thresholds and arrays from the evaluation ``outputs`` of a trained model."""
    x_te = data.x_test[split.test_idx]
    gal = gallery_positions(split.test_labels)
    tr, te = outputs["train"], outputs["test"]
    train_s, test_s = imbalanced_measures(tr), imbalanced_measures(te)
    # the Gini's orientation is not given by its definition: fit it on the training labels
    sign = orient(train_s["routing_gini"], split.train_labels)
    train_s["routing_gini"], test_s["routing_gini"] = sign * train_s["routing_gini"], sign * test_s["routing_gini"]
    thresholds = {"length_difference": 0.0}   # the standard decision: anomaly iff ‖z_a‖ > ‖z_n‖
    for name in ("r_l", "anomaly_score", "routing_gini"):
        thresholds[name] = logistic_threshold(train_s[name], split.train_labels)
    thresholds.update(pp=None, re=None)
    return CellResult(
        split.test_labels, test_s, thresholds, fit["train_seconds"],
        arrays={"gallery_positions": gal, "gallery_images": to_uint8(x_te[gal]),
                "gallery_reconstructions": to_uint8(te["reconstructions"]),
                "test_lengths": te["lengths"].astype(np.float32),
                "train_anomaly_score": train_s["anomaly_score"].astype(np.float32),
                "train_labels": split.train_labels},
        info={"final_loss": fit["final_loss"], "gini_sign": sign,
              "n_train_normal": int((split.train_labels == 0).sum()),
              "n_train_anomalous": int((split.train_labels == 1).sum())})


def run_novelty_capsnet(spec: CellSpec, data: Dataset, split: Split, ctx: RunContext) -> CellResult:
    """Paper B: a CapsNet classifier of the normal classes; scores −PP and −RE."""
    return run_capsnet(spec, data, split, ctx)


def novelty_measures(o: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Paper B's anomaly scores −PP (eq. 1) and −RE (eq. 2) from one evaluation pass."""
    return {"pp": pp_score(torch.from_numpy(o["lengths"])).numpy(), "re": o["nse"]}


def novelty_result(spec: CellSpec, data: Dataset, split: Split, outputs: dict[str, dict], fit: dict) -> CellResult:
    """Paper B's scores and arrays from the evaluation ``outputs`` of a trained model."""
    r = spec.resolved()
    k = r.n_normal_classes
    transform = input_transform(data)
    x_te = data.x_test[split.test_idx]
    gal = gallery_positions(split.test_labels)
    te = outputs["test"]
    scores = novelty_measures(te)
    shown = x_te[gal] if transform is None else transform(x_te[gal], None)
    normal_test = split.test_labels == 0
    return CellResult(
        split.test_labels, scores, {"pp": None, "re": None}, fit["train_seconds"],
        arrays={"gallery_positions": gal, "gallery_images": to_uint8(shown),
                "gallery_reconstructions": to_uint8(te["reconstructions"]),
                "test_lengths": te["lengths"].astype(np.float32),
                "test_classes": data.y_test[split.test_idx].numpy()},
        info={"final_loss": fit["final_loss"], "n_capsules": k,
              "normal_test_accuracy": float(np.mean(
                  te["lengths"][normal_test].argmax(1) == _relabel(data, r.held_out)[data.y_test[split.test_idx].numpy()[normal_test]]))})


def _relabel(data: Dataset, held_out) -> np.ndarray:
    lab = np.full(data.n_classes, -1)
    normal = [c for c in range(data.n_classes) if c not in held_out]
    lab[normal] = np.arange(len(normal))
    return lab
