"""The same cells on several training routes: does the route decide whether a training
leaves the loss plateau? (``python -m capslib.tools.routecheck``; book/methods.md, "the loss plateau".)

On the H200's fast path in bf16, many paper-A trainings at 1% anomalies ended on the loss
plateau near 0.41 that the plain path on CPUs left. This trains chosen cells on each route
of :data:`ROUTES` (the plain path in fp32 and bf16; the fast path alone in bf16, fp32 and
tf32; the fast path in bf16 inside the very group the stored cell was trained in) into
temporary stores, and writes per route and cell the last training loss and the AUROC of
every score to ``<out>/routecheck-<device>-<date>.json``. On a GPU a cell takes seconds per
route, so one device call settles which route stalls.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

from capslib.core.errors import ConfigError

from capslib.core.config import CellSpec, FastOptions
from capslib.run.store.root import results_root as resolve_results_root
from capslib.run.store.schema import PLATEAU_LOSS
from capslib.core.provenance import device_name, git_commit, write_report

# route -> (fast path?, plain-path precision, fast-path switches, in the stored cell's group?)
ROUTES: dict[str, tuple[bool, str, FastOptions, bool]] = {
    "plain-fp32": (False, "fp32", FastOptions(), False),
    "plain-bf16": (False, "bf16", FastOptions(), False),
    "fast-fp32": (True, "fp32", FastOptions(), False),
    "fast-tf32": (True, "fp32", FastOptions(tf32=True), False),
    "fast-bf16": (True, "fp32", FastOptions(bf16=True), False),
    "fast-bf16-group": (True, "fp32", FastOptions(bf16=True), True),
}
# the cells that stalled on the H200 but not on a CPU's plain path (book/methods.md)
DEFAULT_CELLS = ("imbalanced-fashion-capsnet-standard-n9-f0.1-s0-e10-b32",
                 "imbalanced-mnist-capsnet-standard-n3-f0.01-s0-e10-b32",
                 "imbalanced-fashion-capsnet-standard-n9-f0.01-s0-e10-b32",
                 "imbalanced-mnist-capsnet-proposed-n3-f0.01-s0-e10-b32")


def cell_from_id(cell_id: str, profile: str = "paper") -> CellSpec:
    """The grid's CellSpec of ``cell_id`` in ``profile`` (or of the quick profile)."""
    from capslib.study.profiles import profile_grid
    for name in dict.fromkeys((profile, "quick", "paper")):
        for c in profile_grid(name).cells():
            if c.cell_id == cell_id:
                return c
    raise ConfigError(f"cell {cell_id!r} is in neither the {profile} nor the quick profile's grid")


def stored_group(cell_id: str, results_root, profile: str, groups_file=None) -> Optional[list[str]]:
    """The fast-path group the stored cell was trained in: from ``groups_file`` ({cell id:
    group}, what ``scripts/gpu_window.sh prepare`` writes, since the cell folders do not
    travel) when given, else from its cell.json; None when neither records one."""
    try:
        if groups_file is not None:
            return json.loads(Path(groups_file).read_text()).get(cell_id)
        path = Path(results_root) / profile / "cells" / cell_id / "cell.json"
        return json.loads(path.read_text())["info"]["fast_path"]["group"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_groups(results_root, profile: str, path) -> int:
    """{cell id: fast-path group} of every stored cell trained in a group, to ``path``."""
    root = Path(results_root) / profile / "cells"
    groups = {d.name: g for d in sorted(root.glob("*")) if (g := stored_group(d.name, results_root, profile))}
    Path(path).write_text(json.dumps(groups))
    return len(groups)


def train_route(route: str, spec: CellSpec, device, data_root=None, group: Optional[Sequence[CellSpec]] = None) -> dict:
    """Train ``spec`` on ``route`` in a temporary store; its last loss and AUROCs."""
    from capslib.run.runner import run_grid
    from capslib.run.store.results import ResultsStore
    fast, precision, options, grouped = ROUTES[route]
    cells = list(group) if grouped else [spec]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="routecheck-") as tmp:
        store = ResultsStore(Path(tmp), "routecheck")
        rep = run_grid(cells, store, data_root=data_root, device=device, show_progress=False, fast=fast,
                       group_size=max(len(cells), 1), fast_options=options, precision=precision,
                       out=open(os.devnull, "w"))
        if spec.cell_id in rep["failed"]:
            return {"error": rep["failed"][spec.cell_id], "seconds": round(time.perf_counter() - t0, 1)}
        doc = store.load_cell(spec)
    loss = doc["info"]["final_loss"]
    return {"final_loss": loss, "on_plateau": loss > PLATEAU_LOSS, "group_size": len(cells),
            "auroc": {r["score"]: r["auroc"] for r in doc["rows"]}, "seconds": round(time.perf_counter() - t0, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m capslib.tools.routecheck", description=__doc__.splitlines()[0])
    p.add_argument("--cells", default=",".join(DEFAULT_CELLS), help="comma list of cell ids (default: the stalled ones)")
    p.add_argument("--routes", default=",".join(ROUTES), help=f"comma list of {', '.join(ROUTES)}")
    p.add_argument("--profile", default="paper")
    p.add_argument("--results-root", default=None, help="where the stored cells (and their groups) are "
                   "(default: capslib.run.store.root.results_root)")
    p.add_argument("--groups", default=None, metavar="FILE", help="the stored cells' groups as JSON (gpu_window.sh "
                   "prepare writes .devdata/groups.json); default: read them from --results-root")
    p.add_argument("--write-groups", default=None, metavar="FILE", help="only write that JSON from --results-root")
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--out", default="results/bench")
    a = p.parse_args(argv)
    if a.write_groups:
        print(f"{write_groups(resolve_results_root(a.results_root), a.profile, a.write_groups)} groups written to "
              f"{a.write_groups}")
        return 0
    import torch                    # here: writing the groups (the window's prepare step) needs no torch

    routes = a.routes.split(",")
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        unknown = [r for r in routes if r not in ROUTES]
        if unknown:
            raise ConfigError(f"unknown route {unknown[0]!r}; choose among {', '.join(ROUTES)}")
        specs = [cell_from_id(c, a.profile) for c in a.cells.split(",")]
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    a.results_root = resolve_results_root(a.results_root)   # named once the arguments are checked
    report = {"device": device_name(device), "torch": torch.__version__, "commit": git_commit(),
              "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "routes": routes,
              "plateau_loss": PLATEAU_LOSS, "cells": {}}
    for spec in specs:
        got = report["cells"].setdefault(spec.cell_id, {})
        for route in routes:
            group = None
            if ROUTES[route][3]:
                ids = stored_group(spec.cell_id, a.results_root, a.profile, a.groups)
                if ids is None:
                    got[route] = {"skipped": "the stored cell records no fast-path group"}
                    print(f"{spec.cell_id} {route}: skipped (no stored group)", flush=True)
                    continue
                group = [cell_from_id(i, a.profile) for i in ids]
            got[route] = r = train_route(route, spec, device, a.data_root, group)
            what = r.get("error") or (f"last loss {r['final_loss']:.4f}{' (plateau)' if r['on_plateau'] else ''}, "
                                      f"AS AUROC {r['auroc'].get('anomaly_score', float('nan')):.4f}, "
                                      f"RE {r['auroc'].get('re', float('nan')):.4f}")
            print(f"{spec.cell_id} {route}: {what} [{r['seconds']} s]", flush=True)
    path = write_report(a.out, f"routecheck-{device.type}", report)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
