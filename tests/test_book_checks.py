"""`book` at the door: a known profile, a readable store, no silent training, advice that runs,
and errors inside papermill shown as one line."""
import json
import shlex
import shutil
from pathlib import Path

import pytest

import capslib.run.runner as runner
from capslib.study.profiles import PROFILES
from capslib.book import build, common, overview
from capslib.book import execute as executing
from capslib.cli.main import build_parser, main
from capslib.cli.grid import grid_from_args

from test_store import _store_with_cells, _truncate

REPO = Path(__file__).resolve().parent.parent


def book_root(tmp_path) -> Path:
    """A copy of the book's sources (config, toc, notebooks) to execute into."""
    root = tmp_path / "bookroot"
    root.mkdir()
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    return root


def suggested_command_runs(message: str) -> None:
    """The `python -m capslib ...` command quoted in ``message`` parses and names a grid."""
    cmd = shlex.split(message.split("`")[1])
    assert cmd[:3] == ["python", "-m", "capslib"]
    args = build_parser().parse_args(cmd[3:])
    assert grid_from_args(args).cells()


def test_unknown_profile_one_line(capsys, tmp_path):
    assert main(["book", "--profile", "huge", "--results-root", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == "error: unknown profile 'huge'; choose one of quick, paper"


@pytest.mark.parametrize("make_empty_profile", [False, True])
def test_empty_store_suggests_a_command_that_runs(capsys, tmp_path, monkeypatch, make_empty_profile):
    monkeypatch.setattr(runner, "run_grid", lambda *a, **k: pytest.fail("book trained"))
    results = tmp_path / "res"
    if make_empty_profile:
        (results / "quick" / "cells").mkdir(parents=True)
    assert main(["book", "--profile", "quick", "--results-root", str(results), "--root", str(REPO)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"error: no results for profile 'quick' under {results}: run `python -m capslib run "
                   f"--profile quick --results-root {results}` first, or pass --train")
    suggested_command_runs(err)


def test_damaged_store_named_before_executing(tmp_path, monkeypatch):
    store, cells = _store_with_cells(tmp_path, monkeypatch, n=1)
    _truncate(store.cell_dir(cells[0]) / "cell.json")
    with pytest.raises(common.BookError) as e:
        build.check_store("quick", store.root, None, train=False)
    msg = str(e.value)
    assert str(store.cell_dir(cells[0]) / "cell.json") in msg and "not valid JSON" in msg and "\n" not in msg
    suggested_command_runs(msg)


def test_the_training_guard_patches_what_book_calls(tmp_path, monkeypatch):
    """The tests above forbid training by patching ``runner.run_grid``: ``book --train`` does call
    that very name (else the guard would pass without guarding anything)."""
    store, cells = _store_with_cells(tmp_path, monkeypatch, n=1)
    monkeypatch.setattr(runner, "run_grid", lambda *a, **k: pytest.fail("book trained"))
    with pytest.raises(pytest.fail.Exception, match="book trained"):
        build.check_store("quick", store.root, None, train=True)


def test_book_reports_missing_cells_and_notebooks_only_read(tmp_path, monkeypatch, capsys):
    store, cells = _store_with_cells(tmp_path, monkeypatch, n=2)
    monkeypatch.setattr(runner, "run_grid", lambda *a, **k: pytest.fail("book trained"))
    build.check_store("quick", store.root, None, train=False)
    out = capsys.readouterr().out
    n = len(PROFILES["quick"].cells())
    assert f"note: {n - 2} of the {n} cells of profile 'quick' are missing; the chapters list them." in out
    suggested_command_runs(out)
    root, seen = book_root(tmp_path), {}

    def fake_run(src, dst, params, cwd, name=""):
        seen[src.stem] = params
        shutil.copy(src, dst)
    monkeypatch.setattr(executing, "run_notebook", fake_run)
    monkeypatch.setattr(executing, "ensure_kernel", lambda: None)
    executing.execute(root, "quick", store.root, None, only=["novelty_auroc", "roc_curves"])
    assert {k: v["train"] for k, v in seen.items()} == {"novelty_auroc": False, "roc_curves": False}


def test_params_yml_unknown_parameter_one_line(tmp_path):
    root = book_root(tmp_path)
    (root / "notebooks" / "params.yml").write_text("quick:\n  novelty_auroc: {clases: 3}\n")
    with pytest.raises(common.BookError) as e:
        executing.execute(root, "quick", tmp_path, None)
    assert str(e.value).startswith("notebooks/params.yml: quick.novelty_auroc sets clases, which the notebook "
                                   "does not know; it knows data_root, datasets, epochs,")


def test_skip_execute_overview_shows_the_store_the_chapters_read(tmp_path, monkeypatch):
    store, cells = _store_with_cells(tmp_path, monkeypatch, n=2)
    root = book_root(tmp_path)
    chapters = root / "book" / "quick"
    chapters.mkdir(parents=True)
    nb = json.loads((root / "notebooks" / "novelty_auroc.ipynb").read_text())
    nb["metadata"]["papermill"] = {"parameters": {"profile": "quick", "results_root": str(store.root)}}
    (chapters / "novelty_auroc.ipynb").write_text(json.dumps(nb))
    text = overview.write_overview(root, tmp_path / "empty").read_text()
    quick = text.split("## Profile `quick`")[1].split("## Profile")[0]
    n = len(PROFILES["quick"].cells())
    assert "No results" not in quick and f"2 of the {n} cells of the profile's grid are finished" in quick


def test_papermill_error_is_one_line(tmp_path):
    """A real papermill run given an unknown parameter: the build shows the notebook's one line."""
    with pytest.raises(Exception) as e:
        executing.run_notebook(REPO / "notebooks" / "novelty_auroc.ipynb", tmp_path / "out.ipynb",
                          {"results_root": str(tmp_path), "clases": 3}, cwd=tmp_path)
    what = executing._describe_failure(e.value)
    assert what.endswith("ConfigError: unknown parameter 'clases' for this notebook; it knows data_root, datasets, "
                         "epochs, extra_held_outs, held_outs, methods, profile, results_root, seeds, train")
    out = json.loads((tmp_path / "out.ipynb").read_text())
    tracebacks = [o["traceback"] for c in out["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert len(tracebacks) == 1 and len(tracebacks[0]) == 1   # one line in the notebook too


def test_your_images_is_a_quick_chapter_only():
    root = common.find_root(None)
    quick = {p.stem for p in executing.chapters_for(root, "quick")}
    paper = {p.stem for p in executing.chapters_for(root, "paper")}
    assert "your_images" in quick and "your_images" not in paper and paper == quick - {"your_images"}


def test_the_status_glue_is_the_record_myst_nb_writes():
    """The overview's glued status lines: the output the chapter publishes is the one
    ``myst_nb.glue(name, HTML(...), display=False)`` publishes, which ``{glue}`` reads."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.display import HTML
    from IPython.utils.capture import capture_output
    from myst_nb import glue
    from traitlets.config import Config
    from capslib.views.status import glue_html
    config = Config()
    config.HistoryManager.hist_file = ":memory:"      # no history file written under ~/.ipython
    InteractiveShell.instance(config=config)
    try:
        with capture_output() as theirs:
            glue("status_text", HTML("<p>paper A 3 of 4 cells</p>"), display=False)
        with capture_output() as ours:
            glue_html("status_text", "<p>paper A 3 of 4 cells</p>")
    finally:
        InteractiveShell.clear_instance()
    assert len(ours.outputs) == len(theirs.outputs) == 1
    assert ours.outputs[0].data == theirs.outputs[0].data and ours.outputs[0].metadata == theirs.outputs[0].metadata
