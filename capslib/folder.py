"""Your own images (issue 16): a folder of image files as the data of either paper's protocol.

The layout is anomalib's folder convention; what it holds chooses the way in:

* paper A, protocol *imbalanced*: ``FOLDER/normal/`` (the normal class) and ``FOLDER/anomalous/``
  (a few anomalies), both used in training as paper A does;
* paper B, protocol *novelty*: ``FOLDER/normal/<class>/`` subfolders, two classes or more; an
  optional ``FOLDER/anomalous/`` holds test anomalies only (paper B trains on normal images).

Either may have ``FOLDER/test/normal/`` and ``FOLDER/test/anomalous/``; without them the test set
is drawn from the folders above with a fixed seed. Files are read with Pillow (PNG, JPEG, BMP,
TIFF; any size and mode), converted to ``channels`` and resized to ``image_size``, into float32
in [0, 1]. A file that cannot be read stops loading with one line naming it (or, when asked,
is skipped); every file not read is listed in ``FolderData.skipped``, never dropped silently.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

import numpy as np
import torch

from .data import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MIN_NORMAL = 8        # images per normal folder (paper A) or per normal class (paper B)
MIN_ANOMALOUS = 2     # paper A without a test folder: at least one to train on and one to test
TEST_FRACTION = 0.3   # share of each folder drawn into the test set when there is no test/ folder
SPLIT_SEED = 0
MIN_IMAGE_SIZE = 17   # the CapsNet's two 9x9 convolutions (stride 1, then 2) need 17 pixels
MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}                 # channels -> Pillow mode
HIGH_DEPTH = {"I": 65535.0, "I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "F": 1.0}
NATURAL = {"1": 1, "L": 1, "LA": 2, "La": 2, "RGB": 3, "RGBA": 4, "RGBa": 4, "PA": 4}  # others: RGB
PROTOCOLS = {"imbalanced": "paper A", "novelty": "paper B"}


class FolderError(DataError):
    """A folder or image file cannot be used; the one-line message names it and says why."""


class Skipped(NamedTuple):
    path: Path
    reason: str


@dataclass(frozen=True)
class Preprocessing:
    """How a file becomes the network's input: ``channels`` 1 (grayscale, the default), 2, 3
    (RGB) or 4, or None to keep each file's own (then they must agree); a square resize to
    ``image_size`` (bilinear, antialiased when shrinking); values in [0, 1]."""
    channels: Optional[int] = 1
    image_size: int = 28

    def __post_init__(self):
        if self.channels is not None and self.channels not in MODES:
            raise FolderError(f"channels {self.channels!r}: choose 1 (grayscale), 2, 3 (RGB), 4 or None (keep)")
        if not isinstance(self.image_size, int) or self.image_size < MIN_IMAGE_SIZE:
            raise FolderError(f"image_size {self.image_size!r}: the CapsNet needs an integer >= {MIN_IMAGE_SIZE}")

    def to_dict(self) -> dict:
        return asdict(self)


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError

    if path.stat().st_size == 0:
        raise FolderError(f"{path}: empty file (0 bytes)")
    try:
        im = Image.open(path)
        im.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FolderError(f"{path}: cannot read as an image ({why})") from None
    return im


def read_image(path: str | os.PathLike, prep: Preprocessing = Preprocessing()) -> np.ndarray:
    """One file as a (C, H, W) float32 array in [0, 1] under ``prep``."""
    from PIL import Image

    path = Path(path)
    im = _open(path)
    size = (prep.image_size, prep.image_size)
    if im.mode in HIGH_DEPTH:                       # 16-bit or float grayscale
        a = np.clip(np.asarray(im, dtype=np.float32) / HIGH_DEPTH[im.mode], 0.0, 1.0)
        im = Image.fromarray(a, mode="F")
        im = im.resize(size, Image.BILINEAR) if im.size != size else im
        a = np.asarray(im, dtype=np.float32)[None]
        c = prep.channels or 1
        gray = a if c < 3 else np.repeat(a, 3, axis=0)
        return np.concatenate([gray, np.ones_like(a)]) if c in (2, 4) else gray
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    mode = MODES[prep.channels or NATURAL.get(im.mode, 3)]
    if im.mode != mode:
        im = im.convert(mode)
    if im.size != size:
        im = im.resize(size, Image.BILINEAR)
    a = np.asarray(im, dtype=np.float32) / 255.0
    return (a[None] if a.ndim == 2 else a.transpose(2, 0, 1)).copy()


def list_images(folder: Path, recursive: bool = False) -> tuple[list[Path], list[Skipped]]:
    """The image files of ``folder`` (sorted; by suffix) and every other entry, listed as skipped."""
    images, skipped = [], []
    entries = sorted(folder.rglob("*") if recursive else folder.iterdir())
    for p in entries:
        if p.is_dir():
            if not recursive:
                skipped.append(Skipped(p, "a folder here is not read"))
        elif p.suffix.lower() in IMAGE_SUFFIXES:
            images.append(p)
        else:
            skipped.append(Skipped(p, f"not an image file (suffix {p.suffix or 'none'!r})"))
    return images, skipped


def read_images(paths: Sequence[Path], prep: Preprocessing, skip_unreadable: bool = False
                ) -> tuple[torch.Tensor, list[Path], list[Skipped]]:
    """Read ``paths`` into one (N, C, H, W) tensor. An unreadable file raises FolderError, or is
    skipped and listed with ``skip_unreadable``; with ``channels=None`` every file must come out
    with the same number of channels as the first one."""
    arrays, kept, skipped = [], [], []
    for p in paths:
        try:
            a = read_image(p, prep)
        except FolderError as e:
            if not skip_unreadable:
                raise
            skipped.append(Skipped(p, str(e).split(": ", 1)[-1]))
            continue
        if arrays and a.shape != arrays[0].shape:
            raise FolderError(f"{p}: {a.shape[0]} channel(s) after conversion where {kept[0]} has "
                              f"{arrays[0].shape[0]}; set channels to 1 (grayscale) or 3 (RGB) to convert every file alike")
        arrays.append(a)
        kept.append(p)
    C, S = (arrays[0].shape[0] if arrays else prep.channels or 1), prep.image_size
    x = torch.from_numpy(np.stack(arrays)) if arrays else torch.zeros(0, C, S, S)
    return x, kept, skipped


@dataclass
class FolderData:
    """A folder's images under one protocol, ready for :mod:`capslib.detector`."""
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


# ---- example folders written from the study's datasets ------------------------------------

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
    :func:`capslib.splits.imbalanced_split`, paper B those of :func:`capslib.splits.novelty_split`
    (normal/<class>/ named by the dataset's class numbers). Rewrites ``root`` when it exists
    with other contents; returns ``root``."""
    import shutil

    from .config import CellSpec
    from .data import load_dataset
    from .splits import check_imbalanced, imbalanced_split, novelty_split

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
