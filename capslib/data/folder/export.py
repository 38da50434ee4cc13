"""A study cell's images written as a folder in :mod:`.layout`'s layout, so that fitting on the
folder trains exactly the cell's data."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence
import numpy as np
import torch

from capslib.data.folder.images import FolderError


def save_image(x: np.ndarray | torch.Tensor, path: Path) -> None:
    """A (C, H, W) image in [0, 1] as an 8-bit PNG (C = 1: grayscale, 3: RGB)."""
    from PIL import Image

    a = np.asarray(x.numpy() if isinstance(x, torch.Tensor) else x)
    a = np.clip(np.rint(a * 255), 0, 255).astype(np.uint8)
    Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)).save(path)


def write_example_folder(root: str | os.PathLike, dataset: str = "digits", protocol: str = "imbalanced",
                         normal_class: int = 0, anomaly_fraction: float = 0.1, held_out: Sequence[int] = (9,),
                         seed: int = 0, data_root=None) -> Path:
    """Export one cell's images of a study dataset as a folder in this module's layout, with
    the cell's own test set under test/: paper A (``protocol="imbalanced"``) the images of
    :func:`capslib.data.splits.imbalanced_split`, paper B those of :func:`capslib.data.splits.novelty_split`
    (normal/<class>/ named by the dataset's class numbers). Rewrites ``root`` when it exists
    with other contents; returns ``root``."""
    import shutil

    from capslib.core.config import CellSpec
    from capslib.data.datasets import load_dataset
    from capslib.data.splits import check_imbalanced, imbalanced_split, novelty_split

    root = Path(root)
    if protocol not in ("imbalanced", "novelty"):
        raise FolderError(f"protocol {protocol!r}: choose imbalanced (paper A) or novelty (paper B)")
    if protocol == "imbalanced":                # the study's own checks: one line for a class or fraction out of range
        CellSpec(protocol, dataset, "capsnet", variant="proposed", normal_class=normal_class,
                 anomaly_fraction=anomaly_fraction, seed=seed).resolved()
    else:
        CellSpec(protocol, dataset, "capsnet", held_out=tuple(held_out), seed=seed).resolved()
    data = load_dataset(dataset, data_root)
    if protocol == "imbalanced":
        check_imbalanced(data.y_train, dataset, normal_class, anomaly_fraction)
        split = imbalanced_split(data.y_train, data.y_test, normal_class, anomaly_fraction, seed)
        train_dirs = ["normal" if y == 0 else "anomalous" for y in split.train_labels]
    elif protocol == "novelty":
        split = novelty_split(data.y_train, data.y_test, tuple(held_out), data.n_classes)
        train_dirs = [f"normal/{int(c)}" for c in data.y_train[split.train_idx]]
    if root.exists():
        shutil.rmtree(root)
    items = [(data.x_train[i], root / d / f"train{i:05d}.png") for i, d in zip(split.train_idx, train_dirs)]
    items += [(data.x_test[i], root / "test" / ("anomalous" if y else "normal") / f"test{i:05d}.png")
              for i, y in zip(split.test_idx, split.test_labels)]
    for x, path in items:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(x, path)
    return root
