"""The results store: one folder per finished cell, written atomically, and a
``cells.csv`` with one row per (cell, score) rebuilt atomically from the folders.

Layout under a results root::

    <root>/<profile>/cells/<cell_id>/cell.json   # schema_version, spec, rows, provenance, info
    <root>/<profile>/cells/<cell_id>/arrays.npz  # per-image test scores, labels, galleries
    <root>/<profile>/cells.csv                   # one row per score, all cells

A cell folder appears only by ``os.rename`` of a complete folder from ``.staging/``, so a run
killed at any moment (kill -9) leaves either the whole cell or nothing; ``cells.csv``
is derived from the folders and rewritten by rename, so it never holds a partial row.
"""
from __future__ import annotations

import csv
import io
import json
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Optional

import numpy as np

from .config import CellSpec

SCHEMA_VERSION = 1
CSV_COLUMNS = ["protocol", "dataset", "method", "variant", "normal_class", "held_out", "anomaly_fraction",
               "seed", "score", "accuracy", "auroc", "auprc", "threshold", "n_test_normal", "n_test_anomalous",
               "train_seconds", "epochs", "batch_size", "device", "torch", "commit", "finished_utc", "cell_id"]


def git_commit() -> str:
    """The commit of the code that ran, with ``-dirty`` when the tree had changes."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("CAPSLIB_COMMIT", "unknown")
    return (sha + ("-dirty" if dirty else "")) if sha else os.environ.get("CAPSLIB_COMMIT", "unknown")


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

    def load_cell(self, spec_or_id) -> dict:
        return json.loads((self.cell_dir(spec_or_id) / "cell.json").read_text())

    def load_arrays(self, spec_or_id) -> dict[str, np.ndarray]:
        with np.load(self.cell_dir(spec_or_id) / "arrays.npz") as z:
            return {k: z[k] for k in z.files}

    def rows(self) -> list[dict]:
        out = []
        for cid in self.finished_ids():
            out.extend(self.load_cell(cid)["rows"])
        return out

    # ---- writing ----
    def write_cell(self, spec: CellSpec, rows: list[dict], arrays: dict[str, np.ndarray],
                   prov: dict, info: Optional[dict] = None) -> Path:
        """Write one finished cell atomically, then refresh cells.csv."""
        self.cells_dir.mkdir(parents=True, exist_ok=True)
        final = self.cell_dir(spec)
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.staging_dir / f"{spec.cell_id}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        _fsync_write(tmp / "arrays.npz", buf.getvalue())
        doc = {"schema_version": SCHEMA_VERSION, "cell_id": spec.cell_id, "spec": spec.to_dict(),
               "resolved": spec.resolved().to_dict(), "rows": rows, "provenance": prov, "info": info or {}}
        _fsync_write(tmp / "cell.json", json.dumps(doc, indent=1, default=_json_default).encode())
        if final.exists():   # an earlier incomplete folder cannot exist (rename is atomic); a redo replaces
            shutil.rmtree(final)
        os.rename(tmp, final)
        self.rebuild_csv()
        return final

    def rebuild_csv(self) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for row in self.rows():
            w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_COLUMNS})
        path = self.dir / "cells.csv"
        tmp = self.dir / f".cells.csv.{os.getpid()}"
        _fsync_write(tmp, buf.getvalue().encode())
        os.replace(tmp, path)
        return path

    def clean_stale(self) -> int:
        """Remove temporary folders left by a killed run; returns how many."""
        n = 0
        if self.staging_dir.exists():
            for p in self.staging_dir.iterdir():
                shutil.rmtree(p, ignore_errors=True)
                n += 1
        for p in self.dir.glob(".cells.csv.*"):
            p.unlink(missing_ok=True)
        return n


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
            "device": prov["device"], "torch": prov["torch"], "commit": prov["commit"],
            "finished_utc": prov["finished_utc"], "cell_id": spec.cell_id})
    return rows
