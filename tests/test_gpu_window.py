"""The GPU window's script on the CPU: prepare → window (forced fallback: plain-path
workers sharing the grid) → restore → unpack, on a throwaway copy of the project with a
small committed store, one-epoch digits cells and a tiny data pack."""
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from capslib.data.pack import pack_dataset, read_pack

ROOT = Path(__file__).resolve().parents[1]


def _sh(args, cwd, env=None, timeout=1200):
    p = subprocess.run(["bash", "scripts/gpu_window.sh", *args], cwd=cwd, env={**os.environ, **(env or {})},
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout + p.stderr


def _tiny_pack(out: Path, name: str) -> None:
    rng = np.random.default_rng(0)
    arrays = {"train_x": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
              "train_y": np.arange(20, dtype=np.uint8) % 10,
              "test_x": rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
              "test_y": np.arange(10, dtype=np.uint8)}
    pack_dataset(name, arrays, out, preset=1)


@pytest.fixture
def project(tmp_path):
    """A git repository holding this project's code and two committed quick cells."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for part in ("capslib", "scripts", "pyproject.toml", ".gitignore"):
        src = ROOT / part
        (shutil.copytree(src, repo / part, ignore=shutil.ignore_patterns("__pycache__")) if src.is_dir()
         else shutil.copy(src, repo / part))
    (repo / "book" / "paper").mkdir(parents=True)     # a chapter: it stays here while the window runs
    (repo / "book" / "paper" / "chapter.ipynb").write_text("{}")
    old = sorted((ROOT / "results" / "quick" / "cells").iterdir())[:2]
    for d in old:
        shutil.copytree(d, repo / "results" / "quick" / "cells" / d.name)
    for cmd in (["init", "-q"], ["add", "-A"], ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "t"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True)
    for name in ("mnist", "fashion", "kmnist"):
        _tiny_pack(repo / ".devdata" / "pack", name)
    return repo, [d.name for d in old]


def test_pack_round_trip_and_checksum(tmp_path):
    _tiny_pack(tmp_path, "mnist")
    a = read_pack(tmp_path / "mnist.npz.xz", "mnist")
    assert a["train_x"].shape == (20, 28, 28) and a["train_x"].dtype == np.uint8
    from capslib.core.errors import DataError
    with pytest.raises(DataError, match="pack of 'mnist' for 'kmnist'"):
        read_pack(tmp_path / "mnist.npz.xz", "kmnist")
    (tmp_path / "bad.npz.xz").write_bytes(b"xx")
    with pytest.raises(DataError, match="not a readable data pack"):
        read_pack(tmp_path / "bad.npz.xz", "mnist")


@pytest.mark.slow(seconds=50)
def test_window_dry_run_on_cpu_with_forced_fallback(project, tmp_path):
    repo, old = project
    stash = tmp_path / "stash"
    rc, log = _sh(["prepare"], repo, {"WINDOW_STASH": str(stash)})
    assert rc == 0, log
    assert "what travels:" in log and not (repo / "results" / "quick" / "cells").exists()
    assert not (repo / "book").exists()                           # what training does not read stays here
    assert sorted((repo / ".devdata" / "finished.txt").read_text().split()) == old
    rc, again = _sh(["prepare"], repo, {"WINDOW_STASH": str(stash)})
    assert rc == 1 and "already prepared" in again

    out = tmp_path / "out"
    out.mkdir()
    env = {"OUT": str(out), "WINDOW_DEVICE": "cpu", "WINDOW_PROFILE": "quick", "WINDOW_WORKERS": "2",
           "CAPSLIB_WINDOW_FORCE_FALLBACK": "1", "WINDOW_PICK_ARGS": "--steps 1 --models 2 --candidates bf16 --groups 2 --check-epochs 2",
           "WINDOW_PICK_TIMEOUT": "900",
           "CAPSLIB_CACHE": str(tmp_path / "cache")}
    # the window's orchestration does not depend on the method: two CNN cells train in a second where two
    # CapsNet cells take half a minute (the plain path's CapsNet training is tested in tests/test_runner.py
    # and tests/test_checkpoint.py; the plateau study below trains CapsNet replicas on the window's routes)
    rc, log = _sh(["window", "900", "--protocol", "imbalanced", "--classes", "1,2", "--fractions", "0.1",
                   "--methods", "cnn", "--epochs", "1"], repo, env)
    text = (out / "window.log").read_text()
    assert rc == 0, log + text
    assert "decision: plain-workers (CAPSLIB_WINDOW_FORCE_FALLBACK is set)" in text
    assert "training: 2 plain-path workers" in text and "packed 2 cells (fallback)" in text
    files = sorted(p.name for p in out.iterdir())
    assert files == ["bench.tgz", "cells-1.tgz", "window.log"] and len(files) <= 8
    with tarfile.open(out / "cells-1.tgz") as t:
        names = {n.split("/")[1] for n in t.getnames() if n.endswith("cell.json")}
    assert names == {"imbalanced-digits-cnn-n1-f0.1-s0-e1-b32",
                     "imbalanced-digits-cnn-n2-f0.1-s0-e1-b32"}   # each trained once, by one worker

    # the plateau study, there, on tiny replicas: both reports come back in bench.tgz
    plateau_out = tmp_path / "plateau"
    plateau_out.mkdir()
    rc, log = _sh(["plateau", "600", "--cell", "imbalanced-digits-capsnet-standard-n0-f0.01-s0-e5-b32", "--profile",
                   "quick"], repo, {**env, "OUT": str(plateau_out), "WINDOW_GRADCHECK_ARGS": "--steps 2 --routes "
                   "plain-fp32,fast-bf16", "WINDOW_STALLRATE_ARGS": "--replicas 1 --epochs 1 --routes fast-bf16,fast-fp32"})
    text = (plateau_out / "plateau.log").read_text()
    assert rc == 0 and "packed 2 report(s)" in text, log + text
    with tarfile.open(plateau_out / "bench.tgz") as t:
        reports = {Path(n).name.split("-")[0]: json.load(t.extractfile(n)) for n in t.getnames()}
    assert set(reports["gradcheck"]["routes"]) == {"plain-fp32", "fast-bf16"}
    assert set(reports["stallrate"]["routes"]) == {"fast-bf16", "fast-fp32"}
    assert all(r["replicas"] == 1 for r in reports["stallrate"]["routes"].values())

    # back here: restore the stashed cells, unpack the new ones, the store holds both
    shutil.rmtree(repo / "results" / "quick" / "cells")          # the copy that went out is not this store
    rc, log = _sh(["restore"], repo)
    assert rc == 0 and "restored" in log, log
    assert (repo / "book" / "paper" / "chapter.ipynb").read_text() == "{}"
    rc, log = _sh(["restore"], repo)
    assert rc == 0 and "nothing to restore" in log
    rc, log = _sh(["unpack", str(out)], repo, {"WINDOW_PROFILE": "quick"})
    assert rc == 0, log
    have = sorted(p.name for p in (repo / "results" / "quick" / "cells").iterdir())
    assert have == sorted(old + sorted(names))
    assert any((repo / "results" / "bench").glob("window-cpu-*.json"))
    status = subprocess.run(["git", "status", "--porcelain", "results/quick/cells"], cwd=repo,
                            capture_output=True, text=True).stdout
    assert all(line.startswith("??") for line in status.splitlines()), status   # the old cells are back unchanged


def test_prepare_refuses_over_the_limit_naming_the_largest_files(project, tmp_path):
    repo, _ = project
    rc, log = _sh(["prepare"], repo, {"WINDOW_STASH": str(tmp_path / "stash"), "WINDOW_LIMIT_MIB": "0"})
    assert rc == 1 and "over 0 MiB" in log and "the largest of what would travel:" in log, log
    assert ".devdata/pack/" in log.split("the largest of what would travel:")[1]
    rc, log = _sh(["restore"], repo)
    assert rc == 0 and (repo / "book" / "paper" / "chapter.ipynb").exists() and (repo / "results" / "quick" / "cells").is_dir()
