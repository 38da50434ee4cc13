"""Command line: ``python -m capslib run|status|download|book``. Bad input gets one line."""
from __future__ import annotations

import argparse
import os
import sys
import time

from .config import FastOptions

RESULTS_ENV = "CAPSLIB_RESULTS"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m capslib", description="CapsNet anomaly-detection study")
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("run", "status"):
        s = sub.add_parser(name, help="train the missing cells" if name == "run" else "list finished and missing cells")
        s.add_argument("--profile", default="quick", help="quick (digits, CPU minutes) or paper (GPU)")
        s.add_argument("--protocol", help="imbalanced (paper A) or novelty (paper B)")
        # values stay strings here: capslib.params.GridRequest reads them, as it reads papermill's and the API's
        s.add_argument("--dataset", help="comma list: digits,mnist,fashion,kmnist,smallnorb")
        s.add_argument("--classes", help="normal classes (imbalanced) / held-out classes (novelty), e.g. 3,5")
        s.add_argument("--fractions", help="anomaly fractions, e.g. 0.1,0.01")
        s.add_argument("--seeds", help="e.g. 0,1,2")
        s.add_argument("--epochs", help="override the profile's epochs")
        s.add_argument("--methods", help="e.g. capsnet")
        s.add_argument("--results-root", default=os.environ.get(RESULTS_ENV, "results"))
        s.add_argument("--data-root", default=None, help="default: $CAPSLIB_DATA or ~/.cache/capslib/data")
        if name == "run":
            s.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
            s.add_argument("--no-progress", action="store_true")
            s.add_argument("--fast", action=argparse.BooleanOptionalAction, default=None,
                           help="train CapsNet cells in stacked groups (default: on for cuda, off for cpu)")
            s.add_argument("--group-size", type=int, default=8, help="models per fast-path group (default 8)")
            FastOptions.add_flags(s)
            s.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                           help="start no cell or group that would likely end after this; the rest is left "
                                "for the next run (chunked GPU runs)")
    d = sub.add_parser("download", help="fetch an MNIST-family dataset with torchvision")
    d.add_argument("dataset")
    d.add_argument("--data-root", default=None)
    b = sub.add_parser("book", help="execute the notebooks with papermill and build the Jupyter Book")
    b.add_argument("--profile", default="quick", help="whose results the chapters show: quick or paper")
    b.add_argument("--results-root", default=os.environ.get(RESULTS_ENV, "results"))
    b.add_argument("--data-root", default=None, help="default: $CAPSLIB_DATA or ~/.cache/capslib/data")
    b.add_argument("--skip-execute", action="store_true", help="build from the chapters already in book/<profile>/")
    b.add_argument("--train", action="store_true",
                   help="train the profile's missing cells first, with a progress bar (else the chapters list them)")
    b.add_argument("--only", action="append", metavar="NAME", help="execute only this notebook (repeatable)")
    b.add_argument("--root", default=None, help="the book's top folder (default: this checkout)")
    return p


def grid_from_args(args):
    from .params import GridRequest
    return GridRequest.from_args(args).grid()


def cmd_run(args) -> int:
    from .runner import run_grid
    from .store import ResultsStore
    cells = grid_from_args(args).cells()
    store = ResultsStore(args.results_root, args.profile)
    options = FastOptions.from_flags(args)
    t0 = time.perf_counter()
    rep = run_grid(cells, store, args.data_root, args.device, show_progress=not args.no_progress,
                   fast=args.fast, group_size=args.group_size, time_budget=args.time_budget, fast_options=options)
    print(f"{len(rep['ran'])} cells ran, {len(rep['skipped'])} already finished, {len(rep['failed'])} failed, "
          f"{len(rep['deferred'])} left for the next run, in {time.perf_counter() - t0:.1f} s; results in {store.dir}")
    for cid, msg in rep["failed"].items():
        print(f"failed: {cid}: {msg}", file=sys.stderr)
    return 1 if rep["failed"] else 0


def cmd_status(args) -> int:
    from .store import ResultsStore
    cells = grid_from_args(args).cells()
    store = ResultsStore(args.results_root, args.profile)
    damaged = store.damaged()   # every finished cell verified (JSON, schema, rows, npz directory)
    done = [c for c in cells if store.is_done(c) and c.cell_id not in damaged]
    missing = [c for c in cells if not store.is_done(c)]
    for c in done:
        print(f"finished  {c.cell_id}")
    for c in missing:
        print(f"missing   {c.cell_id}")
    for cid, err in damaged.items():
        print(f"damaged   {cid}: {err}")
    print(f"{len(done)}/{len(cells)} cells finished, {len(missing)} missing ({store.dir})")
    if damaged:
        print(f"{len(damaged)} damaged cells: `{store.fix_command()}` moves them to {store.quarantine_dir} "
              "and trains them again")
    return 0


def cmd_download(args) -> int:
    from .data import download
    print(f"downloaded {args.dataset} under {download(args.dataset, args.data_root)}")
    return 0


def main(argv=None) -> int:
    from .config import ConfigError
    from .data import DataError
    from .store import StoreError
    args = build_parser().parse_args(argv)
    try:
        if args.command == "book":
            from .book import main as cmd_book
            return cmd_book(args)
        return {"run": cmd_run, "status": cmd_status, "download": cmd_download}[args.command](args)
    except (ConfigError, DataError, StoreError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished cells are kept; rerun to continue", file=sys.stderr)
        return 130
