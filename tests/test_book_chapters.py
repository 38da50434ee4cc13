"""What capslib.book.execute does to an executed chapter: its title names the profile, the
book shows the parameters once; and --skip-execute with no executed chapters says what to run."""
from __future__ import annotations

import nbformat
import pytest

from capslib.book import build, common, overview
from capslib.book import execute as executing


def _executed(path, injected=True):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# ROC curves\n\nPaper A's Fig. 2 ..."),
                nbformat.v4.new_code_cell('profile = "quick"', metadata={"tags": ["parameters"]})]
    if injected:
        nb.cells.append(nbformat.v4.new_code_cell('# Parameters\nprofile = "paper"\n',
                                                  metadata={"tags": ["injected-parameters"]}))
    nb.cells += [nbformat.v4.new_markdown_cell("## A section\n\n# not a title: a later H1 stays as it is"),
                 nbformat.v4.new_code_cell("print(profile)")]
    nbformat.write(nb, str(path))
    return path


def test_executed_chapter_names_its_profile_and_shows_parameters_once(tmp_path):
    path = _executed(tmp_path / "roc_curves.ipynb")
    executing.finish_chapter(path, "paper")
    executing.finish_chapter(path, "paper")       # twice: the same chapter (no second suffix, no second tag)
    nb = nbformat.read(str(path), as_version=4)
    assert nb.cells[0].source.splitlines()[0] == "# ROC curves (paper profile)"
    assert nb.cells[0].source.endswith("Paper A's Fig. 2 ...")
    assert nb.cells[1].metadata["tags"] == ["parameters", "remove-cell"]          # the default, hidden
    assert nb.cells[2].metadata["tags"] == ["injected-parameters"]                # the values used, shown
    assert nb.cells[3].source.endswith("# not a title: a later H1 stays as it is")
    assert overview._chapter_title(path) == "ROC curves (paper profile)"


def test_parameters_stay_shown_where_none_were_injected(tmp_path):
    path = _executed(tmp_path / "roc_curves.ipynb", injected=False)
    executing.finish_chapter(path, "quick")
    nb = nbformat.read(str(path), as_version=4)
    assert nb.cells[0].source.startswith("# ROC curves (quick profile)\n")
    assert nb.cells[1].metadata["tags"] == ["parameters"]


def _root(tmp_path):
    for name in ("_config.yml", "_toc.yml"):
        (tmp_path / name).write_text("{}\n")
    (tmp_path / "notebooks").mkdir()
    return tmp_path


def test_skip_execute_without_chapters_says_what_to_run(tmp_path):
    root = _root(tmp_path)
    with pytest.raises(common.BookError) as e:
        build.build("quick", results_root=str(root / "results"), skip_execute=True, root=str(root))
    msg = str(e.value)
    assert "no executed chapters in book/quick/" in msg and "not committed" in msg
    assert "`python -m capslib book --profile quick`" in msg, msg
    with pytest.raises(common.BookError) as e:
        build.build("paper", results_root=str(root / "elsewhere"), skip_execute=True, root=str(root))
    assert "`python -m capslib book --profile paper --results-root elsewhere`" in str(e.value)


def test_skip_execute_without_chapters_in_the_cli_is_one_line(tmp_path, capsys):
    import subprocess
    import sys
    root = _root(tmp_path)
    r = subprocess.run([sys.executable, "-m", "capslib", "book", "--profile", "quick", "--skip-execute",
                        "--root", str(root)], capture_output=True, text=True, cwd=root, timeout=300)
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error: --skip-execute: no executed chapters in book/quick/"), r.stderr
    assert "python -m capslib book --profile quick" in lines[-1]
    assert "Traceback" not in r.stderr
