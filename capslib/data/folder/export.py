"""A study cell's images written as a folder in :mod:`.layout`'s layout, so that fitting on the
folder trains exactly the cell's data.

The folder is written beside its target under a temporary name and renamed into place, so an
interrupted export leaves the target as it was. A target that exists must be empty or an
earlier export holding only the files it wrote (listed in its :data:`MANIFEST`): a user's own
files, folders and links are never deleted."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from capslib.data.folder.images import FolderError

MANIFEST = ".capslib-export.json"     # the files an export wrote, relative to its folder


def _entries(root: Path) -> tuple[list[str], list[str]]:
    """The files (links to files included) and the folders (and links to folders, never followed)
    under ``root``, relative to it and sorted."""
    files, folders = [], []
    for where, dirs, names in os.walk(root):            # os.walk follows no link
        here = Path(where)
        folders += [str((here / d).relative_to(root)) + ("" if not (here / d).is_symlink() else "@") for d in dirs]
        files += [str((here / n).relative_to(root)) for n in names]
    return sorted(files), sorted(folders)


def check_export_target(root: Path) -> None:
    """Refuse, in one line, a target that is a file or holds anything an export did not write:
    a file, a folder (an empty one too) or a link."""
    if not root.exists():
        return
    if not root.is_dir():
        raise FolderError(f"{root}: a file is there, not a folder; name a new or empty folder")
    files, folders = _entries(root)
    if not files and not folders:
        return
    try:
        written = set(json.loads((root / MANIFEST).read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        written = set()
    foreign = [f for f in files if f != MANIFEST and (f not in written or (root / f).is_symlink())]
    if foreign:
        raise FolderError(f"{root}: holds {len(foreign)} file(s) export-folder did not write (e.g. {foreign[0]}); "
                          "nothing was changed: name a new or empty folder")
    parents = {str(q) for f in written for q in Path(f).parents if str(q) != "."}
    foreign = [d.rstrip("@") + "/" for d in folders if d not in parents]     # a link ends in @: never a parent
    if foreign:
        raise FolderError(f"{root}: holds {len(foreign)} folder(s) or link(s) export-folder did not write (e.g. "
                          f"{foreign[0]}); nothing was changed: name a new or empty folder")


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
    (normal/<class>/ named by the dataset's class numbers). An earlier export at ``root`` is
    replaced; any other non-empty ``root`` is refused (:func:`check_export_target`). Returns ``root``."""
    from capslib.core.config import CellSpec
    from capslib.data.datasets import load_dataset
    from capslib.data.splits import check_imbalanced, imbalanced_split, novelty_split

    root = Path(root).resolve()
    check_export_target(root)
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
    rel = [(data.x_train[i], Path(d) / f"train{i:05d}.png") for i, d in zip(split.train_idx, train_dirs)]
    rel += [(data.x_test[i], Path("test") / ("anomalous" if y else "normal") / f"test{i:05d}.png")
            for i, y in zip(split.test_idx, split.test_labels)]
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.export-", dir=root.parent))
    try:
        for x, path in rel:
            (tmp / path).parent.mkdir(parents=True, exist_ok=True)
            save_image(x, tmp / path)
        (tmp / MANIFEST).write_text(json.dumps({"files": sorted(str(p) for _, p in rel), "dataset": dataset,
                                                "protocol": protocol}, indent=1))
        check_export_target(root)                   # again: nothing of the user's appeared meanwhile
        old = root.parent / f".{root.name}.old-{uuid.uuid4().hex[:8]}"
        if root.exists():
            os.rename(root, old)                    # an empty folder or an earlier export
        os.rename(tmp, root)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:                           # Ctrl-C included: the target stays as it was
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
