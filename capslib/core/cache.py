"""Where in-flight checkpoints live, and what a store has in flight, without torch.

Layout, outside the repository::

    $CAPSLIB_CACHE/checkpoints/<store key>/<cell_id>.pt     # the state (capslib.train.checkpoint)
    $CAPSLIB_CACHE/checkpoints/<store key>/<cell_id>.json   # epoch, epochs, precision, when

``$CAPSLIB_CACHE`` defaults to ``~/.cache/capslib``; the store key names the results folder
(``<root>/<profile>``), so two stores never share an in-flight cell. Reading what is in flight
needs only the JSON files, so the status line and the chapters do it without importing torch.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

CACHE_ENV = "CAPSLIB_CACHE"
# the modules whose code decides what an epoch computes: a checkpoint made by other code is
# not resumed (a cell must not be half one version and half another)
TRAINING_CODE = ("capslib.model.capsnet", "capslib.model.losses", "capslib.data.splits", "capslib.train.plain",
                 "capslib.train.checkpoint", "capslib.train.jobs", "capslib.study.protocols")


def code_fingerprint() -> str:
    """A short hash of the training code's source (:data:`TRAINING_CODE`), found by module name
    (the modules' packages are imported, the modules themselves only read)."""
    h = hashlib.sha1()
    for name in TRAINING_CODE:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ImportError(f"checkpoint fingerprint: no module {name}")
        h.update(name.encode() + b"\0" + Path(spec.origin).read_bytes())
    return h.hexdigest()[:12]


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "capslib").expanduser()


def store_key(store_dir: str | os.PathLike) -> str:
    """A short, stable name for a results folder ``<root>/<profile>``: its last two path
    parts and a hash of its absolute path."""
    p = Path(store_dir).resolve()
    digest = hashlib.sha1(str(p).encode()).hexdigest()[:10]
    return f"{p.parent.name}-{p.name}-{digest}"


def checkpoint_dir(store_dir: str | os.PathLike) -> Path:
    """The folder of a store's in-flight checkpoints."""
    return cache_root() / "checkpoints" / store_key(store_dir)


def in_flight(store_dir: str | os.PathLike) -> list[dict]:
    """The cells of a store with a checkpoint: their metadata (cell_id, epoch, epochs,
    precision, updated_utc, code: the fingerprint of the training code that saved it, and
    commit: the commit it ran at), oldest first."""
    d = checkpoint_dir(store_dir)
    out = []
    for p in sorted(d.glob("*.json")) if d.exists() else []:
        if p.name.startswith(".") or not p.with_suffix(".pt").exists():
            continue
        try:
            out.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            out.append({"cell_id": p.stem, "epoch": None, "epochs": None, "damaged": True})
    return sorted(out, key=lambda m: m.get("updated_utc") or "")
