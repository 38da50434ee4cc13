"""Bad input at the door: each plain mistake gets one line on stderr and a non-zero exit before
any work starts, and leaves the store and the user's files byte for byte as they were."""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from capslib.cli.main import main
from capslib.core.config import CellSpec
from capslib.core.errors import ConfigError, DataError
from capslib.data.datasets import load_dataset, raw_idx_arrays
from capslib.data.folder.export import MANIFEST, write_example_folder
from capslib.run.store.results import ResultsStore

from test_data import make_fake_mnist, write_idx

CELL = dict(protocol="imbalanced", dataset="mnist", variant="standard", normal_class=3, anomaly_fraction=0.01)


def snapshot(*roots: Path) -> dict:
    """Every file under ``roots`` (or the file itself) with its SHA-256."""
    out = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        out.update({str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files})
    return out


# what each case gets, as the tests saw it: book/bad_input.md is this list, rendered
SEEN: list[dict] = []
pytestmark = pytest.mark.xdist_group("test_errors")   # the table needs every case in one process
TABLE = Path(__file__).resolve().parent.parent / "book" / "bad_input.md"


def _plain(text: str, tmp: Path) -> str:
    return text.replace(str(tmp), "DIR").replace(str(Path.cwd()), ".")


def one_line(capsys, *args, case: str = "", tmp: Path = Path("/nonexistent")) -> tuple[int, str]:
    code = main(list(args))
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    if case:
        SEEN.append({"case": case, "command": _plain("capslib " + " ".join(args), tmp), "exit": code,
                     "says": _plain(err, tmp)})
    return code, err


def refused(case: str, call, error=ConfigError, tmp: Path = Path("/nonexistent")) -> str:
    """A Python API call that must raise ``error``; its message, recorded."""
    with pytest.raises(error) as e:
        call()
    SEEN.append({"case": case, "command": "(Python)", "exit": "", "says": _plain(f"{error.__name__}: {e.value}", tmp)})
    return str(e.value)


# ---- a cell's identity -------------------------------------------------------------------------

def test_every_setting_that_changes_training_is_in_the_id_or_refused():
    base = CellSpec(**CELL)
    assert CellSpec(**CELL, lr=0.5).cell_id != base.cell_id
    assert CellSpec(**CELL, lr_decay=0.5).cell_id != base.cell_id
    assert CellSpec(**CELL, lr=1e-3, lr_decay=1.0).cell_id == base.cell_id       # the paper's values: the same cell
    for bad in ({"lr": math.nan}, {"lr": math.inf}, {"lr": 0}, {"lr_decay": math.nan}, {"lr_decay": -1},
                {"lr_decay": 0}, {"lr_decay": 1.5}):
        key, value = next(iter(bad.items()))
        refused(f"CellSpec({key}={value})", lambda: CellSpec(**CELL, **bad))
    assert "names a class twice" in refused("CellSpec(held_out=(9, 9))",
                                            lambda: CellSpec("novelty", "mnist", held_out=(9, 9)))


# ---- data files that are not what their names say ---------------------------------------------

def _swap(root: Path, over: str, src: str) -> Path:
    raw = root / "MNIST" / "raw"
    (raw / over).write_bytes((raw / src).read_bytes())
    return raw / over


@pytest.mark.parametrize("over,src", [("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                                      ("train-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz")])
def test_a_data_file_copied_over_another_is_named_and_nothing_is_packed(tmp_path, capsys, over, src):
    root = make_fake_mnist(tmp_path / "data")
    bad = _swap(root, over, src)
    with pytest.raises(DataError, match="not the (images|labels) it is named"):
        raw_idx_arrays("mnist", root)
    before = snapshot(tmp_path)
    what = f"{over} holds the {'labels' if 'labels' in src else 'images'}"
    code, err = one_line(capsys, "pack-data", "--data-root", str(root), "--datasets", "mnist", case=what,
                         tmp=tmp_path)
    assert code == 2 and str(bad) in err
    code, err = one_line(capsys, "run", "--profile", "paper", "--dataset", "mnist", "--classes", "0",
                         "--data-root", str(root), "--results-root", str(tmp_path / "res"), "--no-progress",
                         case=what, tmp=tmp_path)
    assert code == 2 and str(bad) in err
    assert snapshot(tmp_path) == before


def test_labels_outside_0_to_9_are_refused(tmp_path):
    root = make_fake_mnist(tmp_path)
    write_idx(root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz", np.full(10000, 42))
    assert "labels up to 42" in refused("test labels outside 0..9", lambda: load_dataset("mnist", root), DataError,
                                            tmp_path)


# ---- paths and devices ---------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["run"], ["status"], ["status", "--summary"], ["book"]])
def test_a_results_root_that_is_a_file(tmp_path, capsys, command):
    f = tmp_path / "results"
    f.write_text("not a folder")
    before = snapshot(tmp_path)
    code, err = one_line(capsys, *command, "--results-root", str(f), case="the results root is a file", tmp=tmp_path)
    assert code != 0 and "is a file, not a folder" in err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command,device,says", [
    (["run"], "tpu", "use cpu or cuda"),
    (["run"], "cuda", "no CUDA device here"),
    (["status", "--summary"], "cuda", "no CUDA device here"),
    (["run"], "cuda:7", "CUDA device"),
])
def test_a_device_that_is_not_here(tmp_path, capsys, command, device, says):
    if torch.cuda.is_available() and says == "no CUDA device here":
        pytest.skip("this machine has CUDA")
    code, err = one_line(capsys, *command, "--device", device, "--results-root", str(tmp_path / "res"),
                         case=f"--device {device} on a machine without it", tmp=tmp_path)
    assert code == 2 and says in err
    assert not (tmp_path / "res").exists()


@pytest.fixture
def folder(tmp_path):
    """A few small images in paper A's layout: any fitted model, or any refused fit, will do here."""
    from test_folder import paper_a
    return paper_a(tmp_path / "images")


def test_fit_onto_a_file_stops_before_training(tmp_path, capsys, folder):
    out = tmp_path / "model"
    out.write_text("mine")
    before = snapshot(tmp_path)
    code, err = one_line(capsys, "fit", str(folder), "--out", str(out), "--epochs", "50", "--device", "cpu",
                         case="fit --out names a file", tmp=tmp_path)
    assert code == 2 and "a file is there" in err and str(out) in err
    assert snapshot(tmp_path) == before


def test_score_into_a_missing_folder_stops_before_scoring(tmp_path, capsys, folder):
    assert main(["fit", str(folder), "--out", str(tmp_path / "model"), "--epochs", "1", "--device", "cpu",
                 "--no-progress"]) == 0
    capsys.readouterr()
    before = snapshot(tmp_path)
    csv = tmp_path / "nowhere" / "scores.csv"
    code, err = one_line(capsys, "score", str(tmp_path / "model"), str(folder / "normal"), "--csv", str(csv),
                         case="score --csv into a missing folder", tmp=tmp_path)
    assert code == 2 and "no folder" in err and str(csv.parent) in err
    assert snapshot(tmp_path) == before


# ---- a damaged store is signalled --------------------------------------------------------------

def _store_with_one_cell(tmp_path):
    from types import SimpleNamespace

    from capslib.run.store.schema import result_rows
    store = ResultsStore(tmp_path / "res", "quick")
    spec = CellSpec("imbalanced", "digits", "cnn", normal_class=0, anomaly_fraction=0.1, epochs=5)
    labels = (np.arange(20) % 2).astype(np.int64)
    res = SimpleNamespace(test_labels=labels, scores={"cnn": labels + 0.5}, thresholds={"cnn": 0.5},
                          train_seconds=0.1)
    prov = {"commit": "x", "device": "cpu", "torch": "x", "finished_utc": "2026-01-01T00:00:00Z"}
    store.write_cell(spec, result_rows(spec, res, prov), {"test_labels": labels}, prov)
    return store, spec


def test_a_row_whose_number_is_text_is_reported_and_status_fails(tmp_path, capsys):
    store, spec = _store_with_one_cell(tmp_path)
    path = store.cell_dir(spec) / "cell.json"
    doc = json.loads(path.read_text())
    doc["rows"][0]["auroc"] = "abc"
    path.write_text(json.dumps(doc))
    assert "auroc is 'abc', not a number" in str(store.check_cell(spec))
    before = snapshot(tmp_path)
    code = main(["status", "--profile", "quick", "--results-root", str(store.root)])
    out = capsys.readouterr().out
    assert code == 1 and f"damaged   {spec.cell_id}" in out and "not a number" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("damaged"))
    SEEN.append({"case": "a row's auroc edited to \"abc\"", "command": "capslib status --results-root DIR/res",
                 "exit": code, "says": _plain(line, tmp_path)})
    assert snapshot(tmp_path) == before


# ---- export-folder never deletes a user's files ------------------------------------------------

def test_export_folder_refuses_a_folder_with_other_files(tmp_path, capsys):
    target = tmp_path / "mine"
    (target / "normal").mkdir(parents=True)
    (target / "keep.txt").write_text("keep")
    (target / "normal" / "mine.png").write_bytes(b"png")
    before = snapshot(tmp_path)
    code, err = one_line(capsys, "export-folder", str(target), "--dataset", "digits", "--normal-class", "0",
                         "--fraction", "0.1", case="export-folder into a folder with the user's files", tmp=tmp_path)
    assert code == 2 and "did not write" in err
    assert snapshot(tmp_path) == before


def test_export_folder_dot_refuses_the_working_folder(tmp_path, capsys, monkeypatch):
    (tmp_path / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    code, err = one_line(capsys, "export-folder", ".", "--dataset", "digits", "--normal-class", "0",
                         case="export-folder . in a folder with the user's files", tmp=tmp_path)
    assert code == 2 and "did not write" in err
    assert snapshot(tmp_path) == before


def test_export_folder_replaces_its_own_export_and_an_interrupted_one_changes_nothing(tmp_path, monkeypatch):
    target = write_example_folder(tmp_path / "ex", "digits", "imbalanced", 0, 0.1)
    assert (target / MANIFEST).exists()
    first = snapshot(tmp_path)
    assert write_example_folder(target, "digits", "imbalanced", 0, 0.1) == target   # its own: replaced
    assert snapshot(tmp_path) == first

    import capslib.data.folder.export as export
    calls = {"n": 0}
    real = export.save_image

    def interrupted(x, path):
        calls["n"] += 1
        if calls["n"] == 50:
            raise KeyboardInterrupt
        real(x, path)
    monkeypatch.setattr(export, "save_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_example_folder(target, "digits", "imbalanced", 1, 0.1)
    assert snapshot(tmp_path) == first and sorted(p.name for p in tmp_path.iterdir()) == ["ex"]


def render(seen: list[dict]) -> str:
    head = ("<!-- written by tests/test_errors.py from what its cases saw; do not edit "
            "(CAPSLIB_WRITE_BAD_INPUT=1 rewrites it) -->\n\n"
            "| bad input | command | exit | what it says (one line) |\n|---|---|---|---|\n")
    esc = lambda t: str(t).replace("|", "\\|")
    return head + "".join(f"| {esc(r['case'])} | `{esc(r['command'])}` | {r['exit']} | {esc(r['says'])} |\n"
                          for r in seen)


def test_the_bad_input_table_is_what_these_tests_saw(request):
    """book/bad_input.md (included in the methods chapter) is this module's cases, as seen."""
    tests = {n for n in dir(request.module) if n.startswith("test_")}
    selected = {getattr(i, "originalname", i.name) for i in request.session.items if i.module is request.module}
    if tests - selected or len(SEEN) < 25:      # a partial run (-k), or cases skipped (a CUDA machine)
        pytest.skip("the table needs every case of this module in the same run")
    text = render(SEEN)
    if os.environ.get("CAPSLIB_WRITE_BAD_INPUT") == "1":
        TABLE.write_text(text)
    assert TABLE.exists() and TABLE.read_text() == text, (
        "book/bad_input.md differs from what the cases saw: CAPSLIB_WRITE_BAD_INPUT=1 pytest tests/test_errors.py")
