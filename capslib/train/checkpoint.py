"""In-flight checkpoints: a cell's training saved after every epoch, so a run that is
killed, interrupted or out of time resumes the cell from its last finished epoch.

A checkpoint holds everything the rest of the training depends on: the model, Adam's
state, the learning-rate schedule, the cell's data-order generator (its state at an
epoch boundary is the position in the data order), the global torch / NumPy / Python RNG
states, the epochs done and the training seconds so far. On CPU a resumed cell is bitwise
identical to one trained without interruption (tests/test_checkpoint.py).

Where the files live (``$CAPSLIB_CACHE/checkpoints/<store key>/<cell_id>.pt`` and ``.json``) and
what a store has in flight: :mod:`capslib.core.cache`, which reads them without torch. Both files are
written to a temporary name and renamed, so a kill leaves the previous epoch's checkpoint.
A checkpoint that cannot be read, or that belongs to another cell, precision or format, is
reported in one line and the cell starts over, as is one saved by other training code (a
hash of :data:`capslib.core.cache.TRAINING_CODE`'s source); it is removed once the cell is in the store.
"""
from __future__ import annotations

import json
import os
import random
import sys
import time
from typing import Optional

import numpy as np
import torch

from capslib.core.cache import checkpoint_dir, code_fingerprint
from capslib.core.provenance import git_commit

FORMAT = 1   # bump when the saved fields change; older checkpoints then start over


class TrainingPaused(RuntimeError):
    """Training stopped at an epoch boundary (its checkpoint saved) because the next epoch
    would end past the run's deadline; the next run resumes it."""

    def __init__(self, name: str, epoch: int, epochs: int):
        super().__init__(f"{name}: paused after epoch {epoch}/{epochs}; the next run resumes it")
        self.epoch, self.epochs = epoch, epochs


def _rng_states() -> dict:
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                      "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
            "python": {"version": py_state[0], "state": list(py_state[1])}}


def _set_rng_states(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    n = s["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    random.setstate((s["python"]["version"], tuple(s["python"]["state"]), None))


class Checkpoint:
    """The checkpoint of one cell in one store. ``deadline`` (a ``time.monotonic()``
    value, or None): training pauses at the first epoch boundary after which another
    epoch would likely end past it."""

    def __init__(self, store_dir: str | os.PathLike, cell_id: str, precision: str = "fp32",
                 deadline: Optional[float] = None, out=sys.stderr):
        self.dir = checkpoint_dir(store_dir)
        self.cell_id, self.precision, self.deadline, self.out = cell_id, precision, deadline, out
        self.path = self.dir / f"{cell_id}.pt"
        self.meta_path = self.dir / f"{cell_id}.json"
        self.resumed_from = 0    # the epoch the last load() resumed from (0: a fresh start)

    def identity(self) -> dict:
        return {"format": FORMAT, "cell_id": self.cell_id, "precision": self.precision, "code": code_fingerprint()}

    def exists(self) -> bool:
        return self.path.exists()

    # ---- saving ----
    def save(self, model, optimizer, scheduler, generator: torch.Generator, epoch: int, epochs: int,
             train_seconds: float, final_loss: float) -> None:
        """Everything after epoch ``epoch`` (1-based count of epochs done), atomically."""
        self.dir.mkdir(parents=True, exist_ok=True)
        state = {**self.identity(), "epoch": epoch, "epochs": epochs, "train_seconds": train_seconds,
                 "final_loss": final_loss, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "generator": generator.get_state(), "rng": _rng_states()}
        tmp = self.dir / f".{self.cell_id}.{os.getpid()}.pt"
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        meta = {**self.identity(), "epoch": epoch, "epochs": epochs, "train_seconds": round(train_seconds, 3),
                "updated_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "pid": os.getpid(),
                "commit": git_commit()}
        tmp = self.dir / f".{self.cell_id}.{os.getpid()}.json"
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, self.meta_path)

    # ---- loading ----
    def load(self) -> Optional[dict]:
        """The saved state if there is a usable one, else None (a damaged or foreign
        checkpoint is reported in one line and removed: the cell starts over)."""
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict):
                raise ValueError("not a checkpoint")
        except Exception as e:   # truncated, corrupt, or not ours: any reader error means the same
            return self._discard(f"unreadable ({type(e).__name__})")
        mine = self.identity()
        theirs = {k: state.get(k) for k in mine}
        if theirs != mine:
            diff = ", ".join(f"{k} {theirs[k]!r} (this run: {mine[k]!r})" for k in mine if theirs[k] != mine[k])
            return self._discard(f"from another run: {diff}")
        self.resumed_from = int(state["epoch"])
        return state

    def restore(self, state: dict, model, optimizer, scheduler, generator: torch.Generator) -> None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        _set_rng_states(state["rng"])

    def _discard(self, why: str) -> None:
        print(f"checkpoint {self.path} {why}: starting {self.cell_id} over", file=self.out)
        self.remove()
        return None

    def remove(self) -> None:
        for p in (self.path, self.meta_path):
            p.unlink(missing_ok=True)

    def should_pause(self, epoch_seconds: float) -> bool:
        """True when another epoch of ``epoch_seconds`` would likely end past the deadline."""
        return self.deadline is not None and time.monotonic() + epoch_seconds > self.deadline
