"""A folder's layout (anomalib's folder convention) as the data of either paper's protocol: the
training and test images, their labels, and every file not read."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from capslib.data.folder.images import (FolderError, IMAGE_SUFFIXES, MIN_ANOMALOUS, MIN_NORMAL, PROTOCOLS,
    Preprocessing, SPLIT_SEED, Skipped, TEST_FRACTION, list_images, read_images)


@dataclass
class FolderData:
    """A folder's images under one protocol, ready for :mod:`capslib.detect.detector`."""
    root: Path
    protocol: str                     # "imbalanced" (paper A) | "novelty" (paper B)
    classes: list[str]                # paper A: ["normal", "anomalous"]; paper B: the normal classes
    prep: Preprocessing               # with channels resolved (never None here)
    x_train: torch.Tensor             # (N, C, H, W) in [0, 1]
    train_labels: np.ndarray          # paper A: 1 = anomaly; paper B: the class index
    train_paths: list[Path]
    x_test: torch.Tensor
    test_labels: np.ndarray           # 1 = anomaly, 0 = normal
    test_paths: list[Path]
    test_from: str                    # "test/" or how the test set was drawn
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def labelled(self) -> bool:
        """Whether the test set holds both normal and anomalous images (AUROC is defined)."""
        return 0 < int(self.test_labels.sum()) < len(self.test_labels)

    def summary(self) -> str:
        n_an = int(self.test_labels.sum())
        train = (f"{int((self.train_labels == 0).sum())} normal + {int(self.train_labels.sum())} anomalous"
                 if self.protocol == "imbalanced" else
                 ", ".join(f"{c}: {int((self.train_labels == i).sum())}" for i, c in enumerate(self.classes)))
        return (f"{self.root}: {PROTOCOLS[self.protocol]} (protocol {self.protocol}); train {train}; "
                f"test {len(self.test_labels) - n_an} normal + {n_an} anomalous ({self.test_from}); "
                f"{self.prep.channels} channel(s), {self.prep.image_size}x{self.prep.image_size}; "
                f"{len(self.skipped)} file(s) skipped")


def _need(folder: Path, n: int, minimum: int, what: str) -> None:
    if n < minimum:
        raise FolderError(f"{folder}: {n} image(s), fewer than the {minimum} {what}")


ONE_CLASS = ("{root}: one normal class and no anomalies, and neither paper's method learns from one class "
             "alone: add a few anomalous images in {root}/anomalous/ (paper A), or split {root}/normal/ into "
             "two or more class subfolders {root}/normal/<class>/ (paper B)")


def detect_layout(root: Path) -> tuple[str, list[str]]:
    """("imbalanced", ["normal", "anomalous"]) or ("novelty", [the class subfolders]) from the
    folders' contents; FolderError when neither paper's layout is there."""
    normal = root / "normal"
    if not root.is_dir():
        raise FolderError(f"{root}: no such folder")
    if not normal.is_dir():
        raise FolderError(f"{root}: no normal/ folder; expected normal/ plus anomalous/ (paper A) "
                          f"or normal/<class>/ subfolders (paper B)")
    files = [p for p in normal.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    subdirs = sorted(p.name for p in normal.iterdir() if p.is_dir() and list_images(p)[0])
    has_anomalous = (root / "anomalous").is_dir() and bool(list_images(root / "anomalous", True)[0])
    if files and subdirs:
        raise FolderError(f"{normal}: holds both images and class subfolders ({', '.join(subdirs)}); "
                          f"use one: images (paper A) or subfolders (paper B)")
    if len(subdirs) >= 2:
        return "novelty", subdirs
    if len(subdirs) == 1:
        raise FolderError(f"{normal}: one class subfolder ({subdirs[0]}); paper B needs two classes or more, "
                          f"paper A takes the normal images directly in normal/ with a few in anomalous/")
    if not files:
        raise FolderError(f"{normal}: no images (PNG, JPEG, BMP or TIFF)")
    if not has_anomalous:
        raise FolderError(ONE_CLASS.format(root=root))
    return "imbalanced", ["normal", "anomalous"]


def _draw_test(n: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of the ``round(fraction·n)`` test items (at least one, and one left to train on)."""
    k = min(max(1, int(round(fraction * n))), n - 1)
    mask = np.zeros(n, bool)
    mask[rng.permutation(n)[:k]] = True
    return mask


def load_folder(root: str | os.PathLike, prep: Preprocessing = Preprocessing(), test_fraction: float = TEST_FRACTION,
                split_seed: int = SPLIT_SEED, skip_unreadable: bool = False) -> FolderData:
    """Read a folder under the protocol its layout names (see the module's docstring)."""
    root = Path(root).expanduser()
    if not 0 < test_fraction < 1:
        raise FolderError(f"test_fraction {test_fraction}: must lie in (0, 1)")
    protocol, classes = detect_layout(root)
    skipped = [Skipped(p, "not part of the layout (normal/, anomalous/, test/)")
               for p in sorted(root.iterdir()) if p.name not in ("normal", "anomalous", "test")]
    test_dir = root / "test"
    # (folder, class index, fewest images) of the training folders; paper B's anomalous/ is test data
    if protocol == "imbalanced":
        sources = [(root / "normal", 0, MIN_NORMAL), (root / "anomalous", 1, 1 if test_dir.exists() else MIN_ANOMALOUS)]
    else:
        sources = [(root / "normal" / c, i, MIN_NORMAL) for i, c in enumerate(classes)]
    if test_dir.exists() and protocol == "novelty" and (root / "anomalous").exists():
        raise FolderError(f"{root}: both anomalous/ and test/; for paper B the anomalous images are test "
                          f"images only: move them into test/anomalous/")
    rng = np.random.default_rng(split_seed)
    train, test = [], []                    # (path, label) pairs
    for folder, label, minimum in sources:
        paths, skip = list_images(folder, recursive=folder.name == "anomalous")
        skipped += skip
        _need(folder, len(paths), minimum, "needed" + ("" if test_dir.exists() else " to train and test"))
        if test_dir.exists():
            train += [(p, label) for p in paths]
        else:
            mask = _draw_test(len(paths), test_fraction, rng)
            train += [(p, label) for p, m in zip(paths, mask) if not m]
            is_anomaly = int(protocol == "imbalanced" and label == 1)
            test += [(p, is_anomaly) for p, m in zip(paths, mask) if m]
    if test_dir.exists():
        parts = [d for d in ("normal", "anomalous") if (test_dir / d).is_dir()]
        if not parts:
            raise FolderError(f"{test_dir}: holds neither normal/ nor anomalous/")
        skipped += [Skipped(p, "not part of test/ (normal/, anomalous/)")
                    for p in sorted(test_dir.iterdir()) if p.name not in ("normal", "anomalous")]
        for d in parts:
            paths, skip = list_images(test_dir / d, recursive=True)
            skipped += skip
            test += [(p, int(d == "anomalous")) for p in paths]
        test_from = "test/"
    else:
        test_from = f"{test_fraction:g} of each folder drawn with seed {split_seed}"
        if protocol == "novelty" and (root / "anomalous").is_dir():
            paths, skip = list_images(root / "anomalous", recursive=True)
            skipped += skip
            test += [(p, 1) for p in paths]
    if not test:
        raise FolderError(f"{root}: no test images")
    x_tr, tr_paths, skip_tr = read_images([p for p, _ in train], prep, skip_unreadable)
    x_te, te_paths, skip_te = read_images([p for p, _ in test], prep, skip_unreadable)
    channels = int(x_tr.shape[1])
    if x_te.shape[1] != channels and len(x_te):
        raise FolderError(f"{te_paths[0]}: {x_te.shape[1]} channel(s) after conversion where {tr_paths[0]} has "
                          f"{channels}; set channels to 1 (grayscale) or 3 (RGB) to convert every file alike")
    label_of = dict(train + test)
    y_tr = np.array([label_of[p] for p in tr_paths], np.int64)
    for folder, label, _ in sources:   # unreadable files skipped: still one to train on?
        _need(folder, int((y_tr == label).sum()), 1, "readable ones left to train on")
    return FolderData(root, protocol, classes, Preprocessing(channels, prep.image_size), x_tr, y_tr, tr_paths,
                      x_te, np.array([label_of[p] for p in te_paths], np.int64), te_paths, test_from,
                      skipped + skip_tr + skip_te)
