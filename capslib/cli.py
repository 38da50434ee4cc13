"""Command line: ``python -m capslib run|status|download|book``. Bad input gets one line."""
from __future__ import annotations

import argparse
import os
import sys
import time

from .cluster import add_flags as add_engine_flags
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
            s.add_argument("--group-size", type=int, default=8, help="models per fast-path group (default 8)")
            FastOptions.add_flags(s)
            s.add_argument("--finished-list", default=None, metavar="FILE",
                           help="cell ids finished elsewhere, one per line: skipped (a GPU slot's run, "
                                "whose store stays behind)")
            s.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                           help="start no cell or group that would likely end after this; the rest is left "
                                "for the next run (chunked GPU runs)")
            add_engine_flags(s)     # --workers / --scheduler: the Dask engine (capslib.cluster)
    pk = sub.add_parser("pack-data", help="pack the MNIST family into xz-compressed uint8 files (capslib.datapack)")
    pk.add_argument("--data-root", default=None, help="where the raw IDX files are (default: $CAPSLIB_DATA)")
    pk.add_argument("--out", default=None, help="the pack folder (default: <data root>/pack)")
    pk.add_argument("--datasets", default=None, help="comma list (default: mnist,fashion,kmnist)")
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
    add_detector_commands(sub)
    return p


def grid_from_args(args):
    from .params import GridRequest
    return GridRequest.from_args(args).grid()


def finished_elsewhere(path) -> set[str]:
    """The cell ids in a --finished-list file (one per line; blank lines and # comments skipped)."""
    from .config import ConfigError
    try:
        lines = open(path).read().splitlines()
    except OSError as e:
        raise ConfigError(f"--finished-list {path}: cannot read it ({e.strerror})") from None
    return {ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")}


def cmd_run(args) -> int:
    from .cluster import from_flags as engine_from_flags
    from .runner import prioritized, run_grid
    from .store import ResultsStore
    cells = prioritized(grid_from_args(args).cells(), args.profile)
    if args.finished_list:
        cells = [c for c in cells if c.cell_id not in finished_elsewhere(args.finished_list)]
    store = ResultsStore(args.results_root, args.profile)
    options = FastOptions.from_flags(args)
    executor = engine_from_flags(args)      # None: the in-process runner
    t0 = time.perf_counter()
    rep = run_grid(cells, store, args.data_root, args.device, show_progress=not args.no_progress,
                   fast=args.fast, group_size=args.group_size, time_budget=args.time_budget, fast_options=options,
                   precision=args.precision, executor=executor)
    paused = f" ({len(rep['paused'])} paused mid-training, resumable)" if rep.get("paused") else ""
    print(f"{len(rep['ran'])} cells ran, {len(rep['skipped'])} already finished, {len(rep['failed'])} failed, "
          f"{len(rep['deferred'])} left for the next run{paused}, in {time.perf_counter() - t0:.1f} s; "
          f"results in {store.dir}")
    for cid, msg in rep["failed"].items():
        print(f"failed: {cid}: {msg}", file=sys.stderr)
    return 1 if rep["failed"] else 0


def cmd_status(args) -> int:
    from .checkpoint import in_flight
    from .runner import prioritized
    from .store import ResultsStore
    cells = prioritized(grid_from_args(args).cells(), args.profile)
    store = ResultsStore(args.results_root, args.profile)
    damaged = store.damaged()   # every finished cell verified (JSON, schema, rows, npz directory)
    done = [c for c in cells if store.is_done(c) and c.cell_id not in damaged]
    missing = [c for c in cells if not store.is_done(c)]
    ids = {c.cell_id for c in cells}
    flying = [m for m in in_flight(store.dir) if m["cell_id"] in ids and not store.is_done(m["cell_id"])]
    if args.summary:
        _print_summary(args, cells, store)
    else:
        for c in done:
            print(f"finished  {c.cell_id}")
        for c in missing:
            print(f"missing   {c.cell_id}")
    for m in flying:
        print(f"in flight {m['cell_id']}: epoch {m.get('epoch')}/{m.get('epochs')} ({m.get('precision')}, "
              f"checkpoint of {m.get('updated_utc')})")
    for cid, err in damaged.items():
        print(f"damaged   {cid}: {err}")
    print(f"{len(done)}/{len(cells)} cells finished, {len(flying)} in flight, {len(missing)} missing ({store.dir})")
    if damaged:
        print(f"{len(damaged)} damaged cells: `{store.fix_command()}` moves them to {store.quarantine_dir} "
              "and trains them again")
    return 0


def _print_summary(args, cells, store) -> None:
    import torch
    from .grid_status import eta_lines, row_status
    from .store import device_name
    from .train import default_precision
    for st in row_status(cells, store):
        print(st.line())
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    for line in eta_lines(cells, store, device_name(device), default_precision(device), args.data_root):
        print(line)


def cmd_pack_data(args) -> int:
    from .datapack import PACKABLE, pack_data
    names = [x for x in (args.datasets or "").split(",") if x] or PACKABLE
    done = pack_data(args.data_root, args.out, names)
    for name, d in done.items():
        print(f"{name}: {d['bytes'] / 2**20:.1f} MiB ({d['raw_bytes'] / 2**20:.1f} MiB of uint8) -> {d['path']}")
    print(f"{sum(d['bytes'] for d in done.values()) / 2**20:.1f} MiB in all")
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
        if args.command in DETECTOR_COMMANDS:
            return DETECTOR_COMMANDS[args.command](args)
        return {"run": cmd_run, "status": cmd_status, "download": cmd_download, "pack-data": cmd_pack_data}[args.command](args)
    except (ConfigError, DataError, StoreError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished cells are kept; rerun to continue", file=sys.stderr)
        return 130


# ---- fit / score: a detector on your own images (capslib.folder, capslib.detector) ----------------
def add_detector_commands(sub) -> None:
    f = sub.add_parser("fit", help="fit a capsule anomaly detector on a folder of your images",
                       description="FOLDER/normal/ plus a few FOLDER/anomalous/: paper A (two-capsule CapsNet, AS "
                                   "with a logistic threshold); FOLDER/normal/<class>/ for two classes or more: "
                                   "paper B (CapsNet classifier, -PP and -RE). Optional FOLDER/test/normal/ and "
                                   "FOLDER/test/anomalous/; else the test set is drawn with a fixed seed.")
    f.add_argument("folder")
    f.add_argument("--out", required=True, metavar="MODEL_DIR", help="where model.safetensors and model.json go")
    f.add_argument("--epochs", help="default: the paper's (A: 10, B: 20)")
    f.add_argument("--batch-size", help="default: the paper's (A: 32, B: 100)")
    f.add_argument("--image-size", default="28", help="square input size in pixels (default 28, at least 17)")
    f.add_argument("--channels", default="1", help="1 grayscale (default), 3 RGB, 2 or 4 with alpha, or keep")
    f.add_argument("--seed", default="0", help="training seed (default 0)")
    f.add_argument("--test-fraction", default="0.3", help="share of each folder tested when there is no test/")
    f.add_argument("--split-seed", default="0", help="seed of that draw (default 0)")
    f.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    f.add_argument("--precision", choices=("fp32", "bf16"), default=None,
                   help="the CapsNet's forward pass (default: bf16 where the device has it natively, else fp32)")
    f.add_argument("--skip-unreadable", action="store_true", help="list unreadable files and go on instead of stopping")
    f.add_argument("--no-progress", action="store_true")
    e = sub.add_parser("export-folder", help="write one study cell's images as a folder that fit reads",
                       description="The training and test images of one cell of the study (paper A: "
                                   "--normal-class and --fraction; paper B: --held-out) as PNG files in fit's "
                                   "layout, with the cell's own test set under test/: `fit` on it trains the "
                                   "same experiment as `run` does for that cell.")
    e.add_argument("out", metavar="FOLDER")
    e.add_argument("--dataset", default="digits", help="digits (default), mnist, fashion, kmnist")
    e.add_argument("--protocol", default="imbalanced", help="imbalanced (paper A, default) or novelty (paper B)")
    e.add_argument("--normal-class", default="0", help="paper A's normal class (default 0)")
    e.add_argument("--fraction", default="0.1", help="paper A's anomaly fraction (default 0.1)")
    e.add_argument("--held-out", default="9", help="paper B's held-out classes, e.g. 9 or 0,3,5 (default 9)")
    e.add_argument("--seed", default="0", help="the cell's seed (default 0)")
    e.add_argument("--data-root", default=None, help="default: $CAPSLIB_DATA or ~/.cache/capslib/data")
    s = sub.add_parser("score", help="score images with a model written by fit (one CSV row per image)")
    s.add_argument("model_dir")
    s.add_argument("images", nargs="+", help="image files, or folders (searched recursively)")
    s.add_argument("--csv", default=None, help="the CSV to write (default: standard output)")
    s.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    s.add_argument("--skip-unreadable", action="store_true", help="list unreadable files and go on instead of stopping")


def _device(name):
    import torch

    from .config import ConfigError
    from .train import default_device
    try:
        device = torch.device(name) if name else default_device()
    except RuntimeError:
        raise ConfigError(f"device {name!r}: use cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: no CUDA device here; use --device cpu")
    return device


def _report_skipped(skipped) -> None:
    for path, why in skipped:
        print(f"skipped: {path}: {why}", file=sys.stderr)


def cmd_fit(args) -> int:
    from .config import as_float, as_int
    from .detector import FitSettings, fit
    from .folder import Preprocessing, load_folder
    from .train import default_precision

    device = _device(args.device)
    channels = None if args.channels == "keep" else as_int("--channels", args.channels)
    opt = lambda v, name: None if v is None else as_int(name, v)
    settings = FitSettings(opt(args.epochs, "--epochs"), opt(args.batch_size, "--batch-size"),
                           seed=as_int("--seed", args.seed), precision=args.precision or default_precision(device))
    data = load_folder(args.folder, Preprocessing(channels, as_int("--image-size", args.image_size)),
                       as_float("--test-fraction", args.test_fraction), as_int("--split-seed", args.split_seed),
                       skip_unreadable=args.skip_unreadable)
    print(data.summary())
    _report_skipped(data.skipped)
    t0 = time.perf_counter()
    det = fit(data, settings, device, progress=not args.no_progress)
    det.save(args.out)
    tr = det.meta["training"]
    print(f"fitted in {time.perf_counter() - t0:.1f} s ({tr['train_seconds']:.1f} s training; {tr['epochs']} epochs, "
          f"batch {tr['batch_size']}, {tr['precision']}, {det.meta['device']}); model in {args.out}")
    for score, m in det.meta["test_metrics"].items():
        acc = f", accuracy {m['accuracy']:.4f} at threshold {m['threshold']:.4g}" if m["accuracy"] == m["accuracy"] else ""
        print(f"  test {score}: AUROC {m['auroc']:.4f}{acc}")
    if not det.meta["test_metrics"]:
        print("  (the test set holds no anomalies: no AUROC)")
    return 0


def cmd_score(args) -> int:
    from .detector import Detector, collect_images, write_csv
    from .folder import FolderError

    det = Detector.load(args.model_dir, _device(args.device))
    files, skipped = collect_images(args.images)
    if not files:
        raise FolderError(f"no image files (PNG, JPEG, BMP, TIFF) among {' '.join(args.images)}")
    rows, unread = det.score_files(files, skip_unreadable=args.skip_unreadable)
    write_csv(rows, args.csv or sys.stdout)
    _report_skipped(skipped + unread)
    flagged = sum(r.get("anomalous", 0) for r in rows)
    decision = f", {flagged} above the {det.decision_score} threshold" if det.decision_score else ""
    print(f"{len(rows)} image(s) scored{decision}" + (f"; scores in {args.csv}" if args.csv else ""), file=sys.stderr)
    return 0


def cmd_export_folder(args) -> int:
    from .config import as_float, as_int
    from .folder import write_example_folder

    held_out = tuple(as_int("--held-out", c) for c in args.held_out.split(","))
    root = write_example_folder(args.out, args.dataset, args.protocol, as_int("--normal-class", args.normal_class),
                                as_float("--fraction", args.fraction), held_out, as_int("--seed", args.seed),
                                args.data_root)
    counts = {d: sum(1 for _ in (root / d).rglob("*.png")) for d in ("normal", "anomalous", "test/normal",
                                                                      "test/anomalous") if (root / d).is_dir()}
    print(f"wrote {root}: " + ", ".join(f"{d}/ {n}" for d, n in counts.items()))
    return 0


DETECTOR_COMMANDS = {"fit": cmd_fit, "score": cmd_score, "export-folder": cmd_export_folder}
