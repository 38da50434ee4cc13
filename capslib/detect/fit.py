"""Fit a detector on a folder of images: :class:`capslib.detect.estimator.CapsNetDetector`
on the folder's training images, its test set scored, and a saved model reused when it was
fitted on the same request."""
from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import torch

from capslib.data.folder import FolderData, FolderDirs
from capslib.model.scores import score_metrics
from capslib.train.plain import default_device

from capslib.detect.detector import Detector, META, ModelFileError
from capslib.detect.estimator import CapsNetDetector
from capslib.detect.training import FitSettings


def fit(data: FolderData, settings: FitSettings = FitSettings(), device=None, progress: bool = False) -> "Detector":
    """Train the protocol's CapsNet on the folder's training images, evaluate its test set."""
    device = torch.device(device) if device else default_device()
    est = CapsNetDetector(protocol=data.protocol, device=str(device), verbose=progress, **asdict(settings))
    det = est.fit(data.x_train, data.train_labels).detector_
    test = det.evaluate(data.x_test)
    metrics = ({s: score_metrics(v, data.test_labels, det.thresholds.get(s)) for s, v in test.items()
                if s != "predicted_class"} if data.labelled else {})
    det.meta.update({
        "classes": list(data.classes),
        "preprocessing": {**det.meta["preprocessing"], **data.prep.to_dict(), "resize": "bilinear"},
        "data": {"root": str(data.root), "test_from": data.test_from, "n_train": len(data.train_labels),
                 "n_test_normal": int((data.test_labels == 0).sum()), "n_test_anomalous": int(data.test_labels.sum()),
                 "skipped": len(data.skipped), "split": data.split_record()},
        "test_metrics": metrics, "request": fit_request(data, settings),
    })
    return det

def fit_request(data: FolderData, settings: FitSettings) -> dict:
    """What a fit was asked (kept in model.json): a saved model is reused only for the same."""
    return {"root": str(data.root.resolve()), "preprocessing": data.prep.to_dict(), "test_from": data.test_from,
            "settings": asdict(settings), "layout": dict(data.asked)}


def saved_request(meta: dict) -> dict:
    """A saved model's request; one saved before the subfolders could be named was asked for
    the default names."""
    return {"layout": FolderDirs().to_dict(), **meta.get("request", {})}


def fit_or_load(data: FolderData, model_dir: str | os.PathLike, settings: FitSettings = FitSettings(),
                device=None, train: bool = True, progress: bool = False) -> tuple[Detector, str]:
    """The model saved in ``model_dir`` when it was fitted on this folder with these settings;
    else (``train``) fit and save one. Returns the detector and "loaded" or "fitted"."""
    request = fit_request(data, settings)
    if (Path(model_dir) / META).exists():
        det = Detector.load(model_dir, device)
        differs = [k for k in request if saved_request(det.meta).get(k) != request[k]]
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
