"""An example folder written from the study's data, with a detector fitted on it: what the
"your images" chapter runs on."""
from __future__ import annotations

import os
from pathlib import Path

from capslib.data.folder import load_folder

from capslib.detect.fit import FitSettings, fit_or_load


EXAMPLE = {"dataset": "digits", "protocol": "imbalanced", "normal_class": 0, "anomaly_fraction": 0.1}


def example(where: str | os.PathLike, fit_model: bool = False, data_root=None, device=None) -> dict[str, str]:
    """The chapter's example: the digits cell of :data:`EXAMPLE` written as a folder under
    ``where/images`` (if not there yet), and with ``fit_model`` a model fitted on it with the
    default settings in ``where/model`` (if not there yet; the book's build does this, so the
    chapter only loads it). Returns the chapter's parameters ``image_root`` and ``model_dir``."""
    from capslib.data.folder import write_example_folder

    where = Path(where)
    images, model_dir = where / "images", where / "model"
    if not (images / "normal").is_dir():
        write_example_folder(images, data_root=data_root, **EXAMPLE)
    if fit_model:
        fit_or_load(load_folder(images), model_dir, FitSettings(), device, train=True)
    return {"image_root": str(images), "model_dir": str(model_dir)}
