"""How often does paper A's CapsNet stay on the loss plateau, per training route? (``python -m
capslib.tools.stallrate``; book/methods.md, "the loss plateau".)

One training per route settles nothing: whether a training leaves the plateau is a knife edge.
This trains R replicas of one cell (seeds 0..R-1, so R initialisations and R draws of the
anomalies) on each route of :data:`ROUTES`, for ``--epochs`` epochs (2 by default, about 390
steps on MNIST at 1%: an early look, which eight 10-epoch trainings on this CPU confirmed; see
the methods chapter), in groups of eight on the fast path as on the GPU, and counts the
replicas whose last training loss is still on the plateau
(:func:`capslib.run.store.schema.stalled`). A replica is trained only, as the grid would train
it, and never evaluated: the rule reads nothing else. Every replica's loss at the end
of each epoch is kept, so a run of full-length replicas also says how well an earlier epoch's
plateau predicts the last one's (``early_look``): the check of the 2-epoch look. The replicas
run in rounds of eight seeds, each round on every route in turn, so that a run stopped early still compares the
routes on the same seeds; after every round the report
``<out>/stallrate-<device>-<date>.json`` is rewritten with, per route, the count, the rate with
its Wilson 95% interval and every replica's last loss. ``--resume REPORT`` goes on from such a
report (same cell, epochs and routes): the seeds it holds are not trained again.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import torch

from capslib.core.config import CellSpec, FastOptions
from capslib.core.errors import ConfigError
from capslib.core.provenance import device_name, git_commit, write_report
from capslib.run.store.schema import PLATEAU_LOSS

# route -> (fast path?, plain-path precision, fast-path switches): the training routes the plateau is
# measured on (also by capslib.tools.gradcheck); here the fast routes train in groups of 8
ROUTES: dict[str, tuple[bool, str, FastOptions]] = {
    "plain-bf16": (False, "bf16", FastOptions()),
    "plain-fp32": (False, "fp32", FastOptions()),
    "fast-bf16": (True, "fp32", FastOptions(bf16=True)),                                   # conv1 in bf16
    "fast-bf16-conv1fp32": (True, "fp32", FastOptions(bf16=True, conv1_fp32=True)),        # as the plain path
    "fast-fp32": (True, "fp32", FastOptions()),                                            # TF32 really off
    "fast-tf32": (True, "fp32", FastOptions(tf32=True)),                                   # CUDA only differs
    "fast-bf16-exact": (True, "fp32", FastOptions(bf16=True, exact_bf16_reductions=True)),  # CUDA only differs
}
CPU_ROUTES = ("plain-bf16", "fast-bf16", "fast-bf16-conv1fp32")
GPU_ROUTES = ("plain-bf16", "plain-fp32", "fast-bf16", "fast-bf16-conv1fp32", "fast-fp32", "fast-bf16-exact")
ROUND = 8   # seeds per round: one stacked group on the fast path
DEFAULT_CELL = "imbalanced-mnist-capsnet-standard-n3-f0.01-s0-e10-b32"   # stalled on the H200, not on a CPU


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a rate k/n (95% by default)."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, (centre - half) / (1 + z * z / n)), min(1.0, (centre + half) / (1 + z * z / n)))


def replicas(cell: CellSpec, n: int, epochs: int) -> list[CellSpec]:
    return [replace(cell, seed=s, epochs=epochs, attempt=0) for s in range(n)]


def train_replicas(route: str, cells: list[CellSpec], device, data_root=None) -> dict:
    """Train ``cells`` on ``route``, and nothing more (the stall rule reads the training loss:
    nothing is evaluated or stored): {seed: (last loss, stalled?)}, {seed: each epoch's last
    loss}, failures, seconds."""
    from capslib.data.datasets import load_dataset
    from capslib.run.execute import EpochLosses
    from capslib.run.groups import train_group_only
    from capslib.run.runner import split_for, validate_cells
    from capslib.run.store.schema import stalled
    from capslib.study.protocols import capsnet_job
    from capslib.train.jobs import train_job
    from capslib.train.plain import NonFiniteLoss
    fast, precision, options = ROUTES[route]
    validate_cells(cells, data_root)
    data = load_dataset(cells[0].resolved().dataset, data_root)
    splits = [split_for(c.resolved(), data) for c in cells]
    t0 = time.perf_counter()
    fits: list = []
    if fast:                                          # in groups of ROUND, as run_grid's fast path
        fits = train_group_only(cells, data, splits, device, options)[1]
    else:
        for c, sp in zip(cells, splits):
            curve = EpochLosses()
            try:
                fit = train_job(capsnet_job(c, data, sp, device, precision), data, progress=curve)
            except NonFiniteLoss as e:
                fits.append(e)
                continue
            fits.append({**fit, "epoch_end_losses": curve.ends(c.resolved().epochs)})
    done = {c: fit for c, fit in zip(cells, fits) if not isinstance(fit, Exception)}
    return {"replicas": {c.seed: (fit["final_loss"], bool(stalled({"resolved": c.resolved().to_dict(),
                                                                      "info": {"final_loss": fit["final_loss"]}})))
                         for c, fit in done.items()},
            "curves": {c.seed: fit["epoch_end_losses"] for c, fit in done.items()},
            "failed": {c.cell_id: str(fit) for c, fit in zip(cells, fits) if isinstance(fit, Exception)},
            "seconds": time.perf_counter() - t0}


def early_look(curves: dict, plateau: float = PLATEAU_LOSS) -> list[dict]:
    """How well being on the plateau at the end of an earlier epoch predicts a stall (on the
    plateau at the end of the last), over the replicas whose every epoch's end is known: per
    earlier epoch e, how many were on the plateau at e, how many of those were still on it at
    the end, and how many that were not on it at e were on it at the end."""
    whole = {s: c for s, c in curves.items() if c and all(v is not None and not math.isnan(v) for v in c)}
    if not whole or len({len(c) for c in whole.values()}) != 1:
        return []
    late = {s for s, c in whole.items() if c[-1] > plateau}
    out = []
    for e in range(1, len(next(iter(whole.values())))):
        early = {s for s, c in whole.items() if c[e - 1] > plateau}
        out.append({"epoch": e, "replicas": len(whole), "on_plateau": len(early), "still_at_end": len(early & late),
                    "only_at_end": len(late - early)})
    return out


def route_summary(replicas: dict, failed: dict, seconds: float, curves: Optional[dict] = None) -> dict:
    """A route's count, rate and Wilson interval from {seed: (last loss, stalled?)}; failed: {cell: why};
    curves: {seed: loss at each epoch's end}, kept with the early look they give."""
    k, n = sum(flag for _, flag in replicas.values()), len(replicas)
    lo, hi = wilson(k, n)
    curves = {s: c for s, c in sorted((curves or {}).items()) if c}
    return {"stalled": k, "replicas": n, "rate": k / n if n else None, "wilson95": [round(lo, 3), round(hi, 3)],
            "failed": failed, "final_loss": {s: loss for s, (loss, _) in sorted(replicas.items())},
            "epoch_end_losses": curves, "early_look": early_look(curves), "seconds": round(seconds, 1)}


def stall_rate(route: str, cells: list[CellSpec], device, data_root=None) -> dict:
    """Train ``cells`` on ``route``; how many stalled, and each last loss."""
    r = train_replicas(route, cells, device, data_root)
    return route_summary(r["replicas"], r["failed"], r["seconds"])


def resumed(path: Path, cell: str, epochs: int, routes: list[str]) -> tuple[dict, dict]:
    """What an earlier report of this tool measured, per route, in :func:`route_summary`'s input
    form, and its provenance (commit, date, device); a report of another cell, epoch count or
    route list is refused."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read the report to resume {path}: {e}") from None
    if old.get("cell") != cell or old.get("epochs") != epochs or sorted(old.get("routes", {})) != sorted(routes):
        raise ConfigError(f"{path} measured cell {old.get('cell')}, {old.get('epochs')} epochs, routes "
                          f"{sorted(old.get('routes', {}))}: resume it with the same --cell, --epochs and --routes")
    seen = {route: {"replicas": {int(s): (loss, bool(loss > old.get("plateau_loss", PLATEAU_LOSS)))
                                 for s, loss in r["final_loss"].items()},
                    "curves": {int(s): c for s, c in r.get("epoch_end_losses", {}).items()},
                    "failed": r.get("failed", {}), "seconds": r.get("seconds", 0.0)}
            for route, r in old["routes"].items()}
    return seen, {k: old.get(k) for k in ("commit", "date_utc", "device")}


def main(argv=None) -> int:
    from capslib.tools.routecheck import cell_from_id
    from capslib.train.device import resolve_device
    p = argparse.ArgumentParser(prog="python -m capslib.tools.stallrate", description=__doc__.splitlines()[0])
    p.add_argument("--cell", default=DEFAULT_CELL, help="the cell whose replicas train (default: %(default)s)")
    p.add_argument("--replicas", type=int, default=16, help="seeds 0..N-1 (default 16)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per replica (default 2: an early look)")
    p.add_argument("--routes", default=None, help=f"comma list of {', '.join(ROUTES)} "
                                                  f"(default: {', '.join(CPU_ROUTES)} on a CPU, {', '.join(GPU_ROUTES)} on CUDA)")
    p.add_argument("--profile", default="paper")
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--out", default="results/bench")
    p.add_argument("--resume", default=None, metavar="REPORT",
                   help="a report of this tool to go on from (it is rewritten in place)")
    a = p.parse_args(argv)
    try:
        device = resolve_device(a.device)
        routes = a.routes.split(",") if a.routes else list(GPU_ROUTES if device.type == "cuda" else CPU_ROUTES)
        unknown = [r for r in routes if r not in ROUTES]
        if unknown:
            raise ConfigError(f"unknown route {unknown[0]!r}; choose among {', '.join(ROUTES)}")
        if a.replicas < 1 or a.epochs < 1:
            raise ConfigError("--replicas and --epochs must be >= 1")
        cell = cell_from_id(a.cell, a.profile)
        seen, path, before = {route: {"replicas": {}, "curves": {}, "failed": {}, "seconds": 0.0}
                              for route in routes}, None, None
        if a.resume:
            path = Path(a.resume)
            seen, before = resumed(path, a.cell, a.epochs, routes)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cells = replicas(cell, a.replicas, a.epochs)
    report = {"device": device_name(device), "torch": torch.__version__, "commit": git_commit(),
              "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cell": a.cell,
              "replicas": a.replicas, "epochs": a.epochs, "plateau_loss": PLATEAU_LOSS, "routes": {}}
    if before is not None:
        report["resumed_from"] = before
    for start in range(0, len(cells), ROUND):
        for route in routes:
            todo = [c for c in cells[start:start + ROUND] if c.seed not in seen[route]["replicas"]]
            if not todo:
                report["routes"][route] = route_summary(**seen[route])
                continue
            r, acc = train_replicas(route, todo, device, a.data_root), seen[route]
            acc["replicas"].update(r["replicas"])
            acc["curves"].update(r["curves"])
            acc["failed"].update(r["failed"])
            acc["seconds"] += r["seconds"]
            s = report["routes"][route] = route_summary(**acc)
            print(f"{route}: {s['stalled']} of {s['replicas']} stalled (95% interval {s['wilson95'][0]:.2f}–"
                  f"{s['wilson95'][1]:.2f}) [{s['seconds']} s]", flush=True)
            for look in s["early_look"][1:2]:             # the 2-epoch look, against the last epoch
                print(f"  on the plateau after epoch {look['epoch']}: {look['on_plateau']} of {look['replicas']}, "
                      f"{look['still_at_end']} of them still at the end; {look['only_at_end']} reached it later",
                      flush=True)
        report["rounds_done"] = start // ROUND + 1
        if path is None:
            path = write_report(a.out, f"stallrate-{device.type}", report)
        else:
            path.write_text(json.dumps(report, indent=1, default=str))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
