"""The study's grid from the command line: ``run`` (train the missing cells), ``status``,
``download`` and ``pack-data``."""
from __future__ import annotations

import sys
import time

from capslib.core.config import FastOptions


def group_size_arg(text: str):
    """``--group-size``: one size for every fast-path group ('16'), or one per protocol
    ('imbalanced=32,novelty=16', what the GPU window's pick prints; a protocol left out
    keeps the default, 8)."""
    import argparse
    from capslib.core.config import PROTOCOLS
    try:
        if "=" not in text:
            sizes = int(text)
        else:
            sizes = {k.strip(): int(v) for k, v in (part.split("=", 1) for part in text.split(",") if part.strip())}
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a whole number nor protocol=size pairs "
                                         "(imbalanced=32,novelty=16)") from None
    unknown = [k for k in (sizes if isinstance(sizes, dict) else ()) if k not in PROTOCOLS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown protocol {unknown[0]!r}; choose among {', '.join(PROTOCOLS)}")
    if min(sizes.values() if isinstance(sizes, dict) else [sizes], default=0) < 1:
        raise argparse.ArgumentTypeError(f"group sizes must be >= 1, got {text!r}")
    return sizes


def grid_from_args(args):
    from capslib.study.params import GridRequest
    return GridRequest.from_args(args).grid()


def finished_elsewhere(path) -> set[str]:
    """The cell ids in a --finished-list file (one per line; blank lines and # comments skipped)."""
    from capslib.core.errors import ConfigError
    try:
        lines = open(path).read().splitlines()
    except OSError as e:
        raise ConfigError(f"--finished-list {path}: cannot read it ({e.strerror})") from None
    return {ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")}


def cmd_run(args) -> int:
    """Train the missing cells, the stall rule's retrainings first (:mod:`capslib.run.attempts`):
    a retraining that stalls again makes the next one due, which the same run trains while its
    time budget lasts."""
    from capslib.run.attempts import check_max_attempts, retrains
    from capslib.run.budget import Rates
    from capslib.run.cluster import from_flags as engine_from_flags
    from capslib.run.runner import run_grid
    from capslib.run.store.results import ResultsStore
    from capslib.run.store.root import results_root
    from capslib.study.profiles import prioritized
    from capslib.train.device import resolve_device
    grid = grid_from_args(args).cells()
    attempts = check_max_attempts(args.max_attempts)
    resolve_device(args.device)           # an unknown or absent device: one line, before any work
    skip = finished_elsewhere(args.finished_list) if args.finished_list else set()
    options = FastOptions.from_flags(args)
    rates = Rates.load(args.rates) if args.rates else None     # a bad file: one line, before any work
    executor = engine_from_flags(args)      # None: the in-process runner
    store = ResultsStore(results_root(args.results_root), args.profile)
    t0 = time.perf_counter()
    total = {"ran": [], "skipped": None, "failed": {}, "deferred": [], "paused": {}, "overrun": []}
    cells = grid
    while cells:
        planned = {c.cell_id: c for c in prioritized(retrains(grid, store, attempts) + cells, args.profile)}
        budget = None if args.time_budget is None else args.time_budget - (time.perf_counter() - t0)
        rep = run_grid([c for cid, c in planned.items() if cid not in skip], store, args.data_root, args.device,
                       show_progress=not args.no_progress, fast=args.fast, group_size=args.group_size,
                       time_budget=budget, fast_options=options, precision=args.precision, executor=executor,
                       rates=rates)
        total["ran"] += rep["ran"]
        total["failed"].update(rep["failed"])
        total["paused"].update(rep.get("paused", {}))
        total["deferred"] = rep["deferred"]
        total["overrun"] = rep.get("overrun", [])
        total["skipped"] = rep["skipped"] if total["skipped"] is None else total["skipped"]
        # a retraining that stalled again makes the next attempt due: train it while time lasts
        cells = [] if rep["deferred"] or rep.get("paused") else retrains(grid, store, attempts)
    paused = f" ({len(total['paused'])} paused mid-training, resumable)" if total["paused"] else ""
    if total["overrun"]:
        paused += (f" ({sum(len(o['cells']) for o in total['overrun'])} in {len(total['overrun'])} units "
                   "predicted to end after the budget)")
    print(f"{len(total['ran'])} cells ran, {len(total['skipped'])} already finished, {len(total['failed'])} failed, "
          f"{len(total['deferred'])} left for the next run{paused}, in {time.perf_counter() - t0:.1f} s; "
          f"results in {store.dir}")
    for cid, msg in total["failed"].items():
        print(f"failed: {cid}: {msg}", file=sys.stderr)
    return 1 if total["failed"] else 0


def time_left(m: dict) -> str:
    """', about N min of training left' for an in-flight cell, at the pace of its epochs so far."""
    from capslib.run.progress import seconds_left
    left = seconds_left(m)
    return "" if left is None else f", about {left / 60:.0f} min of training left"


def other_code(m: dict, code: str) -> str:
    """For a checkpoint saved by training code other than ``code`` (this code's fingerprint): that
    this code starts the cell over, and how to resume it at the commit that saved it."""
    if not m.get("code") or m["code"] == code:
        return ""
    at = m.get("commit", "").removesuffix("-dirty")
    how = (f"; CAPSLIB_GRID_COMMIT={at} bash scripts/background_grid.sh MINUTES resumes it there" if at
           else "; a run at the commit that saved it resumes it")
    return f" [saved by other training code ({m['code']}): this code starts it over{how}]"


def cmd_status(args) -> int:
    from capslib.run.attempts import base_id
    from capslib.core.cache import code_fingerprint, in_flight
    from capslib.study.profiles import prioritized
    from capslib.run.store.results import ResultsStore
    from capslib.run.store.root import results_root
    cells = prioritized(grid_from_args(args).cells(), args.profile)
    if args.summary:                      # its device and attempts: one line, before any output
        from capslib.run.attempts import check_max_attempts
        from capslib.train.device import resolve_device
        device, attempts = resolve_device(args.device), check_max_attempts(args.max_attempts)
    store = ResultsStore(results_root(args.results_root), args.profile)
    damaged = store.damaged()   # every finished cell verified (JSON, schema, rows, npz directory)
    done = [c for c in cells if store.is_done(c) and c.cell_id not in damaged]
    missing = [c for c in cells if not store.is_done(c)]
    ids = {c.cell_id for c in cells}
    flying = [m for m in in_flight(store.dir)           # a retraining (attempt) counts for its cell
              if base_id(m["cell_id"]) in ids and not store.is_done(m["cell_id"])]
    if args.summary:
        _print_summary(args, cells, store, device, attempts)
    else:
        for c in done:
            print(f"finished  {c.cell_id}")
        for c in missing:
            print(f"missing   {c.cell_id}")
    code = code_fingerprint() if flying else ""
    for m in flying:
        print(f"in flight {m['cell_id']}: epoch {m.get('epoch')}/{m.get('epochs')} ({m.get('precision')}, "
              f"checkpoint of {m.get('updated_utc')}{time_left(m)}){other_code(m, code)}")
    for cid, err in damaged.items():
        print(f"damaged   {cid}: {err}")
    print(f"{len(done)}/{len(cells)} cells finished, {len(flying)} in flight, {len(missing)} missing ({store.dir})")
    if damaged:
        print(f"{len(damaged)} damaged cells: `{store.fix_command()}` moves them to {store.quarantine_dir} "
              "and trains them again")
        return 1
    return 0


def _print_summary(args, cells, store, device, attempts: int) -> None:
    from capslib.run.progress import eta_lines, row_status
    from capslib.core.provenance import device_name
    from capslib.train.plain import default_precision
    from capslib.run.attempts import retrains
    for st in row_status(cells, store, attempts):
        print(st.line())
    due = retrains(cells, store, attempts)     # the stall rule's next attempts count as missing cells
    for line in eta_lines(due + list(cells), store, device_name(device), default_precision(device), args.data_root):
        print(line)


def cmd_pack_data(args) -> int:
    from capslib.data.datasets import pack_data
    from capslib.data.pack import PACKABLE
    names = [x for x in (args.datasets or "").split(",") if x] or PACKABLE
    done = pack_data(args.data_root, args.out, names)
    for name, d in done.items():
        print(f"{name}: {d['bytes'] / 2**20:.1f} MiB ({d['raw_bytes'] / 2**20:.1f} MiB of uint8) -> {d['path']}")
    print(f"{sum(d['bytes'] for d in done.values()) / 2**20:.1f} MiB in all")
    return 0


def cmd_download(args) -> int:
    from capslib.data.datasets import download
    print(f"downloaded {args.dataset} under {download(args.dataset, args.data_root)}")
    return 0
