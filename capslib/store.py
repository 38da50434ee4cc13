"""The results store: one folder per finished cell, written atomically, and a
``cells.csv`` with one row per (cell, score) rebuilt atomically from the folders.

Layout under a results root::

    <root>/<profile>/cells/<cell_id>/cell.json   # schema_version, spec, rows, provenance, info
    <root>/<profile>/cells/<cell_id>/arrays.npz  # per-image test scores, labels, galleries
    <root>/<profile>/cells.csv                   # one row per score, all cells

A cell folder appears only by ``os.rename`` of a complete folder from ``.staging/``, so a run
killed at any moment (kill -9) leaves either the whole cell or nothing; ``cells.csv``
is derived from the folders and rewritten by rename, so it never holds a partial row.

Several runs may share a store (:mod:`capslib.locks`): a run *claims* a cell before training
it (``.locks/<cell_id>``), so a second run trains the cells nobody holds; a staging folder is
locked by the process writing it, and a clean-up removes only folders whose owner is gone;
``cells.csv`` is rebuilt under ``.locks/cells.csv``.

Every read checks what it reads: :meth:`ResultsStore.check_cell` says in one line why a
cell is damaged (JSON, schema version, rows, npz directory); a damaged cell is moved to
``quarantine/`` (never deleted) by :meth:`ResultsStore.quarantine_damaged`, which ``run``
calls before training.
"""
from __future__ import annotations

import csv
import io
import json
import os
import platform
import shlex
import shutil
import subprocess
import time
import uuid
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from . import locks
from .config import CellSpec, OneLineError

SCHEMA_VERSION = 1
CSV_COLUMNS = ["protocol", "dataset", "method", "variant", "normal_class", "held_out", "anomaly_fraction",
               "seed", "score", "accuracy", "auroc", "auprc", "threshold", "n_test_normal", "n_test_anomalous",
               "train_seconds", "epochs", "batch_size", "precision", "device", "torch", "commit", "finished_utc",
               "cell_id"]
# the keys every row of a schema-1 cell has (CSV_COLUMNS may grow; older cells stay complete)
ROW_KEYS = tuple(k for k in CSV_COLUMNS if k != "precision")   # precision: added later, optional
# columns added after schema 1 began, with the value every older cell had: before the
# precision option the plain path computed in fp32 only
ROW_DEFAULTS = {"precision": "fp32"}
DOC_KEYS = ("cell_id", "spec", "rows", "provenance")
# schema version -> a function that turns such a document into the next version's (mechanical
# changes only); a version below SCHEMA_VERSION with no entry is reported, not guessed at
MIGRATIONS: dict[int, Callable[[dict], dict]] = {}
OWNED = "@"            # in the name of a staging folder whose writer locks it (<cell_id>@<pid>)
STAGING_GRACE_S = 60   # a staging folder without it is from capslib before the locks (its writer
                       # holds no lock): removed only once it is this old


class StoreError(OneLineError, ValueError):
    """A file of the store cannot be read; the message names it and says what to do."""


class DamagedCell(StoreError):
    """A cell folder that is not a readable, complete cell: ``run`` quarantines and retrains it."""


class NewerCell(StoreError):
    """A cell written by a newer capslib (a higher schema version): left alone."""


_PROCESS_COMMIT: list[str] = []


def git_commit(here: Optional[Path] = None) -> str:
    """The commit of the code that ran, with ``-dirty`` when the tree had changes outside
    ``results/`` (results are not code; ``scripts/gpu_window.sh prepare`` moves them away).
    For capslib's own checkout (``here`` None) the first answer is kept for the process: a
    long run records the code it started with, not a commit made while it trained."""
    if here is None:
        if not _PROCESS_COMMIT:
            _PROCESS_COMMIT.append(_read_commit(Path(__file__).resolve().parent))
        return _PROCESS_COMMIT[0]
    return _read_commit(here)


def _read_commit(here: Path) -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                                ":(top,exclude)results"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("CAPSLIB_COMMIT", "unknown")
    return (sha + ("-dirty" if dirty else "")) if sha else os.environ.get("CAPSLIB_COMMIT", "unknown")


def write_report(out_dir, stem: str, report: dict, default=str) -> Path:
    """A measurement's JSON (benchmarks, checks) as ``<out_dir>/<stem>-<date>-<time>.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=1, default=default))
    return path


def device_name(device) -> str:
    import torch
    if getattr(device, "type", str(device)) == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def provenance(device) -> dict:
    import torch
    return {"commit": git_commit(), "device": device_name(device), "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


class ResultsStore:
    def __init__(self, root: str | os.PathLike, profile: str):
        self.root = Path(root)
        self.profile = profile
        self.dir = self.root / profile
        self.cells_dir = self.dir / "cells"
        self.staging_dir = self.dir / ".staging"   # cells being written; same filesystem, so rename is atomic
        self.locks_dir = self.dir / ".locks"
        self.quarantine_dir = self.dir / "quarantine"

    # ---- reading ----
    def cell_dir(self, spec_or_id) -> Path:
        cid = spec_or_id if isinstance(spec_or_id, str) else spec_or_id.cell_id
        return self.cells_dir / cid

    def is_done(self, spec: CellSpec) -> bool:
        return (self.cell_dir(spec) / "cell.json").exists()

    def finished_ids(self) -> list[str]:
        if not self.cells_dir.exists():
            return []
        return sorted(p.name for p in self.cells_dir.iterdir()
                      if not p.name.startswith(".") and (p / "cell.json").exists())

    def fix_command(self) -> str:
        """The command that moves this store's damaged cells aside and trains them again."""
        from .profiles import PROFILES
        if self.profile not in PROFILES:
            return f"ResultsStore({str(self.root)!r}, {self.profile!r}).quarantine_damaged()"
        return (f"python -m capslib run --profile {self.profile} "
                f"--results-root {shlex.quote(str(self.root))}")

    def load_cell(self, spec_or_id) -> dict:
        """The cell's cell.json, migrated to the current schema; DamagedCell / NewerCell
        (one line naming the file) when it cannot be used."""
        path = self.cell_dir(spec_or_id) / "cell.json"
        text = path.read_text()   # FileNotFoundError: no such cell (or it was just moved aside)
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise self._damaged(path, f"not valid JSON ({e.msg} at char {e.pos}; truncated?)")
        if not isinstance(doc, dict) or not isinstance(doc.get("schema_version"), int):
            raise self._damaged(path, "no schema_version")
        v = doc["schema_version"]
        if v > SCHEMA_VERSION:
            raise NewerCell(f"{path}: schema_version {v} is newer than this capslib reads ({SCHEMA_VERSION}): "
                            f"update capslib, or move the cell out of {self.cells_dir}")
        while v < SCHEMA_VERSION:
            if v not in MIGRATIONS:
                raise self._damaged(path, f"schema_version {v} has no migration to {SCHEMA_VERSION}")
            doc = MIGRATIONS[v](doc)
            v = doc["schema_version"]
        missing = [k for k in DOC_KEYS if k not in doc]
        if missing:
            raise self._damaged(path, f"no {', '.join(missing)}")
        rows = doc["rows"]
        if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
            raise self._damaged(path, "rows is not a non-empty list of rows")
        for r in rows:
            gone = [k for k in ROW_KEYS if k not in r]
            if gone:
                raise self._damaged(path, f"a row lacks {', '.join(gone[:3])}" + (" ..." if len(gone) > 3 else ""))
            for k, v in ROW_DEFAULTS.items():
                r.setdefault(k, v)
        if doc["cell_id"] != path.parent.name:
            raise self._damaged(path, f"cell_id {doc['cell_id']!r} differs from its folder's name")
        return doc

    def load_arrays(self, spec_or_id) -> dict[str, np.ndarray]:
        path = self.cell_dir(spec_or_id) / "arrays.npz"
        try:
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
        except FileNotFoundError:
            if _reappears(path):
                return self.load_arrays(spec_or_id)
            if not path.parent.exists():
                raise
            raise self._damaged(path, "missing")
        except Exception as e:   # BadZipFile, zlib.error, EOFError, ValueError: a damaged file
            raise self._damaged(path, f"unreadable ({type(e).__name__}: {e})")

    def check_cell(self, spec_or_id) -> Optional[StoreError]:
        """Cheap verification of a finished cell (cell.json parses and is complete, the npz
        directory lists its arrays): None when sound, else the error (one line)."""
        try:
            doc = self.load_cell(spec_or_id)
            path = self.cell_dir(spec_or_id) / "arrays.npz"
            try:
                with zipfile.ZipFile(path) as z:
                    names = set(z.namelist())
            except FileNotFoundError:
                if _reappears(path):   # the cell was being replaced (a redo): check the new one
                    return self.check_cell(spec_or_id)
                if not path.parent.exists():
                    raise
                raise self._damaged(path, "missing")
            except (zipfile.BadZipFile, OSError) as e:
                raise self._damaged(path, f"unreadable ({e}; truncated?)")
            need = {"test_labels", "test_idx"} | {f"score_{r['score']}" for r in doc["rows"]}
            lacking = sorted(n for n in need if f"{n}.npy" not in names)
            if lacking:
                raise self._damaged(path, f"lacks {', '.join(lacking)}")
        except StoreError as e:
            return e
        return None

    def damaged(self) -> dict[str, StoreError]:
        """Every finished cell that fails :meth:`check_cell`, with its error."""
        out = {}
        for cid in self.finished_ids():
            try:
                err = self.check_cell(cid)
            except FileNotFoundError:   # moved aside by another process meanwhile
                continue
            if err is not None:
                out[cid] = err
        return out

    def rows(self, skip_damaged: bool = False) -> list[dict]:
        """Every row of every finished cell. A damaged cell raises its one-line error (or is
        left out with ``skip_damaged``); a cell moved away while reading is left out."""
        out = []
        for cid in self.finished_ids():
            try:
                out.extend(self.load_cell(cid)["rows"])
            except FileNotFoundError:
                continue
            except StoreError:
                if not skip_damaged:
                    raise
        return out

    def _damaged(self, path: Path, what: str) -> DamagedCell:
        return DamagedCell(f"{path}: {what}; `{self.fix_command()}` moves the cell to quarantine/ "
                           "and trains it again")

    # ---- claims ----
    @contextmanager
    def claim(self, spec: CellSpec) -> Iterator[bool]:
        """Hold the cell's claim for the block: yields True when this process holds it and the
        cell is still to be trained, False when another run holds it or has finished it."""
        self.locks_dir.mkdir(parents=True, exist_ok=True)
        with locks.held(self.locks_dir / spec.cell_id) as got:
            yield got and not self.is_done(spec)

    # ---- writing ----
    def write_cell(self, spec: CellSpec, rows: list[dict], arrays: dict[str, np.ndarray],
                   prov: dict, info: Optional[dict] = None) -> Path:
        """Write one finished cell atomically (holding its claim), then refresh cells.csv."""
        self.cells_dir.mkdir(parents=True, exist_ok=True)
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        self.locks_dir.mkdir(parents=True, exist_ok=True)
        final = self.cell_dir(spec)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        doc = {"schema_version": SCHEMA_VERSION, "cell_id": spec.cell_id, "spec": spec.to_dict(),
               "resolved": spec.resolved().to_dict(), "rows": rows, "provenance": prov, "info": info or {}}
        with locks.held(self.locks_dir / spec.cell_id, blocking=True):
            tmp, fd = locks.locked_folder(self.staging_dir, f"{spec.cell_id}{OWNED}{os.getpid()}")
            try:
                _fsync_write(tmp / "arrays.npz", buf.getvalue())
                _fsync_write(tmp / "cell.json", json.dumps(doc, indent=1, default=_json_default).encode())
                replaced = self.staging_dir / f"{tmp.name}.{uuid.uuid4().hex[:8]}.old"
                if final.exists():   # a redo replaces: the old folder goes to staging, then away
                    os.rename(final, replaced)
                os.rename(tmp, final)
            finally:
                os.close(fd)
            shutil.rmtree(replaced, ignore_errors=True)
        self.rebuild_csv()
        return final

    def rebuild_csv(self) -> Path:
        """cells.csv from the cell folders (damaged cells left out), under the store's csv lock."""
        self.locks_dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / "cells.csv"
        with locks.held(self.locks_dir / "cells.csv", blocking=True):
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
            w.writeheader()
            for row in self.rows(skip_damaged=True):
                row = {**ROW_DEFAULTS, **row}
                w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_COLUMNS})
            tmp = self.dir / ".cells.csv.tmp"
            _fsync_write(tmp, buf.getvalue().encode())
            os.replace(tmp, path)
        return path

    def clean_stale(self) -> int:
        """Remove the staging folders whose owner is gone (a killed run); returns how many.
        A folder whose owner lives is locked, and left alone."""
        n = 0
        if self.staging_dir.exists():
            for p in self.staging_dir.iterdir():
                fd = locks.try_lock_folder(p)
                if fd is None:
                    continue
                try:
                    if OWNED in p.name or time.time() - p.stat().st_mtime >= STAGING_GRACE_S:
                        shutil.rmtree(p, ignore_errors=True)
                        n += 1
                except FileNotFoundError:
                    pass
                finally:
                    os.close(fd)
        if self.dir.exists():
            self.locks_dir.mkdir(parents=True, exist_ok=True)
            with locks.held(self.locks_dir / "cells.csv", blocking=True):
                for p in self.dir.glob(".cells.csv.*"):   # .cells.csv.<pid>: capslib before the lock
                    try:
                        if time.time() - p.stat().st_mtime >= STAGING_GRACE_S:
                            p.unlink()
                    except FileNotFoundError:
                        pass
        return n

    def quarantine(self, cell_id: str, reason: str) -> Optional[Path]:
        """Move a cell folder to ``quarantine/<cell_id>.<UTC time>/`` with a ``reason.txt``;
        None when another run holds the cell's claim (it is being trained again)."""
        self.locks_dir.mkdir(parents=True, exist_ok=True)
        with locks.held(self.locks_dir / cell_id) as got:
            src = self.cell_dir(cell_id)
            if not got or not src.exists():
                return None
            self.quarantine_dir.mkdir(parents=True, exist_ok=True)
            dst = self.quarantine_dir / f"{cell_id}.{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
            k = 1
            while dst.exists():
                dst, k = dst.with_name(f"{dst.name.split('~')[0]}~{k}"), k + 1
            os.rename(src, dst)
            (dst / "reason.txt").write_text(reason + "\n")
            return dst

    def quarantine_damaged(self) -> dict[str, Path]:
        """Move every damaged cell to quarantine/ (see :meth:`check_cell`); raises NewerCell for
        a cell of a newer schema (not ours to move). Returns {cell_id: where it went}."""
        moved = {}
        for cid, err in self.damaged().items():
            if isinstance(err, NewerCell):
                raise err
            dst = self.quarantine(cid, str(err))
            if dst is not None:
                moved[cid] = dst
        return moved


def _reappears(path: Path, wait: float = 0.05) -> bool:
    """A file that was missing is there after a moment: its cell folder was being swapped."""
    time.sleep(wait)
    return path.exists()


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def result_rows(spec: CellSpec, result, prov: dict) -> list[dict]:
    """One row per score: the spec, the metrics and the provenance, CSV-ready."""
    from .scores import score_metrics
    r = spec.resolved()
    labels = result.test_labels
    rows = []
    for name, s in result.scores.items():
        m = score_metrics(s, labels, result.thresholds.get(name))
        rows.append({
            "protocol": r.protocol, "dataset": r.dataset, "method": r.method, "variant": r.variant,
            "normal_class": r.normal_class, "held_out": "+".join(map(str, r.held_out)),
            "anomaly_fraction": r.anomaly_fraction, "seed": r.seed, "score": name, **m,
            "n_test_normal": int((labels == 0).sum()), "n_test_anomalous": int((labels == 1).sum()),
            "train_seconds": round(result.train_seconds, 3), "epochs": r.epochs, "batch_size": r.batch_size,
            "precision": prov.get("precision", "fp32"), "device": prov["device"], "torch": prov["torch"], "commit": prov["commit"],
            "finished_utc": prov["finished_utc"], "cell_id": spec.cell_id})
    return rows
