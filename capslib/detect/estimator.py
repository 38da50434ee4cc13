"""A capsule anomaly detector on arrays, with the scikit-learn / PyOD estimator contract:
``fit(X, y)``, ``decision_function(X)`` (the anomaly scores), ``predict(X)`` (1 = anomalous),
``threshold_`` and ``decision_scores_``, ``get_params`` / ``set_params`` / ``clone``; ``save`` and
``load`` write and read the model folder of :mod:`capslib.detect.detector`."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from capslib.core.errors import ConfigError, DataError
from capslib.data.folder import MIN_IMAGE_SIZE, MODES
from capslib.train.device import resolve_device
from capslib.train.plain import default_precision

from capslib.detect.detector import Detector, ModelFileError
from capslib.detect.training import FitSettings, finite, train_detector

#: the scores ``score`` may name, the protocol's default first
SCORES = {"imbalanced": ("anomaly_score", "length_difference", "r_l", "routing_gini"), "novelty": ("pp", "re")}
PARAMS = "estimator"          # the model.json section of the estimator's parameters and decision


class ArrayError(DataError, ValueError):
    """An array given to :class:`CapsNetDetector` has the wrong shape, dtype, range or labels; one line."""


def as_images(X, what: str = "X") -> torch.Tensor:
    """``X`` as a float32 (N, C, S, S) tensor in [0, 1]: from uint8 0..255 (divided by 255, as a
    PNG file is read) or from floats in [0, 1]; (N, S, S) is one channel."""
    a = np.asarray(X.detach().cpu() if isinstance(X, torch.Tensor) else X)
    if a.ndim not in (3, 4):
        raise ArrayError(f"{what} has shape {a.shape}: give images as (N, H, W) or (N, C, H, W)")
    if len(a) == 0:
        raise ArrayError(f"{what} holds no images (shape {a.shape})")
    a = a[:, None] if a.ndim == 3 else a
    n, c, h, w = a.shape
    if c not in MODES:
        hint = "; channels last? pass X.transpose(0, 3, 1, 2)" if w in MODES else ""
        raise ArrayError(f"{what} has {c} channels (shape {a.shape}): the CapsNet takes 1 to 4{hint}")
    if h != w or h < MIN_IMAGE_SIZE:
        raise ArrayError(f"{what} holds {h}x{w} images: the CapsNet takes square images of at least "
                         f"{MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} pixels; resize or crop them first")
    if a.dtype == np.uint8:
        return torch.from_numpy(a.astype(np.float32) / 255.0)
    if not np.issubdtype(a.dtype, np.floating):
        raise ArrayError(f"{what} has dtype {a.dtype}: give uint8 (0..255) or floats in [0, 1]")
    lo, hi = float(np.min(a)), float(np.max(a))
    if not (0.0 <= lo and hi <= 1.0):       # NaN fails too
        raise ArrayError(f"{what} has values in [{lo:g}, {hi:g}]: floats must lie in [0, 1] (or give uint8 0..255)")
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def as_labels(y, n: int, protocol: str) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """The training labels the protocol's cell takes, and paper B's normal classes (None for A)."""
    if y is None:
        if protocol == "imbalanced":
            raise ArrayError("protocol 'imbalanced' needs y: 1 marks the known anomalies (paper A trains on a "
                             "few), 0 the normal images; for normal images only use protocol='novelty'")
        return np.zeros(n, np.int64), np.array([0])
    y = np.asarray(y)
    if y.shape != (n,):
        raise ArrayError(f"y has shape {y.shape} where X holds {n} images: give one label per image")
    if protocol == "novelty":
        classes, codes = np.unique(y, return_inverse=True)
        return codes.astype(np.int64).reshape(n), classes
    if not np.isin(y, (0, 1)).all():
        raise ArrayError(f"y holds {np.unique(y)[:5].tolist()}: under protocol 'imbalanced' y is 1 for a known "
                         f"anomaly, 0 for a normal image")
    if y.min() == y.max():
        raise ArrayError(f"y marks {'no anomaly' if y.max() == 0 else 'no normal image'}: paper A trains on "
                         f"normal images and a few known anomalies (for normal images only: protocol='novelty')")
    return y.astype(np.int64), None


class CapsNetDetector(BaseEstimator):
    """Either paper's CapsNet as an anomaly detector on image arrays. Every score is an anomaly
    score: higher = more anomalous.

    ``protocol="imbalanced"`` (Piciarelli et al. 2019, paper A): a two-capsule CapsNet trained
    on normal images and a few known anomalies; ``fit(X, y)`` with y = 1 for a known anomaly,
    0 for a normal image. The decision score is AS = ‖z_a‖ − ‖z_n‖ + r_l (eq. 1), and
    ``threshold_`` the score where a logistic regression on the training scores and labels
    crosses 0.5 (§3; the study's plain rule).

    ``protocol="novelty"`` (Li et al. 2019, paper B): a CapsNet classifier of the normal
    classes, trained on normal images only; ``fit(X, y)`` with y the class of each image (any
    labels; one capsule per class, in sorted order), or ``fit(X)`` for one normal class. The
    decision score is −PP (eq. 1) with two classes or more, −RE (eq. 2) with one (a single
    capsule's length is no evidence: its margin loss asks every image to be long);
    ``threshold_`` is the training scores' ``1 − contamination`` quantile, PyOD's rule, so a
    share ``contamination`` of the normal training images lies above it.

    X is (N, H, W) or (N, C, H, W), C 1 to 4, square images of at least 17 pixels: uint8 in
    0..255 or floats in [0, 1] (the training resizes nothing). Every parameter is checked by ``fit``.

    Parameters: ``epochs``, ``batch_size``, ``lr_decay`` (None: the paper's; A: 10 epochs of 32,
    B: 20 of 100 with decay 0.96 every 2,000 steps), ``lr`` (Adam), ``seed`` (weights and batch
    order), ``score`` (None: the protocol's above; or one of :data:`SCORES`), ``contamination``
    (paper B's threshold), ``device`` (None: cuda if available, else cpu), ``precision`` (the
    forward pass: fp32 or bf16; None: bf16 where the device has it natively), ``verbose`` (a
    progress bar).

    Fitted: ``detector_`` (the trained :class:`Detector`), ``score_``, ``threshold_``,
    ``decision_scores_`` and ``labels_`` (the training images' scores and decisions),
    ``normal_classes_`` (paper B: the class of each capsule; paper A: None), ``image_shape_``.
    """

    def __init__(self, *, protocol: str = "imbalanced", epochs: Optional[int] = None,
                 batch_size: Optional[int] = None, lr: float = 1e-3, lr_decay: Optional[float] = None,
                 seed: int = 0, score: Optional[str] = None, contamination: float = 0.1, device=None,
                 precision: Optional[str] = None, verbose: bool = False):
        self.protocol = protocol
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.lr_decay = lr_decay
        self.seed = seed
        self.score = score
        self.contamination = contamination
        self.device = device
        self.precision = precision
        self.verbose = verbose

    def _check_params(self) -> None:
        """One line for a parameter out of range (FitSettings checks the training's)."""
        if self.protocol not in SCORES:
            raise ConfigError(f"protocol {self.protocol!r}: choose 'imbalanced' (paper A) or 'novelty' (paper B)")
        if self.score is not None and self.score not in SCORES[self.protocol]:
            raise ConfigError(f"score {self.score!r}: protocol {self.protocol!r} decides on one of "
                              f"{', '.join(SCORES[self.protocol])}")
        c = self.contamination
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c <= 0.5:
            raise ConfigError(f"contamination must lie in (0, 0.5], got {c!r}")

    def _decision_score(self, n_classes: int) -> str:
        """The score ``score`` names, or the protocol's for ``n_classes`` normal classes."""
        if self.score is not None:
            return self.score
        return "re" if self.protocol == "novelty" and n_classes == 1 else SCORES[self.protocol][0]

    def fit(self, X, y=None) -> "CapsNetDetector":
        """Train on ``X`` (and ``y``: see the class) and score the training images."""
        self._check_params()
        x = as_images(X)
        labels, classes = as_labels(y, len(x), self.protocol)
        n_classes = 2 if classes is None else len(classes)
        score = self._decision_score(n_classes)
        device = resolve_device(self.device)
        settings = FitSettings(self.epochs, self.batch_size, self.lr, self.lr_decay, self.seed,
                               self.precision or default_precision(device))
        det, result = train_detector(self.protocol, x, labels, n_classes, settings, device, self.verbose)
        scores = np.asarray(result.scores[score], dtype=np.float64)
        if self.protocol == "imbalanced":
            threshold = float(result.thresholds[score])                     # logistic, paper A §3
        else:
            threshold = float(np.percentile(scores, 100 * (1 - self.contamination)))   # PyOD's rule
        if classes is not None:
            det.meta["classes"] = [str(c) for c in classes]
        params = {k: (str(v) if k == "device" and v is not None else v) for k, v in self.get_params().items()}
        det.meta[PARAMS] = {"params": params, "score": score, "threshold": finite(threshold),
                            "normal_classes": None if classes is None else classes.tolist(),
                            "image_shape": list(x.shape[1:])}
        det.arrays["decision_scores"] = scores
        return self._fitted(det)

    def _fitted(self, det: Detector) -> "CapsNetDetector":
        """Set the fitted attributes from a detector whose meta has the estimator's section."""
        e = det.meta[PARAMS]
        self.detector_, self.score_, self.threshold_ = det, e["score"], float(e["threshold"])
        self.normal_classes_ = None if e["normal_classes"] is None else np.asarray(e["normal_classes"])
        self.image_shape_ = tuple(e["image_shape"])
        self.decision_scores_ = det.arrays["decision_scores"]
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(np.int64)
        return self

    def decision_function(self, X) -> np.ndarray:
        """The anomaly score ``score_`` of each image (N,), float64."""
        check_is_fitted(self, "detector_")
        x = as_images(X)
        if tuple(x.shape[1:]) != self.image_shape_:
            raise ArrayError(f"X holds images of shape {tuple(x.shape[1:])} (C, H, W); this detector was fitted "
                             f"on {self.image_shape_}")
        return np.asarray(self.detector_.evaluate(x)[self.score_], dtype=np.float64)

    def predict(self, X) -> np.ndarray:
        """1 where the decision score exceeds ``threshold_`` (anomalous), else 0."""
        return (self.decision_function(X) > self.threshold_).astype(np.int64)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model folder (``model.safetensors`` + ``model.json``); returns its path."""
        check_is_fitted(self, "detector_")
        return self.detector_.save(path)

    @classmethod
    def load(cls, path: str | os.PathLike, device=None) -> "CapsNetDetector":
        """The estimator saved in ``path`` (by :meth:`save`, or by ``python -m capslib fit``),
        on ``device`` (None: the saved parameter's). Its scores equal those before saving."""
        from capslib.detect.detector import META

        meta = Path(path) / META
        det = Detector.load(path, "cpu")
        if PARAMS not in det.meta:
            raise ModelFileError(f"{meta}: saved without the estimator's parameters (format "
                                 f"{det.meta.get('format_version')}): load it with capslib.detect.Detector.load, "
                                 f"or fit it again")
        saved = det.meta[PARAMS]["params"]
        params = {k: saved[k] for k in cls._get_param_names() if k in saved}
        if device is not None:
            params["device"] = str(device)
        est = cls(**params)
        try:
            where = resolve_device(est.device)
        except ConfigError:
            raise ConfigError(f"{meta}: saved with device {est.device!r}, which this machine lacks: load it "
                              f"with CapsNetDetector.load(path, device='cpu')") from None
        det.model.to(where).eval()
        return est._fitted(det)
