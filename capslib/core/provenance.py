"""Where and with what a number was computed: the commit, the device, torch; and the one writer
of measurement JSONs (benchmarks, checks)."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Optional

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
