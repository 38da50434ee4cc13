"""A compact, self-checking copy of the MNIST family for machines that receive the data
with the code (a GPU slot's 64 MiB working tree): one xz-compressed ``.npz`` of uint8
arrays per dataset, with the SHA-256 of every array inside.

    python -m capslib pack-data --data-root <torchvision layout> --out <root>/pack

writes ``<out>/<name>.npz.xz``; :func:`capslib.data.datasets.load_dataset` reads
``<data root>/pack/<name>.npz.xz`` when the raw IDX files are not there. The arrays are
exactly the IDX files' (checked on reading), so a cell trained from the pack equals one
trained from the raw files.
"""
from __future__ import annotations

import hashlib
import io
import json
import lzma
import os
from pathlib import Path

import numpy as np

from capslib.core.errors import DataError

PACK_DIR = "pack"
PACKABLE = ("mnist", "fashion", "kmnist")
KEYS = ("train_x", "train_y", "test_x", "test_y")


def pack_path(root: str | os.PathLike, name: str) -> Path:
    return Path(root) / PACK_DIR / f"{name}.npz.xz"


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def pack_dataset(name: str, arrays: dict[str, np.ndarray], out: str | os.PathLike, preset: int = 9) -> Path:
    """Write one dataset's uint8 arrays (train_x, train_y, test_x, test_y) as
    ``<out>/<name>.npz.xz``, atomically; returns the path."""
    if set(arrays) != set(KEYS) or any(a.dtype != np.uint8 for a in arrays.values()):
        raise DataError(f"{name}: a pack holds uint8 {', '.join(KEYS)}; got "
                        f"{', '.join(f'{k} {a.dtype}' for k, a in arrays.items())}")
    manifest = {"dataset": name, "format": 1, "sha256": {k: _sha(a) for k, a in arrays.items()},
                "shapes": {k: list(a.shape) for k, a in arrays.items()}}
    buf = io.BytesIO()
    np.savez(buf, manifest=np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8), **arrays)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.npz.xz"
    tmp = out / f".{name}.npz.xz.{os.getpid()}"
    tmp.write_bytes(lzma.compress(buf.getvalue(), preset=preset))
    os.replace(tmp, path)
    return path


def read_pack(path: str | os.PathLike, name: str) -> dict[str, np.ndarray]:
    """One dataset's arrays from its pack, each checked against the pack's SHA-256."""
    try:
        raw = lzma.decompress(Path(path).read_bytes())
        with np.load(io.BytesIO(raw)) as z:
            manifest = json.loads(z["manifest"].tobytes())
            arrays = {k: z[k] for k in KEYS}
    except (OSError, lzma.LZMAError, ValueError, KeyError, EOFError) as e:
        raise DataError(f"{path}: not a readable data pack ({type(e).__name__}); "
                        f"make it again with python -m capslib pack-data") from None
    bad = [k for k in KEYS if _sha(arrays[k]) != manifest["sha256"].get(k)]
    if manifest.get("dataset") != name or bad:
        raise DataError(f"{path}: pack of {manifest.get('dataset')!r} for {name!r}"
                        + (f", {bad[0]} fails its checksum" if bad else "") + "; make it again with pack-data")
    return arrays
