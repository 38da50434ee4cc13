"""``python -m capslib``: the command line. Its parser and its dispatch; each command's work is in
:mod:`.grid` (run, status, download, pack-data) and :mod:`.detect` (fit, score, export-folder)."""
from __future__ import annotations

import argparse
import sys

from capslib.run.cluster import add_flags as add_engine_flags
from capslib.run.store.root import RESULTS_ENV, results_root
from capslib.core.config import MAX_ATTEMPTS, FastOptions

from capslib.cli.grid import cmd_download, cmd_pack_data, cmd_run, cmd_status, group_size_arg
from capslib.cli.detect import DETECTOR_COMMANDS, add_detector_commands
from capslib.cli import logs


RESULTS_HELP = (f"default: ${RESULTS_ENV}, else this checkout's results/ (capslib run from its checkout), "
                "else ~/.local/share/capslib/results")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m capslib", description="CapsNet anomaly-detection study")
    logs.add_flags(p)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("run", "status"):
        s = sub.add_parser(name, help="train the missing cells" if name == "run" else "list finished and missing cells")
        s.add_argument("--profile", default="quick",
                       help="quick (digits, CPU minutes) or paper (the papers' grids: GPU hours, or CPUs in the background)")
        s.add_argument("--protocol", help="imbalanced (paper A) or novelty (paper B)")
        # values stay strings here: capslib.study.params.GridRequest reads them, as it reads papermill's and the API's
        s.add_argument("--dataset", help="comma list: digits,mnist,fashion,kmnist,smallnorb")
        s.add_argument("--classes", help="normal classes (imbalanced) / held-out classes (novelty), e.g. 3,5")
        s.add_argument("--fractions", help="anomaly fractions, e.g. 0.1,0.01")
        s.add_argument("--seeds", help="e.g. 0,1,2")
        s.add_argument("--epochs", help="override the profile's epochs")
        s.add_argument("--methods", help="e.g. capsnet")
        s.add_argument("--results-root", default=None, help=RESULTS_HELP)
        s.add_argument("--data-root", default=None, help="default: $CAPSLIB_DATA or ~/.cache/capslib/data")
        s.add_argument("--max-attempts", default=str(MAX_ATTEMPTS), metavar="N",
                       help=f"trainings per paper-A CapsNet cell under the stall rule (default {MAX_ATTEMPTS}; "
                            "1: no retraining of cells that end on the loss plateau)")
        if name == "status":
            s.add_argument("--summary", action="store_true",
                           help="progress per table row and seed, cells in flight, and the time the rest would take")
            s.add_argument("--device", default=None, help="the device whose measured rate --summary uses")
        if name == "run":
            s.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
            s.add_argument("--precision", choices=("fp32", "bf16"), default=None,
                           help="the plain path's CapsNet precision (default: bf16 where the device has it "
                                "natively, else fp32)")
            s.add_argument("--no-progress", action="store_true")
            s.add_argument("--fast", action=argparse.BooleanOptionalAction, default=None,
                           help="train CapsNet cells in stacked groups (default: on for cuda, off for cpu)")
            s.add_argument("--group-size", type=group_size_arg, default=8, metavar="N|PROTOCOL=N,...",
                           help="models per fast-path group: one size (default 8) or one per protocol, "
                                "e.g. imbalanced=32,novelty=16 (the GPU window's pick prints it)")
            FastOptions.add_flags(s)
            s.add_argument("--finished-list", default=None, metavar="FILE",
                           help="cell ids finished elsewhere, one per line: skipped (a GPU slot's run, "
                                "whose store stays behind)")
            s.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                           help="start no cell or group that would likely end after this; the rest is left "
                                "for the next run (chunked GPU runs)")
            s.add_argument("--rates", default=None, metavar="FILE",
                           help="measured images/s of stacked groups (the GPU window's pick report): with "
                                "--time-budget, a group predicted to end after it does not start, later ones "
                                "that fit do")
            add_engine_flags(s)     # --workers / --scheduler: the Dask engine (capslib.run.cluster)
    pk = sub.add_parser("pack-data", help="pack the MNIST family into xz-compressed uint8 files (capslib.data.pack)")
    pk.add_argument("--data-root", default=None, help="where the raw IDX files are (default: $CAPSLIB_DATA)")
    pk.add_argument("--out", default=None, help="the pack folder (default: <data root>/pack)")
    pk.add_argument("--datasets", default=None, help="comma list (default: mnist,fashion,kmnist)")
    d = sub.add_parser("download", help="fetch an MNIST-family dataset with torchvision")
    d.add_argument("dataset")
    d.add_argument("--data-root", default=None)
    b = sub.add_parser("book", help="execute the notebooks with papermill and build the Jupyter Book")
    b.add_argument("--profile", default="quick", help="whose results the chapters show: quick or paper")
    b.add_argument("--results-root", default=None, help=RESULTS_HELP)
    b.add_argument("--data-root", default=None, help="default: $CAPSLIB_DATA or ~/.cache/capslib/data")
    b.add_argument("--skip-execute", action="store_true", help="build from the chapters already in book/<profile>/")
    b.add_argument("--train", action="store_true",
                   help="train the profile's missing cells first, with a progress bar (else the chapters list them)")
    b.add_argument("--only", action="append", metavar="NAME", help="execute only this notebook (repeatable)")
    b.add_argument("--root", default=None, help="the book's top folder (default: this checkout)")
    add_detector_commands(sub)
    for command in sub.choices.values():     # -v/-q after the command's name too
        logs.add_flags(command, in_subcommand=True)
    return p

def main(argv=None) -> int:
    from capslib.core.errors import ConfigError
    from capslib.core.errors import DataError
    from capslib.run.store.schema import StoreError
    args = build_parser().parse_args(argv)
    logs.configure(args.verbose, args.quiet)
    if args.command == "book":        # run and status state theirs once their arguments are checked
        args.results_root = str(results_root(args.results_root))
    try:
        if args.command == "book":
            from capslib.book.build import main as cmd_book
            return cmd_book(args)
        if args.command in DETECTOR_COMMANDS:
            return DETECTOR_COMMANDS[args.command](args)
        return {"run": cmd_run, "status": cmd_status, "download": cmd_download, "pack-data": cmd_pack_data}[args.command](args)
    except (ConfigError, DataError, StoreError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished cells are kept; rerun to continue", file=sys.stderr)
        return 130
