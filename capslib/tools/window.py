"""The first minute and a half of a GPU window: which way of training is fastest *and*
sound on this device? (``python -m capslib.tools.window pick``, called by scripts/gpu_window.sh.)

Each candidate (:data:`CANDIDATES`: the fast path's switch sets, plus the plain path)
is timed on paper A's setting (K = 2, batch 32; the fast path with ``models`` stacked
models) with :mod:`capslib.tools.bench`'s timers. The fastest fast-path candidate is then
checked on two real cells of the embedded digits (paper A, class 1, 10%, standard and
proposed; a few epochs): its losses must be finite and fall from the first epoch to the
last, and its AUROCs must lie within ``tolerance`` of the plain path's on the same cells.
If it fails, the next fastest is checked. The decision is ``fast`` (with its switches) or,
when no fast candidate is sound or the plain path is faster, ``plain-workers``: several
plain-path processes on the same GPU, which share the grid through the store's claims.
Everything is written to ``<out>/window-<device>-<date>.json``; the last line printed
is the decision, as run options.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from capslib.core.config import CellSpec, FastOptions
from capslib.core.provenance import write_report

CANDIDATES: dict[str, FastOptions] = {
    "bf16": FastOptions(bf16=True),
    "bf16+channels-last": FastOptions(bf16=True, channels_last=True),
    "bf16+channels-last+cuda-graphs": FastOptions(bf16=True, channels_last=True, compile=True, cuda_graphs=True),
    "tf32": FastOptions(tf32=True),
}
CPU_CANDIDATES = ("bf16", "bf16+channels-last")     # the others need CUDA
FORCE_FALLBACK_ENV = "CAPSLIB_WINDOW_FORCE_FALLBACK"  # tests: take the fallback branch


def run_flags(options: FastOptions) -> list[str]:
    """``python -m capslib run`` flags for a switch set."""
    return [f"--{n.replace('_', '-')}" for n in FastOptions.SWITCHES if getattr(options, n)]


def soundness(options: FastOptions, device: torch.device, epochs: int = 3, tolerance: float = 0.05) -> dict:
    """Train two digits cells on the fast path with ``options`` and on the plain path
    (fp32); sound when every fast loss is finite, the final loss is below the first
    epoch's, and every AUROC is within ``tolerance`` of the plain path's."""
    from capslib.run.runner import run_grid
    from capslib.run.store.results import ResultsStore
    cells = [CellSpec("imbalanced", "digits", variant=v, normal_class=1, anomaly_fraction=0.1, seed=0, epochs=e)
             for v in ("standard", "proposed") for e in (1, epochs)]
    rows, losses = {}, {}
    with tempfile.TemporaryDirectory(prefix="window-") as tmp:
        for path, fast in (("fast", True), ("plain", False)):
            store = ResultsStore(Path(tmp) / path, "window")
            rep = run_grid(cells, store, device=device, show_progress=False, fast=fast, fast_options=options,
                           precision="fp32", out=open(os.devnull, "w"))
            if rep["failed"]:
                return {"sound": False, "why": f"{path} path: {next(iter(rep['failed'].values()))}"}
            rows[path] = {(r["cell_id"], r["score"]): r["auroc"] for r in store.rows()}
            losses[path] = {c.cell_id: store.load_cell(c)["info"]["final_loss"] for c in cells}
    fl = losses["fast"]
    if not all(math.isfinite(v) for v in fl.values()):
        return {"sound": False, "why": "a fast-path loss is not finite", "losses": fl}
    pairs = [(fl[cells[i].cell_id], fl[cells[i + 1].cell_id]) for i in (0, 2)]    # (1 epoch, `epochs` epochs)
    if not all(last < first for first, last in pairs):
        return {"sound": False, "why": f"fast-path loss did not fall over {epochs} epochs: {pairs}", "losses": fl}
    diffs = {f"{cid} {s}": abs(rows["fast"][cid, s] - a) for (cid, s), a in rows["plain"].items()
             if (cid, s) in rows["fast"] and cid.endswith(f"-e{epochs}-b32")}
    worst = max(diffs.values())
    return {"sound": worst <= tolerance, "why": f"largest |AUROC fast − plain| {worst:.4f} (tolerance {tolerance})",
            "losses": fl, "auroc_abs_diff": diffs}


def pick(device: torch.device, steps: int, models: int, names=None) -> dict:
    """Time every candidate, then check the fastest for soundness (next fastest on
    failure); returns the report with ``decision`` ('fast' | 'plain-workers') and
    ``flags`` (the run options of the decision)."""
    from capslib.tools.bench.timers import time_fast, time_plain
    names = list(names or (CANDIDATES if device.type == "cuda" else CPU_CANDIDATES))
    t0 = time.perf_counter()
    report = {"device": str(device), "steps": steps, "models": models, "timings": {}, "checks": {}}
    plain = time_plain(2, 32, True, steps, 1, device, "bf16" if device.type == "cuda" else "fp32")
    report["timings"]["plain"] = plain
    for name in names:
        try:
            report["timings"][name] = time_fast(2, 32, True, steps, 1, models, device, CANDIDATES[name])
        except Exception as e:      # a switch this device or torch build cannot do: noted, not fatal
            report["timings"][name] = {"error": f"{type(e).__name__}: {e}"[:300]}
    ranked = sorted((n for n in names if "images_per_s" in report["timings"][n]),
                    key=lambda n: -report["timings"][n]["images_per_s"])
    report["decision"], report["flags"] = "plain-workers", ["--no-fast"]
    if os.environ.get(FORCE_FALLBACK_ENV):
        report["why"] = f"{FORCE_FALLBACK_ENV} is set"
    elif not ranked:
        report["why"] = "every fast-path candidate raised"
    elif report["timings"][ranked[0]]["images_per_s"] <= plain["images_per_s"]:
        report["why"] = (f"the plain path ({plain['images_per_s']:.0f} images/s) is as fast as the best fast "
                         f"candidate {ranked[0]} ({report['timings'][ranked[0]]['images_per_s']:.0f} images/s)")
    else:
        for name in ranked[:2]:
            check = soundness(CANDIDATES[name], device)
            report["checks"][name] = check
            if check["sound"]:
                report.update(decision="fast", chosen=name, flags=["--fast", *run_flags(CANDIDATES[name])],
                              why=f"{name}: {report['timings'][name]['images_per_s']:.0f} images/s against the "
                                  f"plain path's {plain['images_per_s']:.0f}; {check['why']}")
                break
        else:
            report["why"] = "no fast candidate passed the check: " + "; ".join(
                f"{n}: {c['why']}" for n, c in report["checks"].items())
    report["seconds"] = time.perf_counter() - t0
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m capslib.tools.window", description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["pick"])
    p.add_argument("--device", default=None)
    p.add_argument("--steps", type=int, default=None, help="timed steps per candidate (default: cuda 30, cpu 2)")
    p.add_argument("--models", type=int, default=8, help="stacked models in the fast timings")
    p.add_argument("--candidates", default=None, help="comma list of CANDIDATES names")
    p.add_argument("--out", default="results/bench")
    a = p.parse_args(argv)
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    names = a.candidates.split(",") if a.candidates else None
    unknown = [n for n in names or () if n not in CANDIDATES]
    if unknown:
        print(f"error: unknown candidate {unknown[0]!r}; choose among {', '.join(CANDIDATES)}", file=sys.stderr)
        return 2
    report = pick(device, a.steps or (30 if device.type == "cuda" else 2), a.models, names)
    for name, t in report["timings"].items():
        print(f"{name:32s} " + (f"{t['images_per_s']:9.1f} images/s" if "images_per_s" in t else t["error"]))
    path = write_report(a.out, f"window-{device.type}", report)
    print(f"decision: {report['decision']} ({report['why']}); wrote {path}")
    print(" ".join(report["flags"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
