"""scripts/background_grid.sh replaces the worktree an earlier run of it left, and nothing else:
a folder of the user's named by CAPSLIB_GRID_WORKTREE, a worktree on a branch, one holding files
of its own, or this checkout is refused in one line and left byte for byte as it was.

Each case runs the script in a scratch repository holding a copy of it, with PYTHON=true and
FOREGROUND=1, so that what it would start is `true` and ends at once."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "background_grid.sh"

pytestmark = pytest.mark.skipif(shutil.which("git") is None or shutil.which("pgrep") is None,
                                reason="needs git and pgrep")


def git(*args, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path) -> Path:
    r = tmp_path / "repo"
    (r / "scripts").mkdir(parents=True)
    shutil.copy2(SCRIPT, r / "scripts" / "background_grid.sh")
    (r / ".gitignore").write_text("__pycache__/\n")
    git("init", "-q", cwd=r)
    git("add", ".", cwd=r)
    git("commit", "-q", "-m", "start", cwd=r)
    return r


def grid(repo: Path, wt: Path, **env_vars: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CAPSLIB_GRID_WORKTREE": str(wt), "CAPSLIB_GRID_LOG": str(repo.parent / "grid.log"),
           "PYTHON": "true", "FOREGROUND": "1", **env_vars}
    return subprocess.run(["bash", "scripts/background_grid.sh", "1"], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=60)


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and ".git" not in p.parts}


def refused(p: subprocess.CompletedProcess, says: str) -> None:
    err = p.stderr.strip().splitlines()
    assert p.returncode == 1 and len(err) == 1, p.stderr
    assert err[0].startswith("error: CAPSLIB_GRID_WORKTREE=") and says in err[0] and "nothing was removed" in err[0]


def test_a_users_folder_is_refused_and_kept(repo, tmp_path):
    mine = tmp_path / "my-folder"
    (mine / "sub").mkdir(parents=True)
    (mine / "thesis.tex").write_text("years of work")
    (mine / "sub" / "data.csv").write_text("1,2,3")
    before = snapshot(mine)
    refused(grid(repo, mine), "is not a detached worktree of this repository")
    assert snapshot(mine) == before


def test_a_file_is_refused_and_kept(repo, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    refused(grid(repo, f), "is not a folder")
    assert f.read_text() == "mine"


def test_this_checkout_is_refused(repo):
    before = snapshot(repo)
    refused(grid(repo, repo), "is this checkout")
    assert snapshot(repo) == before


def test_a_worktree_on_a_branch_is_refused_and_kept(repo, tmp_path):
    wt = tmp_path / "feature"
    git("worktree", "add", "-q", "-b", "feature", str(wt), cwd=repo)
    before = snapshot(wt)
    refused(grid(repo, wt), "is not a detached worktree")
    assert snapshot(wt) == before and str(wt) in git("worktree", "list", cwd=repo)


def test_a_worktree_with_files_of_its_own_is_refused_and_kept(repo, tmp_path):
    wt = tmp_path / "grid"
    git("worktree", "add", "-q", "--detach", str(wt), "HEAD", cwd=repo)
    (wt / "results.txt").write_text("not git's")
    before = snapshot(wt)
    refused(grid(repo, wt), "holds changes or files of its own (e.g. results.txt)")
    assert snapshot(wt) == before


def test_the_worktree_an_earlier_run_left_is_replaced_at_this_commit(repo, tmp_path):
    wt = tmp_path / "grid"
    first = grid(repo, wt)                             # none there yet: made
    assert first.returncode == 0, first.stderr
    (wt / "scripts" / "__pycache__").mkdir()
    (wt / "scripts" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"cache")   # Python's cache: fine
    (repo / "new.txt").write_text("a later commit")
    git("add", "new.txt", cwd=repo)
    git("commit", "-q", "-m", "later", cwd=repo)
    again = grid(repo, wt)
    assert again.returncode == 0, again.stderr
    assert (wt / "new.txt").read_text() == "a later commit" and not (wt / "scripts" / "__pycache__").exists()
    head = git("rev-parse", "HEAD", cwd=repo).strip()
    assert git("rev-parse", "HEAD", cwd=wt).strip() == head
    assert "exit 0" in (tmp_path / "grid.log").read_text()


def test_a_named_commit_runs_there_and_a_name_that_is_no_commit_is_refused(repo, tmp_path):
    """CAPSLIB_GRID_COMMIT: the run uses that commit's code (to finish a cell checkpointed by
    older training code), and says so; a name that is no commit is refused in one line."""
    first = git("rev-parse", "HEAD", cwd=repo).strip()
    (repo / "new.txt").write_text("a later commit")
    git("add", "new.txt", cwd=repo)
    git("commit", "-q", "-m", "later", cwd=repo)
    wt = tmp_path / "grid"
    p = grid(repo, wt, CAPSLIB_GRID_COMMIT=first[:7])
    assert p.returncode == 0, p.stderr
    assert git("rev-parse", "HEAD", cwd=wt).strip() == first and not (wt / "new.txt").exists()
    assert f"the run uses the code of {first[:12]} (CAPSLIB_GRID_COMMIT)" in p.stderr
    assert f"background grid at {first[:12]}" in (tmp_path / "grid.log").read_text()
    bad = grid(repo, tmp_path / "other", CAPSLIB_GRID_COMMIT="no-such-commit")
    err = bad.stderr.strip().splitlines()
    assert bad.returncode == 1 and err == ["error: CAPSLIB_GRID_COMMIT=no-such-commit is not a commit of this repository"]
    assert not (tmp_path / "other").exists()
