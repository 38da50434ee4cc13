"""The runner, the results store and the command line: bad input, NaN, resumability."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from capslib.cli.main import main
from capslib.core.errors import ConfigError
from capslib.core.config import CellSpec
from capslib.study.methods import METHODS
from capslib.study.protocols import CellResult
from capslib.run.runner import run_grid
from capslib.study.profiles import narrow, profile_grid
from capslib.run.store.results import ResultsStore
from capslib.run.store.schema import CSV_COLUMNS
from capslib.train.plain import NonFiniteLoss, TrainSettings, train_capsnet
from capslib.model.capsnet import CapsNet, CapsNetConfig

from test_data import make_fake_mnist
from tiny import driver_env, wait_until_stopped

ROOT = Path(__file__).resolve().parents[1]


def cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("argv,needle", [
    (["run", "--profile", "huge"], "unknown profile 'huge'"),
    (["run", "--dataset", "cifar"], "unknown dataset 'cifar'"),
    (["run", "--classes", "12"], "out of range 0..9"),
    (["run", "--fractions", "0.7"], "outside (0, 0.5]"),
    (["run", "--protocol", "fewshot"], "unknown protocol 'fewshot'"),
    (["run", "--methods", "svm9"], "unknown method 'svm9'"),
    (["status", "--profile", "huge"], "unknown profile"),
    (["run", "--time-budget", "-5"], "time budget must be > 0"),
    (["run", "--rates", "no-such-window.json"], "--rates no-such-window.json: cannot read it"),
])
def test_bad_input_one_clear_line(capsys, tmp_path, argv, needle):
    code, out, err = cli(capsys, *argv, "--results-root", str(tmp_path))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]


def test_missing_data_root_names_path(capsys, tmp_path):
    code, _, err = cli(capsys, "run", "--profile", "paper", "--dataset", "mnist", "--classes", "0",
                       "--data-root", str(tmp_path / "nowhere"), "--results-root", str(tmp_path))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in err and "download" in err


def test_corrupt_idx_one_line(capsys, tmp_path):
    make_fake_mnist(tmp_path / "data", truncate=500)
    code, _, err = cli(capsys, "run", "--profile", "paper", "--dataset", "mnist", "--classes", "0",
                       "--data-root", str(tmp_path / "data"), "--results-root", str(tmp_path))
    assert code == 2 and "truncated or corrupt" in err and len(err.strip().splitlines()) == 1


def test_cli_no_traceback_subprocess(tmp_path):
    p = subprocess.run([sys.executable, "-m", "capslib", "run", "--fractions", "0", "--results-root", str(tmp_path)],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "outside (0, 0.5]" in p.stderr


def test_cellspec_validation():
    with pytest.raises(ConfigError, match="held-out"):
        CellSpec("novelty", "digits", held_out=())
    with pytest.raises(ConfigError, match="variant"):
        CellSpec("imbalanced", "digits", variant="fancy", normal_class=0, anomaly_fraction=0.1)
    s = CellSpec("novelty", "mnist", held_out=(5, 0, 3))
    assert s.held_out == (0, 3, 5) and s.resolved().epochs == 20 and s.resolved().batch_size == 100
    a = CellSpec("imbalanced", "kmnist", variant="proposed", normal_class=4, anomaly_fraction=0.01, seed=2)
    assert a.resolved().batch_size == 32 and a.cell_id == "imbalanced-kmnist-capsnet-proposed-n4-f0.01-s2-e10-b32"
    assert CellSpec.from_dict(json.loads(json.dumps(a.to_dict()))) == a


def test_paper_grid_size():
    cells = narrow(profile_grid("paper"), methods=["capsnet"]).cells()
    assert sum(c.protocol == "imbalanced" for c in cells) == 360
    assert sum(c.protocol == "novelty" for c in cells) == 2 * 10 * 3 + 3


def test_nan_loss_detected():
    model = CapsNet(CapsNetConfig(n_classes=2))
    x = torch.full((4, 1, 28, 28), float("nan"))
    with pytest.raises(NonFiniteLoss, match="cellX: loss is nan"):
        train_capsnet(model, x, torch.zeros(4, dtype=torch.long), TrainSettings(1, 4), torch.Generator(), name="cellX")


def test_nan_cell_stops_others_go_on(tmp_path):
    def diverging(spec, data, split, ctx):
        raise NonFiniteLoss(f"{spec.cell_id}: loss is nan at epoch 1, step 0")

    def constant(spec, data, split, ctx):
        s = np.random.default_rng(0).random(len(split.test_labels)) + split.test_labels
        return CellResult(split.test_labels, {"toy": s}, {"toy": 0.5}, 0.0)

    METHODS["novelty"]["diverging"], METHODS["novelty"]["toy"] = diverging, constant
    try:
        cells = [CellSpec("novelty", "digits", m, held_out=(1,), epochs=1) for m in ("diverging", "toy")]
        store = ResultsStore(tmp_path, "t")
        rep = run_grid(cells, store, show_progress=False, out=open(os.devnull, "w"))
        assert list(rep["failed"]) == [cells[0].cell_id] and rep["ran"] == [cells[1].cell_id]
        assert store.finished_ids() == [cells[1].cell_id]
        row = store.rows()[0]
        assert row["score"] == "toy" and row["auroc"] > 0.7
    finally:
        del METHODS["novelty"]["diverging"], METHODS["novelty"]["toy"]


def test_time_budget_defers_cells_the_next_run_finishes(tmp_path):
    """With a budget of 1 s and cells of 0.6 s, the first cell runs and the others wait
    ('deferred'); a run without a budget then finishes exactly those."""
    def slow(spec, data, split, ctx):
        time.sleep(0.6)
        return CellResult(split.test_labels, {"toy": split.test_labels.astype(float)}, {"toy": 0.5}, 0.6)

    from capslib.data.datasets import load_dataset
    load_dataset("digits")                # cached: the first load (~3 s) is not the cells' time
    METHODS["novelty"]["slow"] = slow
    try:
        cells = [CellSpec("novelty", "digits", "slow", held_out=(h,), epochs=1) for h in (1, 2, 3)]
        store = ResultsStore(tmp_path, "t")
        sink = open(os.devnull, "w")
        rep = run_grid(cells, store, show_progress=False, out=sink, time_budget=1.0)
        assert rep["ran"] == [cells[0].cell_id] and rep["deferred"] == [c.cell_id for c in cells[1:]]
        assert store.finished_ids() == [cells[0].cell_id]
        rep = run_grid(cells, store, show_progress=False, out=sink)
        assert rep["skipped"] == [cells[0].cell_id] and rep["ran"] == [c.cell_id for c in cells[1:]]
        assert not rep["deferred"] and len(store.finished_ids()) == 3
    finally:
        del METHODS["novelty"]["slow"]


def test_epoch_losses_average_each_epochs_steps_and_pass_every_report_on():
    from capslib.run.execute import EpochLosses
    seen = []
    curve = EpochLosses(seen.append)
    reports = [{"epoch": 2, "loss": 0.4, "images": 0, "steps": 10},      # a resumed checkpoint's report
               {"epoch": 3, "loss": 0.5, "images": 32}, {"epoch": 3, "loss": 0.25, "images": 8},
               {"epoch": 4, "loss": 0.125, "images": 32}]
    for r in reports:
        curve(r)
    assert seen == reports
    assert curve.means(4) == [None, None, 0.375, 0.125]
    assert EpochLosses().means(2) == [None, None]


# (one training per cell: the stall rule's retrainings are tests/test_attempts.py's subject)
KILL_ARGS = ["run", "--profile", "quick", "--protocol", "imbalanced", "--classes", "0,1",
             "--fractions", "0.1", "--epochs", "1", "--methods", "capsnet", "--max-attempts", "1", "--no-progress"]
# `capslib run` in a process of its own, on the short splits (tests/tiny.py: the store's atomicity
# does not depend on the data's size); with "stop", the process stops itself (SIGSTOP) in the middle
# of storing its third cell: the cell's files written in staging, not yet moved into the store
KILL_DRIVER = """
import os, signal, sys
import tiny
import capslib.run.store.results as results
from capslib.cli.main import main
tiny.cut_splits()
if sys.argv[1] == "stop":
    write, cells = results._fsync_write, []
    def write_then_stop(path, *args, **kwargs):
        write(path, *args, **kwargs)
        if path.name == "cell.json" and path.parent.parent.name == ".staging":
            cells.append(path)
            if len(cells) == 3:
                os.kill(os.getpid(), signal.SIGSTOP)
    results._fsync_write = write_then_stop
sys.exit(main(sys.argv[2:]))
"""


def _kill_driver(stop: bool, root, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", KILL_DRIVER, "stop" if stop else "go", *KILL_ARGS,
                             "--results-root", str(root)], env=driver_env(), cwd=ROOT, text=True, **kw)


@pytest.mark.slow(seconds=20)
def test_killed_run_resumes(tmp_path):
    root = tmp_path / "res"
    store = ResultsStore(root, "quick")
    proc = _kill_driver(True, root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_until_stopped(proc, "the middle of storing its third cell")
    assert len(list(store.staging_dir.iterdir())) == 1      # the third cell, written in staging only
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = store.finished_ids()
    assert len(done) == 2
    for cid in done:                       # every visible folder is complete
        doc = store.load_cell(cid)
        assert doc["rows"] and store.load_arrays(cid)["test_labels"].size
    rows = list(csv.DictReader(open(store.dir / "cells.csv")))  # no partial row: each whole, of a finished cell
    assert {r["cell_id"] for r in rows} == set(done) and all(None not in r.values() for r in rows)
    p = _kill_driver(False, root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    assert "2 cells ran, 2 already finished" in out
    assert len(store.finished_ids()) == 4 and not any(store.staging_dir.iterdir())
    rows = list(csv.DictReader(open(store.dir / "cells.csv")))
    assert len(rows) == 4 * 6 and list(rows[0]) == CSV_COLUMNS
    st = subprocess.run([sys.executable, "-m", "capslib", "status", *KILL_ARGS[1:-1], "--results-root", str(root)],
                        capture_output=True, text=True)
    assert "4/4 cells finished, 0 in flight, 0 missing" in st.stdout
