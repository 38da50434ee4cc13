"""The results store of one profile: finished cells written atomically, read back checked, and
``cells.csv`` rebuilt from them (the layout: :mod:`capslib.run.store`)."""
from __future__ import annotations

import csv
import io
import json
import os
import shlex
import shutil
import time
import uuid
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from capslib.core.config import CellSpec
from capslib.run import locks
from capslib.run.store.schema import (CSV_COLUMNS, DOC_KEYS, MIGRATIONS, OWNED, ROW_DEFAULTS, ROW_KEYS,
    SCHEMA_VERSION, STAGING_GRACE_S, NUMERIC, DamagedCell, NewerCell, StoreError, _json_default,
    derived_columns)


def _fsync_write(path: Path, data: bytes, durable: bool = True) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        if durable:
            os.fsync(f.fileno())


class ResultsStore:
    """One profile's cells under ``root/profile``; ``durable=False``: no fsync, for throwaway stores."""
    def __init__(self, root: str | os.PathLike, profile: str, durable: bool = True):
        self.root = Path(root)
        self.profile, self.durable = profile, durable
        self.dir = self.root / profile
        self.cells_dir = self.dir / "cells"
        self.staging_dir = self.dir / ".staging"   # cells being written; same filesystem, so rename is atomic
        self.locks_dir = self.dir / ".locks"
        self.quarantine_dir = self.dir / "quarantine"
        for d in (self.root, self.dir, self.cells_dir):    # a store is folders: say so before any work
            if d.exists() and not d.is_dir():
                raise StoreError(f"results root {self.root}: {d} is a file, not a folder; "
                                 "pass --results-root a folder (it is created if missing)")

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
        from capslib.study.profiles import PROFILES
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
        derived = derived_columns(doc)
        for r in rows:
            gone = [k for k in ROW_KEYS if k not in r]
            if gone:
                raise self._damaged(path, f"a row lacks {', '.join(gone[:3])}" + (" ..." if len(gone) > 3 else ""))
            for k, v in ROW_DEFAULTS.items():
                r.setdefault(k, v)
            bad = next((k for k in NUMERIC if not (r.get(k) is None or isinstance(r.get(k), (int, float)))), None)
            if bad:
                raise self._damaged(path, f"row {r.get('score')!r}: {bad} is {r[bad]!r}, not a number")
            r.update(derived)
        if doc["cell_id"] != path.parent.name:
            raise self._damaged(path, f"cell_id {doc['cell_id']!r} differs from its folder's name")
        return doc

    def load_arrays(self, spec_or_id, only: Optional[Callable[[str], bool]] = None) -> dict[str, np.ndarray]:
        """A cell's arrays by name; with ``only``, those whose name it accepts (the others are not read)."""
        path = self.cell_dir(spec_or_id) / "arrays.npz"
        try:
            with np.load(path) as z:
                return {k: z[k] for k in z.files if only is None or only(k)}
        except FileNotFoundError:
            if _reappears(path):
                return self.load_arrays(spec_or_id, only)
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
                _fsync_write(tmp / "arrays.npz", buf.getvalue(), self.durable)
                _fsync_write(tmp / "cell.json", json.dumps(doc, indent=1, default=_json_default).encode(), self.durable)
                replaced = self.staging_dir / f"{tmp.name}.{uuid.uuid4().hex[:8]}.old"
                if final.exists():   # a redo replaces: the old folder goes to staging, then away
                    os.rename(final, replaced)
                os.rename(tmp, final)
            finally:
                os.close(fd)
            if replaced.exists() and {p.name for p in replaced.iterdir()} - {"cell.json", "arrays.npz"}:
                self.quarantine_dir.mkdir(parents=True, exist_ok=True)     # files the store did not write: kept
                os.rename(replaced, self.quarantine_dir / f"{spec.cell_id}.replaced-{uuid.uuid4().hex[:8]}")
            shutil.rmtree(replaced, ignore_errors=True)                    # the old cell's own two files
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
            _fsync_write(tmp, buf.getvalue().encode(), self.durable)
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
                for p in self.dir.glob(".cells.csv.*"):   # .cells.csv.<pid>: capslib before the lock; .tmp
                    try:
                        ours = p.suffix[1:].isdigit() or p.suffix == ".tmp"      # not someone's .cells.csv.bak
                        if ours and time.time() - p.stat().st_mtime >= STAGING_GRACE_S:
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
