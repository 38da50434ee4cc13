"""A detector on your own images from the command line: ``fit``, ``score`` and ``export-folder``."""
from __future__ import annotations

import sys
import time


def add_detector_commands(sub) -> None:
    f = sub.add_parser("fit", help="fit a capsule anomaly detector on a folder of your images",
                       description="anomalib's folder layout. FOLDER/normal/ plus a few FOLDER/abnormal/ (or the "
                                   "older anomalous/): paper A (two-capsule CapsNet, AS with a logistic threshold; "
                                   "it trains on a share of the abnormal images). FOLDER/normal/<class>/ for two "
                                   "classes or more, or FOLDER/normal/ alone: paper B (CapsNet classifier, -PP and "
                                   "-RE; trained on normal images only, abnormal images tested only; without any "
                                   "there is no AUROC, only scores). The test set: FOLDER/test/normal/ and "
                                   "FOLDER/test/abnormal/, or --normal-test-dir, else a share of each folder drawn "
                                   "with a fixed seed; the split is printed and kept in model.json.")
    f.add_argument("folder")
    f.add_argument("--out", required=True, metavar="MODEL_DIR", help="where model.safetensors and model.json go")
    f.add_argument("--epochs", help="default: the paper's (A: 10, B: 20)")
    f.add_argument("--batch-size", help="default: the paper's (A: 32, B: 100)")
    f.add_argument("--image-size", default="28", help="square input size in pixels (default 28, at least 17)")
    f.add_argument("--channels", default="1", help="1 grayscale (default), 3 RGB, 2 or 4 with alpha, or keep")
    f.add_argument("--seed", default="0", help="training seed (default 0)")
    f.add_argument("--test-fraction", default="0.3", help="share of each folder drawn into the test set when there is no test/ nor --normal-test-dir (default 0.3)")
    f.add_argument("--split-seed", default="0", help="seed of that draw (default 0)")
    f.add_argument("--normal-dir", default="normal", help="subfolder of the normal images (default normal)")
    f.add_argument("--abnormal-dir", default=None,
                   help="subfolder of the abnormal images (default abnormal, or anomalous where only that one is there)")
    f.add_argument("--normal-test-dir", default=None, help="subfolder of normal images to test on only (default none)")
    f.add_argument("--mask-dir", default=None,
                   help="anomalib's pixel masks: accepted and not read (the CapsNet scores whole images)")
    f.add_argument("--protocol", choices=("imbalanced", "novelty"), default=None,
                   help="default: the one the layout holds; novelty on normal/ plus abnormal/ trains on the "
                        "normal images alone and tests on the abnormal ones")
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


def _report_skipped(skipped) -> None:
    for path, why in skipped:
        print(f"skipped: {path}: {why}", file=sys.stderr)


def cmd_fit(args) -> int:
    from capslib.core.config import as_float, as_int
    from capslib.detect.fit import FitSettings, fit
    from capslib.data.folder import Preprocessing, load_folder
    from capslib.detect.detector import META, check_model_dir
    from capslib.detect.files import check_output
    from capslib.train.plain import default_precision

    check_model_dir(check_output(args.out, "--out", folder=True))     # before the training, not after it
    from capslib.train.device import resolve_device
    device = resolve_device(args.device)
    channels = None if args.channels == "keep" else as_int("--channels", args.channels)
    opt = lambda v, name: None if v is None else as_int(name, v)
    settings = FitSettings(opt(args.epochs, "--epochs"), opt(args.batch_size, "--batch-size"),
                           seed=as_int("--seed", args.seed), precision=args.precision or default_precision(device))
    data = load_folder(args.folder, Preprocessing(channels, as_int("--image-size", args.image_size)),
                       as_float("--test-fraction", args.test_fraction), as_int("--split-seed", args.split_seed),
                       skip_unreadable=args.skip_unreadable, normal_dir=args.normal_dir,
                       abnormal_dir=args.abnormal_dir, normal_test_dir=args.normal_test_dir, mask_dir=args.mask_dir,
                       protocol=args.protocol)
    print(data.summary())
    print("\n".join(data.split_lines()))
    _report_skipped(data.skipped)
    t0 = time.perf_counter()
    det = fit(data, settings, device, progress=not args.no_progress)
    det.save(args.out)
    tr = det.meta["training"]
    print(f"fitted in {time.perf_counter() - t0:.1f} s ({tr['train_seconds']:.1f} s training; {tr['epochs']} epochs, "
          f"batch {tr['batch_size']}, {tr['precision']}, {det.meta['device']}); model in {args.out} "
          f"(the split, every file: data.split in {META})")
    for score, m in det.meta["test_metrics"].items():
        acc = f", accuracy {m['accuracy']:.4f} at threshold {m['threshold']:.4g}" if m["accuracy"] == m["accuracy"] else ""
        print(f"  test {score}: AUROC {m['auroc']:.4f}{acc}")
    if not det.meta["test_metrics"]:
        print("  no AUROC: the test set does not hold both normal and abnormal images; only scores "
              f"(`score {args.out} IMAGES`)")
    return 0


def cmd_score(args) -> int:
    from capslib.detect.detector import Detector
    from capslib.detect.files import check_output, collect_images, write_csv
    from capslib.data.folder import FolderError

    if args.csv:
        check_output(args.csv, "--csv")
    from capslib.train.device import resolve_device
    det = Detector.load(args.model_dir, resolve_device(args.device))
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
    from capslib.core.config import as_float, as_int
    from capslib.data.folder import write_example_folder

    held_out = tuple(as_int("--held-out", c) for c in args.held_out.split(","))
    root = write_example_folder(args.out, args.dataset, args.protocol, as_int("--normal-class", args.normal_class),
                                as_float("--fraction", args.fraction), held_out, as_int("--seed", args.seed),
                                args.data_root)
    counts = {d: sum(1 for _ in (root / d).rglob("*.png")) for d in ("normal", "anomalous", "test/normal",
                                                                      "test/anomalous") if (root / d).is_dir()}
    print(f"wrote {root}: " + ", ".join(f"{d}/ {n}" for d, n in counts.items()))
    return 0


DETECTOR_COMMANDS = {"fit": cmd_fit, "score": cmd_score, "export-folder": cmd_export_folder}
