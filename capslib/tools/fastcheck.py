"""Do the fast path's metrics agree with the plain path's within seed-to-seed noise?

``python -m capslib.tools.fastcheck [python -m capslib run options] [--out results/bench]``

Runs the narrowed grid twice, into two fresh stores: once through the fast path (stacked
groups, with the given GPU switches) and once through the plain path. For each cell and
score it prints the two AUROCs and their difference, and for each cell without its seed
the spread of the plain path's AUROC over the seeds. The verdict, per score: the largest
|fast − plain| over the cells, against the median seed std of the plain path. Agreement
means the largest difference is below twice that std (exact agreement is not expected on a
GPU: its kernels are not bitwise deterministic, and bf16 changes rounding). Writes the
table and the verdict to ``<out>/fastcheck-<device>-<date>.json``. Use two or more seeds.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from capslib.cli.main import build_parser
from capslib.cli.grid import grid_from_args
from capslib.train.stacked import FastOptions
from capslib.run.runner import run_grid
from capslib.run.store.results import ResultsStore
from capslib.core.provenance import device_name, git_commit, write_report
from capslib.train.plain import default_device


def compare(rows: dict[str, list[dict]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``rows``: {'fast': store rows, 'plain': store rows}. Returns the per-cell table
    (cell, score, plain, fast, diff) and the per-score verdict."""
    frames = []
    for path, rs in rows.items():
        df = pd.DataFrame(rs)[["cell_id", "score", "seed", "auroc"]].assign(path=path)
        frames.append(df)
    both = pd.concat(frames).pivot_table(index=["cell_id", "score", "seed"], columns="path", values="auroc")
    both = both.reset_index()
    both["diff"] = both["fast"] - both["plain"]
    both["cell"] = both["cell_id"].str.replace(r"-s\d+-", "-", regex=True)    # the cell without its seed
    spread = both.groupby(["cell", "score"])["plain"].std().rename("seed_std").reset_index()
    per_score = both.groupby("score")["diff"].apply(lambda d: d.abs().max()).rename("max_abs_diff").reset_index()
    per_score = per_score.merge(spread.groupby("score")["seed_std"].median().reset_index(), on="score")
    per_score["agrees"] = per_score["max_abs_diff"] < 2 * per_score["seed_std"]
    return both, per_score


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    out_dir = "results/bench"
    if "--out" in argv:
        i = argv.index("--out")
        out_dir = argv[i + 1]
        del argv[i:i + 2]
    args = build_parser().parse_args(["run", *argv])
    cells = grid_from_args(args).cells()
    seeds = {c.seed for c in cells}
    if len(seeds) < 2:
        print("error: give two or more --seeds: the verdict compares with the spread over seeds", file=sys.stderr)
        return 2
    options = FastOptions.from_flags(args)
    device = args.device or default_device()
    rows, seconds = {}, {}
    with tempfile.TemporaryDirectory(prefix="fastcheck-") as tmp:
        for path, fast in (("fast", True), ("plain", False)):
            store = ResultsStore(Path(tmp) / path, args.profile)
            t0 = time.perf_counter()
            rep = run_grid(cells, store, args.data_root, device, show_progress=not args.no_progress,
                           fast=fast, group_size=args.group_size, fast_options=options)
            seconds[path] = time.perf_counter() - t0
            if rep["failed"]:
                print(f"error: {path} path: cells failed: {rep['failed']}", file=sys.stderr)
                return 1
            rows[path] = store.rows()
    table, verdict = compare(rows)
    with pd.option_context("display.width", 160, "display.max_rows", 500):
        print(table[["cell_id", "score", "plain", "fast", "diff"]].to_string(index=False))
        print(verdict.to_string(index=False))
    print(f"wall: fast {seconds['fast']:.1f} s, plain {seconds['plain']:.1f} s ({len(cells)} cells)")
    report = {"device": device_name(device), "commit": git_commit(), "options": options.__dict__,
              "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "wall_seconds": seconds,
              "cells": [c.cell_id for c in cells], "table": table.to_dict("records"),
              "verdict": verdict.to_dict("records")}
    path = write_report(out_dir, f"fastcheck-{torch.device(device).type}", report, default=float)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
