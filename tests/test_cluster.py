"""The Dask engine (capslib.run.cluster): the same cells as in-process, bit for bit; a worker
killed mid-task; a failing cell among others; the flags; the grid's progress bar."""
import io
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import capslib.run.runner as runner
from capslib.run import locks
from capslib.cli.main import main
from capslib.core.config import CellSpec
from capslib.study.methods import METHODS
from capslib.run.store.results import ResultsStore

TESTS = Path(__file__).resolve().parent
pytestmark = pytest.mark.usefixtures("dask_workers_from_the_fork_server")     # tests/conftest.py


def _cluster():
    pytest.importorskip("distributed", reason='the cluster extra: pip install -e ".[cluster]"')
    from capslib.run.cluster import DaskExecutor
    return DaskExecutor


def _strip(rows):
    """Rows without their times and commit (others may commit to the checkout between the two runs)."""
    return [{k: v for k, v in r.items() if k not in ("train_seconds", "finished_utc", "commit")} for r in rows]


@pytest.mark.slow
@pytest.mark.parametrize("fast", [False, True])
def test_two_workers_write_the_in_process_cells_bit_for_bit(tmp_path, tiny_splits, fast):
    """CapsNet cells (plain, or one stacked group) and a CNN baseline, 1 epoch, on CPU:
    in-process with 1 thread and on 2 local workers with 1 thread each, the same arrays and rows."""
    DaskExecutor = _cluster()
    cells = [CellSpec("imbalanced", "digits", variant=v, normal_class=1, anomaly_fraction=0.1, epochs=1)
             for v in ("standard", "proposed")]
    cells.append(CellSpec("imbalanced", "digits", "cnn", normal_class=1, anomaly_fraction=0.1, epochs=1))
    ids = sorted(c.cell_id for c in cells)
    kw = dict(device="cpu", show_progress=False, out=io.StringIO(), precision="fp32", fast=fast)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = ResultsStore(tmp_path / "local", "t")
        assert sorted(runner.run_grid(cells, local, **kw)["ran"]) == ids
    finally:
        torch.set_num_threads(threads)
    dask = ResultsStore(tmp_path / "dask", "t")
    rep = runner.run_grid(cells, dask, executor=DaskExecutor(workers=2, threads=1), **kw)
    assert sorted(rep["ran"]) == ids and not rep["failed"]
    assert dask.finished_ids() == local.finished_ids() == ids
    for c in cells:
        a, b = local.load_arrays(c), dask.load_arrays(c)
        assert a.keys() == b.keys()
        for k in a:
            assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), (c.cell_id, k)
        da, db = local.load_cell(c), dask.load_cell(c)
        assert _strip(da["rows"]) == _strip(db["rows"])
        assert "worker" in db["provenance"] and "worker" not in da["provenance"]
    rerun = runner.run_grid(cells, dask, executor=DaskExecutor(workers=2, threads=1), **kw)
    assert rerun["ran"] == [] and sorted(rerun["skipped"]) == ids


@pytest.fixture
def fake_methods(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("CAPSLIB_TEST_MARKS", str(marks))
    import cluster_methods
    METHODS["novelty"].update(cluster_methods.FAKES)
    yield marks
    for name in cluster_methods.FAKES:
        METHODS["novelty"].pop(name, None)


@pytest.mark.slow
def test_killed_worker_its_cell_reruns_and_a_failing_cell_is_named(tmp_path, fake_methods, caplog):
    """Four 3-second cells, one diverging cell and one held by another run, on 2 workers;
    the worker of the first cell to start is killed (SIGKILL) mid-task: its cell reruns on
    a worker, the grid completes, every cell is written once, the NaN cell is reported by
    name, the held one is left to its holder."""
    DaskExecutor = _cluster()
    marks = fake_methods
    sleepy = [CellSpec("novelty", "digits", "sleepy", held_out=(h,), epochs=1) for h in (1, 2, 3, 4)]
    bad = CellSpec("novelty", "digits", "diverging", held_out=(5,), epochs=1)
    held = CellSpec("novelty", "digits", "sleepy", held_out=(6,), epochs=1)
    store = ResultsStore(tmp_path / "res", "t")
    killed = []

    def killer():
        t0 = time.monotonic()
        while time.monotonic() - t0 < 300:
            started = sorted(marks.iterdir(), key=lambda p: p.stat().st_mtime)
            if started:
                time.sleep(0.5)                                   # well inside its 3 s
                cid, pid = started[0].name.rsplit(".", 1)
                os.kill(int(pid), signal.SIGKILL)
                killed.append((cid, int(pid)))
                return
            time.sleep(0.05)
    watcher = threading.Thread(target=killer, daemon=True)
    watcher.start()
    caplog.set_level(logging.INFO, logger="capslib")
    store.locks_dir.mkdir(parents=True)
    other = locks.try_lock(store.locks_dir / held.cell_id)        # another run holds it
    try:
        rep = runner.run_grid(sleepy + [bad, held], store, device="cpu", show_progress=False, out=io.StringIO(),
                              executor=DaskExecutor(workers=2, threads=1))
    finally:
        other.release()
    watcher.join(5)
    assert killed, "no cell started"
    cid, pid = killed[0]
    assert sorted(rep["ran"]) == sorted(c.cell_id for c in sleepy)            # each once
    assert len(rep["ran"]) == len(set(rep["ran"]))
    assert list(rep["failed"]) == [bad.cell_id] and "loss is nan" in rep["failed"][bad.cell_id]
    assert f"cell {bad.cell_id} failed, the others go on" in caplog.text
    assert rep["elsewhere"] == [held.cell_id]
    assert store.finished_ids() == sorted(c.cell_id for c in sleepy)
    assert not any(store.staging_dir.iterdir())
    starts = [p.name for p in marks.iterdir() if p.name.startswith(cid + ".")]
    assert len(starts) == 2 and f"{cid}.{pid}" in starts                      # it ran again, elsewhere
    assert store.load_cell(cid)["provenance"]["worker"].split(":")[-1] != str(pid)
    rows = store.rows()
    assert sorted(r["cell_id"] for r in rows) == sorted(c.cell_id for c in sleepy)   # one row per cell


def test_cli_flags_one_line_errors(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("CAPSLIB_SCHEDULER", raising=False)
    cases = [(["--workers", "2", "--scheduler", "tcp://x:1"], "not both"),
             (["--threads", "2"], "--threads is for the Dask engine"),
             (["--workers", "0"], "--workers must be >= 1, got 0")]
    for argv, needle in cases:
        code = main(["run", "--results-root", str(tmp_path), *argv])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and needle in err[0], (argv, err)


def test_missing_extra_says_what_to_install(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)       # import distributed -> ImportError
    for argv in (["--workers", "2"], ["--scheduler", "tcp://127.0.0.1:1"]):
        code = main(["run", "--results-root", str(tmp_path), *argv])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and 'pip install -e ".[cluster]"' in err[0], err
    monkeypatch.setenv("CAPSLIB_SCHEDULER", "tcp://127.0.0.1:1")
    assert main(["run", "--results-root", str(tmp_path)]) == 2                  # the variable asks for Dask too
    assert "[cluster]" in capsys.readouterr().err


def test_grid_bar_counts_done_running_left():
    out = io.StringIO()
    bar = runner.GridBar(6, True, out)
    bar.started(2, "a")
    bar.skipped(1)                                  # deferred, or held elsewhere
    assert (bar.bar.n, bar.running, bar.left) == (1, 2, 3)
    bar.finished(2)
    bar.started(3, "b")
    assert (bar.bar.n, bar.running, bar.left) == (3, 3, 0)
    bar.finished(3)
    bar.close()
    assert "running 0, left 0" in out.getvalue()
