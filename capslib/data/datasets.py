"""Datasets (STUDY.md §4): the embedded digits, the MNIST family from raw IDX files in
torchvision's folder layout, and smallNORB from the NYU ``.mat`` files.

Every loader returns a :class:`Dataset` of float32 images in [0, 1], shape (N, C, H, W),
and int64 labels. torchvision is imported only by :func:`download`, never at import time.
"""
from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from capslib.core.errors import DataError
from capslib.data.pack import PACK_DIR, PACKABLE, pack_dataset, pack_path, read_pack

DATA_ENV = "CAPSLIB_DATA"
DEFAULT_DATA_ROOT = Path.home() / ".cache" / "capslib" / "data"


@dataclass
class Dataset:
    name: str
    x_train: torch.Tensor   # (N, C, H, W) float32 in [0, 1]
    y_train: torch.Tensor   # (N,) int64
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int = 10

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])


def data_root(root: Optional[str | os.PathLike] = None) -> Path:
    """The data root: the argument, else $CAPSLIB_DATA, else ~/.cache/capslib/data."""
    return Path(root or os.environ.get(DATA_ENV) or DEFAULT_DATA_ROOT).expanduser()


# ---- embedded digits ---------------------------------------------------------------------

def load_digits28(root=None, test_fraction: float = 0.3, split_seed: int = 0) -> Dataset:
    """scikit-learn's 1,797 real 8x8 digits, bilinearly upsampled to 28x28 in [0, 1],
    with a fixed stratified train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)        # (1797, 1, 8, 8)
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).clamp(0, 1)
    idx = np.arange(len(x))
    tr, te = train_test_split(idx, test_size=test_fraction, stratify=d.target, random_state=split_seed)
    y = torch.from_numpy(d.target.astype(np.int64))
    tr, te = np.sort(tr), np.sort(te)
    return Dataset("digits", x[tr].contiguous(), y[tr], x[te].contiguous(), y[te])


# ---- MNIST family: raw IDX files -----------------------------------------------------------

IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MNIST_FILES = {
    "train_x": "train-images-idx3-ubyte.gz", "train_y": "train-labels-idx1-ubyte.gz",
    "test_x": "t10k-images-idx3-ubyte.gz", "test_y": "t10k-labels-idx1-ubyte.gz",
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzipped or not): magic 0x0000TTDD, then D big-endian int32 sizes."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read IDX file ({e}); delete it and download again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number); delete it and download again")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header; delete it and download again")
    dims = struct.unpack(">" + "i" * ndim, raw[4:header])
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: IDX file truncated or corrupt: {len(raw) - header} data bytes, "
                        f"dims {dims} need {expected}; delete it and download again")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


IDX_FOLDERS = {"mnist": "MNIST", "fashion": "FashionMNIST", "kmnist": "KMNIST"}
# what every MNIST-family file holds: uint8 images (N, 28, 28) and uint8 labels (N,) in 0..9
MNIST_SHAPES = {"train_x": (60000, 28, 28), "train_y": (60000,), "test_x": (10000, 28, 28), "test_y": (10000,)}


def check_mnist_arrays(name: str, arr: dict[str, np.ndarray], where: dict[str, str]) -> dict[str, np.ndarray]:
    """Refuse, in one line naming the file, arrays that are not what a MNIST-family file holds
    (60,000 / 10,000 images of 28x28 uint8, labels 1-D in 0..9): a file copied over another, or
    one of another dataset, stops here, before anything is packed or trained from it."""
    for k, shape in MNIST_SHAPES.items():
        a = arr[k]
        what = "images" if k.endswith("_x") else "labels"
        if a.dtype != np.uint8 or a.shape != shape:
            raise DataError(f"{name}: {where[k]} holds {a.dtype} of shape {a.shape}, not the {what} it is named "
                            f"for (uint8 of shape {shape}); put the right file there")
        if what == "labels" and a.max(initial=0) > 9:
            raise DataError(f"{name}: {where[k]} holds labels up to {int(a.max())}, not 0..9; put the right file there")
    return arr


def raw_idx_arrays(name: str, root=None) -> dict[str, np.ndarray]:
    """A MNIST-family dataset's uint8 arrays (train_x, train_y, test_x, test_y): from the
    raw IDX files in torchvision's layout, else from ``<root>/pack/<name>.npz.xz``
    (:mod:`capslib.data.pack`)."""
    raw = data_root(root) / IDX_FOLDERS[name] / "raw"
    paths = {k: raw / v for k, v in MNIST_FILES.items()}
    missing = [p for p in paths.values() if not p.exists()]
    if missing:
        pack = pack_path(data_root(root), name)
        if pack.exists():
            return check_mnist_arrays(name, read_pack(pack, name), {k: f"{pack} ({k})" for k in MNIST_FILES})
        raise DataError(
            f"{name}: missing {missing[0]} ({len(missing)} of 4 files). Put torchvision's raw files "
            f"under {raw}/ (set --data-root or ${DATA_ENV}), or download them where torchvision "
            f"imports with: python -m capslib download {name} --data-root {data_root(root)}")
    arr = {k: read_idx(p) for k, p in paths.items()}
    return check_mnist_arrays(name, arr, {k: str(p) for k, p in paths.items()})


def _idx_dataset(name: str, folder: str) -> Callable[..., Dataset]:
    assert IDX_FOLDERS[name] == folder

    def load(root=None) -> Dataset:
        arr = raw_idx_arrays(name, root)
        to_x = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0).unsqueeze(1)
        to_y = lambda a: torch.from_numpy(a.astype(np.int64))
        return Dataset(name, to_x(arr["train_x"]), to_y(arr["train_y"]),
                       to_x(arr["test_x"]), to_y(arr["test_y"]))
    return load


# ---- smallNORB ---------------------------------------------------------------------------

NORB_MAGIC = {0x1E3D4C55: np.uint8, 0x1E3D4C54: np.int32}
NORB_FILES = {
    "train_x": "smallnorb-5x46789x9x18x6x2x96x96-training-dat.mat",
    "train_y": "smallnorb-5x46789x9x18x6x2x96x96-training-cat.mat",
    "test_x": "smallnorb-5x01235x9x18x6x2x96x96-testing-dat.mat",
    "test_y": "smallnorb-5x01235x9x18x6x2x96x96-testing-cat.mat",
}


def read_norb_mat(path: str | os.PathLike) -> np.ndarray:
    """Read a NYU smallNORB binary matrix: little-endian int32 magic, ndim, then
    max(3, ndim) int32 dims (only the first ndim are used), then the data."""
    path = Path(path)
    raw = path.read_bytes()
    if len(raw) < 8:
        raise DataError(f"{path}: truncated smallNORB header")
    magic, ndim = struct.unpack("<ii", raw[:8])
    if magic not in NORB_MAGIC or not 0 < ndim < 16:
        raise DataError(f"{path}: not a smallNORB .mat file (magic {magic:#x})")
    header = 8 + 4 * max(3, ndim)
    dims = struct.unpack("<" + "i" * ndim, raw[8:8 + 4 * ndim])
    dtype = np.dtype(NORB_MAGIC[magic]).newbyteorder("<")
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: smallNORB file truncated or corrupt ({len(raw) - header} bytes, need {expected})")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def load_smallnorb(root=None) -> Dataset:
    """smallNORB, 5 classes; both stereo images as channels, 96→48 resized, kept at 48x48
    here (the 32x32 crop, random in training and central in test, is :func:`norb_crop`)."""
    folder = data_root(root) / "smallNORB"
    paths = {k: folder / v for k, v in NORB_FILES.items()}
    missing = [p for p in paths.values() if not p.exists()]
    if missing:
        raise DataError(f"smallnorb: missing {missing[0]}. Put the four NYU .mat files "
                        f"(https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/, gunzipped) under {folder}/")
    arr = {k: read_norb_mat(p) for k, p in paths.items()}
    resize = lambda a: F.interpolate(torch.from_numpy(a.astype(np.float32) / 255.0), size=(48, 48),
                                     mode="area")
    return Dataset("smallnorb", resize(arr["train_x"]), torch.from_numpy(arr["train_y"].astype(np.int64)),
                   resize(arr["test_x"]), torch.from_numpy(arr["test_y"].astype(np.int64)), n_classes=5)


def norb_crop(x: torch.Tensor, size: int = 32, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Random ``size`` crop per image when a generator is given (training), else central."""
    H = x.shape[-1]
    if generator is None:
        o = (H - size) // 2
        return x[..., o:o + size, o:o + size]
    offs = torch.randint(0, H - size + 1, (len(x), 2), generator=generator)
    return torch.stack([img[:, i:i + size, j:j + size] for img, (i, j) in zip(x, offs.tolist())])


# ---- registry ----------------------------------------------------------------------------

DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits28,
    "mnist": _idx_dataset("mnist", "MNIST"),
    "fashion": _idx_dataset("fashion", "FashionMNIST"),
    "kmnist": _idx_dataset("kmnist", "KMNIST"),
    "smallnorb": load_smallnorb,
}
TORCHVISION_NAMES = {"mnist": "MNIST", "fashion": "FashionMNIST", "kmnist": "KMNIST"}
_CACHE: dict[tuple[str, str], Dataset] = {}


def check_dataset(name: str) -> str:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return name


def load_dataset(name: str, root=None) -> Dataset:
    """Load (and memoise per process) a dataset by its registry name."""
    key = (check_dataset(name), str(data_root(root)))
    if key not in _CACHE:
        _CACHE[key] = DATASETS[name](root)
    return _CACHE[key]


def download(name: str, root=None) -> Path:
    """Fetch an MNIST-family dataset with torchvision (where it imports and the internet is reached)."""
    if check_dataset(name) not in TORCHVISION_NAMES:
        raise DataError(f"{name}: no download; see the error of load_dataset for where its files go")
    try:
        import torchvision.datasets as tvd
    except Exception as e:   # CPU-only torch here: torchvision's compiled ops fail to load
        raise DataError(f"torchvision does not import here ({type(e).__name__}); download on a machine "
                        f"where it does, or copy the raw files under {data_root(root)}") from None
    getattr(tvd, TORCHVISION_NAMES[name])(str(data_root(root)), train=True, download=True)
    getattr(tvd, TORCHVISION_NAMES[name])(str(data_root(root)), train=False, download=True)
    return data_root(root)


def pack_data(root=None, out: Optional[str | os.PathLike] = None,
              names: Sequence[str] = PACKABLE) -> dict[str, dict]:
    """Pack the raw IDX files of ``names`` under the data root into ``out`` (default:
    ``<data root>/pack``); returns {name: {path, bytes, raw_bytes}}."""
    root = data_root(root)
    out = Path(out) if out is not None else root / PACK_DIR
    done = {}
    for name in names:
        if name not in PACKABLE:
            raise DataError(f"cannot pack {name!r}: choose among {', '.join(PACKABLE)}"
                            + ("" if name in DATASETS else " (unknown dataset)"))
        arrays = raw_idx_arrays(name, root)
        path = pack_dataset(name, arrays, out)
        done[name] = {"path": str(path), "bytes": path.stat().st_size,
                      "raw_bytes": int(sum(a.nbytes for a in arrays.values()))}
    return done
