"""Runs that share a store: claims split the grid, clean-up touches only orphans, cells.csv
is rebuilt under a lock, and concurrent writers, readers and clean-ups raise nothing."""
import csv
import io
import json
import logging
import os
import subprocess
import time
import traceback

import numpy as np
import pytest

from capslib.run import locks
from capslib.study.params import GridRequest
from capslib.study.protocols import CellResult
from capslib.run.store.results import ResultsStore
from capslib.run.store.schema import OWNED, ROW_KEYS

# fresh processes, no torch/OpenMP state inherited (conftest.py); they have the fork server's environment,
# so what a worker needs (its log, its store) it takes as arguments
from conftest import FORK_SERVER as FRESH


def baseline_cells():
    """9 cells of the quick grid (the CNN of paper A, the MSP baseline of paper B)."""
    return GridRequest(profile="quick", methods=["cnn", "cnn_msp"]).cells()


def _fake_method(r, data, split, ctx):
    """Stands in for training: takes a moment and logs which process 'trained' which cell."""
    time.sleep(0.2)
    with open(os.environ["FAKE_TRAIN_LOG"], "a") as f:
        f.write(f"{os.getpid()} {r.cell_id}\n")
    labels = split.test_labels
    score = np.random.default_rng(0).random(len(labels))
    return CellResult(labels, {"fake": score}, {"fake": None}, 0.2)


def _run_worker(root, log, start, out):
    os.environ["FAKE_TRAIN_LOG"] = log
    import capslib.run.runner as runner
    runner.method_for = lambda protocol, method: _fake_method
    try:
        start.wait(60)
        rep = runner.run_grid(baseline_cells(), ResultsStore(root, "quick"), show_progress=False, device="cpu")
        out.put((os.getpid(), rep, None))
    except BaseException:
        out.put((os.getpid(), None, traceback.format_exc()))


@pytest.mark.slow
@pytest.mark.parametrize("n_runs", [2, 3])
def test_concurrent_runs_train_each_cell_once(tmp_path, n_runs):
    root, log = str(tmp_path / "res"), str(tmp_path / "train.log")
    start, out = FRESH.Event(), FRESH.Queue()
    procs = [FRESH.Process(target=_run_worker, args=(root, log, start, out)) for _ in range(n_runs)]
    for p in procs:
        p.start()
    time.sleep(1.0)
    start.set()
    results = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(60)
    assert [err for _, _, err in results if err] == []
    ids = sorted(c.cell_id for c in baseline_cells())
    trained = sorted(line.split()[1] for line in open(log))
    assert trained == ids                                    # each cell trained exactly once
    ran = [cid for _, rep, _ in results for cid in rep["ran"]]
    assert sorted(ran) == ids                                # and reported by the run that trained it
    assert sum(1 for _, rep, _ in results if rep["ran"]) >= 2, "the runs did not split the grid"
    for _, rep, _ in results:                                # every other run saw it held or done
        assert sorted(rep["ran"] + rep["elsewhere"] + rep["skipped"]) == ids
    store = ResultsStore(root, "quick")
    assert store.finished_ids() == ids
    rows = list(csv.DictReader(open(store.dir / "cells.csv")))
    assert sorted(r["cell_id"] for r in rows) == ids         # all rows present, once
    assert not any(store.staging_dir.iterdir())


@pytest.mark.slow(seconds=15)
def test_two_cli_runs_split_a_real_grid(tmp_path):
    """Two `capslib run` processes on one root, really training (1 epoch, on the short splits)."""
    from tiny import cli
    root = tmp_path / "res"
    args = ["run", "--profile", "quick", "--protocol", "novelty", "--methods", "cnn_msp", "--classes", "2,9",
            "--epochs", "1", "--device", "cpu", "--no-progress", "--results-root", root]
    procs = [cli(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    ran = [int(o.split(" cells ran")[0].split()[-1]) for o, _ in outs]
    assert sum(ran) == 2, outs
    store = ResultsStore(root, "quick")
    assert len(store.finished_ids()) == 2 and store.damaged() == {}
    rows = list(csv.DictReader(open(store.dir / "cells.csv")))
    assert sorted(r["cell_id"] for r in rows) == store.finished_ids()


# ---- clean-up and claims ---------------------------------------------------------------------
def test_claim_is_exclusive_and_released(tmp_path):
    store = ResultsStore(tmp_path, "quick")
    spec = baseline_cells()[0]
    with store.claim(spec) as mine:
        assert mine
        other = locks.try_lock(store.locks_dir / spec.cell_id)   # another open file: refused
        assert other is None
    other = locks.try_lock(store.locks_dir / spec.cell_id)
    assert other is not None
    other.release()


def test_clean_up_removes_only_orphans(tmp_path):
    store = ResultsStore(tmp_path, "quick")
    store.staging_dir.mkdir(parents=True)
    live, fd = locks.locked_folder(store.staging_dir, f"cell-a{OWNED}{os.getpid()}")
    orphan = store.staging_dir / f"cell-b{OWNED}99999"         # a killed writer's: unlocked
    orphan.mkdir()
    (orphan / "arrays.npz").write_bytes(b"partial")
    young_old_style = store.staging_dir / "cell-c-4242"         # capslib before the locks, just made
    young_old_style.mkdir()
    aged_old_style = store.staging_dir / "cell-d-4243"
    aged_old_style.mkdir()
    os.utime(aged_old_style, (time.time() - 3600, time.time() - 3600))
    try:
        assert store.clean_stale() == 2
        assert live.exists() and young_old_style.exists()
        assert not orphan.exists() and not aged_old_style.exists()
    finally:
        os.close(fd)
    assert store.clean_stale() == 1 and not live.exists()      # its owner is gone now


def _fake_rows(cid):
    return [{**{k: 1 for k in ROW_KEYS}, "score": "fake", "cell_id": cid}]


def test_a_redo_deletes_only_the_old_cells_own_files(tmp_path):
    """A cell written again replaces the old folder's cell.json and arrays.npz; a file someone
    put beside them goes, with the old folder, to quarantine/ and is never deleted."""
    store = ResultsStore(tmp_path, "quick")
    spec = baseline_cells()[0]
    arrays = {"test_labels": np.arange(4) % 2, "test_idx": np.arange(4), "score_fake": np.zeros(4, "float32")}
    store.write_cell(spec, _fake_rows(spec.cell_id), arrays, {"device": "cpu"})
    store.write_cell(spec, _fake_rows(spec.cell_id), arrays, {"device": "cpu", "again": 1})   # its own files only
    assert not store.quarantine_dir.exists() and list(store.staging_dir.iterdir()) == []
    (store.cell_dir(spec) / "notes.md").write_text("my notes on this cell")
    store.write_cell(spec, _fake_rows(spec.cell_id), arrays, {"device": "cpu", "again": 2})
    assert sorted(p.name for p in store.cell_dir(spec).iterdir()) == ["arrays.npz", "cell.json"]
    assert store.load_cell(spec)["provenance"]["again"] == 2
    (kept,) = store.quarantine_dir.iterdir()
    assert kept.name.startswith(f"{spec.cell_id}.replaced-") and (kept / "notes.md").read_text() == "my notes on this cell"
    assert list(store.staging_dir.iterdir()) == []


def test_clean_up_removes_only_the_stores_own_old_csv_files(tmp_path):
    store = ResultsStore(tmp_path, "quick")
    store.dir.mkdir(parents=True)
    names = (".cells.csv.4242", ".cells.csv.tmp", ".cells.csv.bak", ".cells.csv.mine.txt")
    for name in names:
        (store.dir / name).write_text(name)
        os.utime(store.dir / name, (time.time() - 3600, time.time() - 3600))
    store.clean_stale()
    assert sorted(p.name for p in store.dir.glob(".cells.csv.*")) == [".cells.csv.bak", ".cells.csv.mine.txt"]


def _stress_worker(root, role, seconds, out):
    from capslib.run.runner import run_grid
    store = ResultsStore(root, "quick")
    cells = baseline_cells()[:4]
    errors, n = [], 0
    t_end = time.time() + seconds
    while time.time() < t_end:
        try:
            if role == "writer":
                spec = cells[n % len(cells)]
                store.write_cell(spec, _fake_rows(spec.cell_id),
                                 {"test_labels": np.arange(50) % 2, "test_idx": np.arange(50),
                                  "score_fake": np.random.rand(50).astype("float32")}, {"device": "cpu"})
            else:   # a run starting: clean-up, quarantine check, cells.csv; then everything read
                run_grid([c for c in cells if store.is_done(c)], store, show_progress=False, device="cpu")
                for cid in store.finished_ids():
                    try:
                        store.load_arrays(cid)
                    except FileNotFoundError:   # replaced and gone between listing and reading
                        pass
                store.rows()
                assert store.damaged() == {}, store.damaged()
        except BaseException:
            errors.append(traceback.format_exc())
        n += 1
    out.put((role, n, errors))


@pytest.mark.slow
def test_store_stress_two_writers_and_a_run(tmp_path):
    root = str(tmp_path / "res")
    out = FRESH.Queue()
    procs = [FRESH.Process(target=_stress_worker, args=(root, role, 6.0, out))
             for role in ("writer", "writer", "run")]
    for p in procs:
        p.start()
    results = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(60)
    errors = [e for _, _, errs in results for e in errs]
    assert errors == [], f"{len(errors)} operations raised; first:\n{errors[0] if errors else ''}"
    assert all(n > 3 for _, n, _ in results), results
    store = ResultsStore(root, "quick")
    assert not store.quarantine_dir.exists()                   # nothing was taken for damaged
    rows = list(csv.DictReader(open(store.dir / "cells.csv")))
    assert sorted(r["cell_id"] for r in rows) == store.finished_ids()


# ---- damaged or foreign files ----------------------------------------------------------------
def _store_with_cells(tmp_path, monkeypatch, n=2):
    """A quick-profile store holding ``n`` finished cells (training faked, writing real)."""
    import capslib.run.runner as runner
    monkeypatch.setenv("FAKE_TRAIN_LOG", str(tmp_path / "train.log"))
    monkeypatch.setattr(runner, "method_for", lambda protocol, method: _fake_method)
    cells = baseline_cells()[:n]
    store = ResultsStore(tmp_path / "res", "quick")
    rep = runner.run_grid(cells, store, show_progress=False, device="cpu")
    assert len(rep["ran"]) == n and store.damaged() == {}
    return store, cells


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _set_json(path, **changes):
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))


DAMAGES = {   # case -> (how the file is damaged, the words of its one-line message)
    "truncated cell.json": (lambda d: _truncate(d / "cell.json"), "cell.json: not valid JSON"),
    "schema_version 0": (lambda d: _set_json(d / "cell.json", schema_version=0),
                         "cell.json: schema_version 0 has no migration to 1"),
    "no schema_version": (lambda d: _set_json(d / "cell.json", schema_version=None), "cell.json: no schema_version"),
    "row lacks auroc": (lambda d: _set_json(d / "cell.json", rows=[{"score": "fake"}]), "cell.json: a row lacks"),
    "truncated arrays.npz": (lambda d: _truncate(d / "arrays.npz"), "arrays.npz: unreadable"),
    "missing arrays.npz": (lambda d: (d / "arrays.npz").unlink(), "arrays.npz: missing"),
}


@pytest.mark.parametrize("case", list(DAMAGES))
def test_damaged_cell_listed_quarantined_and_retrained(tmp_path, monkeypatch, capsys, caplog, case):
    import capslib.run.runner as runner
    from capslib.cli.main import main
    store, cells = _store_with_cells(tmp_path, monkeypatch)
    bad = cells[0].cell_id
    damage, words = DAMAGES[case]
    damage(store.cell_dir(bad))
    err = store.check_cell(bad)
    assert err is not None and words in str(err) and str(store.cell_dir(bad)) in str(err)
    assert "\n" not in str(err) and f"--results-root {store.root}" in str(err)   # names the fix, one line
    assert list(store.damaged()) == [bad]
    # status lists it (and does not count it finished)
    assert main(["status", "--profile", "quick", "--methods", "cnn", "--results-root", str(store.root)]) == 1   # damaged: non-zero
    out = capsys.readouterr().out
    assert f"damaged   {bad}: " in out and words in out and f"finished  {bad}" not in out
    # reading it names the file
    with pytest.raises(Exception) as e:
        store.rows() if "cell.json" in words else store.load_arrays(bad)
    assert str(store.cell_dir(bad)) in str(e.value)
    assert len(store.rows(skip_damaged=True)) == (1 if "cell.json" in words else 2)   # rows come from cell.json
    # run moves it to quarantine/ (kept, with the reason) and trains it again
    caplog.set_level(logging.INFO, logger="capslib")
    caplog.clear()
    rep = runner.run_grid(cells, store, show_progress=False, device="cpu", out=io.StringIO())
    assert rep["ran"] == [bad] and store.damaged() == {}
    kept = list(store.quarantine_dir.iterdir())
    assert len(kept) == 1 and kept[0].name.startswith(bad + ".")
    assert words in (kept[0] / "reason.txt").read_text()
    said = [r.getMessage() for r in caplog.records if r.name.startswith("capslib")]   # all the run says
    assert said == [f"cell {bad} was damaged: moved to {kept[0]} (reason.txt says why); it trains again"]


def test_newer_schema_stops_run_in_one_line(tmp_path, monkeypatch, capsys):
    from capslib.cli.main import main
    store, cells = _store_with_cells(tmp_path, monkeypatch)
    _set_json(store.cell_dir(cells[0]) / "cell.json", schema_version=99)
    code = main(["run", "--profile", "quick", "--methods", "cnn", "--classes", "0", "--results-root",
                 str(store.root), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "schema_version 99 is newer than this capslib reads (1): update capslib" in err
    assert store.is_done(cells[0]) and not store.quarantine_dir.exists()   # not ours to move


def test_schema_1_cells_of_older_code_are_read(tmp_path, monkeypatch):
    """Cells written before the precision column (schema 1, no 'precision' in rows) stay valid."""
    store, cells = _store_with_cells(tmp_path, monkeypatch, n=1)
    path = store.cell_dir(cells[0]) / "cell.json"
    doc = json.loads(path.read_text())
    for r in doc["rows"]:
        r.pop("precision", None)
    path.write_text(json.dumps(doc))
    assert store.check_cell(cells[0]) is None
    assert store.load_cell(cells[0])["rows"][0]["precision"] == "fp32"


def test_registered_migration_is_applied(tmp_path, monkeypatch):
    from capslib.run.store import schema as store_mod
    store, cells = _store_with_cells(tmp_path, monkeypatch, n=1)
    path = store.cell_dir(cells[0]) / "cell.json"
    doc = json.loads(path.read_text())
    rows = doc.pop("rows")
    path.write_text(json.dumps({**doc, "schema_version": 0, "results": rows}))   # a made-up older layout
    monkeypatch.setitem(store_mod.MIGRATIONS, 0, lambda d: {**{k: v for k, v in d.items() if k != "results"},
                                                             "rows": d["results"], "schema_version": 1})
    derived = store_mod.derived_columns(doc)            # the columns a read adds to every row
    assert store.check_cell(cells[0]) is None and store.load_cell(cells[0])["rows"] == [{**r, **derived} for r in rows]


def test_fast_path_trains_only_unclaimed_cells(tmp_path, tiny_splits):
    """The stacked (GPU) path claims each cell of a group too: a cell another run holds is left to it."""
    from capslib.run.runner import run_grid
    cells = GridRequest(profile="quick", protocol="imbalanced", methods="capsnet", classes=0, fractions=0.1,
                        epochs=1).cells()
    assert len(cells) == 2
    store = ResultsStore(tmp_path / "res", "quick")
    store.locks_dir.mkdir(parents=True)
    other = locks.try_lock(store.locks_dir / cells[0].cell_id)    # another run holds cells[0]
    try:
        rep = run_grid(cells, store, show_progress=False, device="cpu", fast=True)
    finally:
        other.release()
    assert rep["elsewhere"] == [cells[0].cell_id] and rep["ran"] == [cells[1].cell_id]
    assert store.finished_ids() == [cells[1].cell_id]


def test_commit_is_dirty_for_code_changes_not_for_moved_results(tmp_path):
    import subprocess
    from capslib.core.provenance import git_commit
    git = lambda *a: subprocess.run(["git", "-C", str(tmp_path), *a], check=True, capture_output=True)
    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "cell.json").write_text("{}")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    clean = git_commit(tmp_path)
    assert len(clean) == 12 and not clean.endswith("-dirty")
    (tmp_path / "results" / "cell.json").unlink()                  # what gpu_window.sh prepare does
    assert git_commit(tmp_path) == clean
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == clean + "-dirty"


def test_a_process_keeps_the_commit_it_started_with(monkeypatch):
    """A commit made while a long run trains does not relabel the cells it writes."""
    import capslib.core.provenance as store
    monkeypatch.setattr(store, "_PROCESS_COMMIT", [])
    answers = iter(["aaaaaaaaaaaa", "bbbbbbbbbbbb"])
    monkeypatch.setattr(store, "_read_commit", lambda here: next(answers))
    assert store.git_commit() == "aaaaaaaaaaaa"
    assert store.git_commit() == "aaaaaaaaaaaa"                 # the checkout moved on; the process did not
    assert store.provenance("cpu")["commit"] == "aaaaaaaaaaaa"


def test_results_root_is_one_stated_place_whatever_the_working_folder(tmp_path, monkeypatch, caplog):
    """No folder named: $CAPSLIB_RESULTS, else this checkout's results/, else the user's data folder;
    never the working folder. The place is logged once."""
    from pathlib import Path
    import capslib.run.store.root as where
    caplog.set_level(logging.INFO, logger="capslib")
    monkeypatch.setattr(where, "_SAID", set())
    monkeypatch.delenv("CAPSLIB_RESULTS", raising=False)
    monkeypatch.chdir(tmp_path)
    checkout_results = Path(__file__).resolve().parents[1] / "results"
    assert where.results_root() == where.results_root() == checkout_results
    assert where.results_root("elsewhere") == Path("elsewhere")
    monkeypatch.setenv("CAPSLIB_RESULTS", str(tmp_path / "env"))
    assert where.results_root() == tmp_path / "env"
    monkeypatch.delenv("CAPSLIB_RESULTS")
    monkeypatch.setattr(where, "CHECKOUT", tmp_path)                 # an installed wheel: no pyproject.toml above
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert where.checkout() is None and where.results_root() == tmp_path / "data" / "capslib" / "results"
    said = [r.getMessage() for r in caplog.records if r.name == "capslib.run.store.root"]
    assert said == [f"results root: {checkout_results} (this checkout's results/)",
                    f"results root: {tmp_path / 'env'} ($CAPSLIB_RESULTS)",
                    f"results root: {tmp_path / 'data' / 'capslib' / 'results'} (capslib runs from no checkout; "
                    "set $CAPSLIB_RESULTS or pass --results-root)"]
