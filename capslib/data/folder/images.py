"""Image files read into float32 arrays in [0, 1] (Pillow: any size and mode, converted to the
channels and size asked), and written back as PNG."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

import numpy as np
import torch

from capslib.core.errors import DataError


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
