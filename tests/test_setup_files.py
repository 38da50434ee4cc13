"""The set-up has one source of truth, pyproject.toml: its extras ([project.optional-dependencies])
and its torch ([tool.capslib.setup]: version and CPU wheel index). scripts/build.sh,
environment.yml and the README's install commands must say the same. And build.sh's Debian step
(scripts/debian_packages.sh) needs no chromium: only the browser tests do."""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
try:
    import tomllib
except ModuleNotFoundError:          # Python 3.10
    tomllib = pytest.importorskip("tomli")


def requirement_name(req: str) -> str:
    return re.match(r"[A-Za-z0-9_.-]+", req).group(0).lower()


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def setup(pyproject) -> dict:
    extras = pyproject["project"]["optional-dependencies"]
    s = pyproject["tool"]["capslib"]["setup"]
    return {"extras": set(extras), "torch": s["torch"], "index": s["torch-cpu-index"]}


def extras_of(command: str) -> set[str]:
    """The extras of a ``pip install -e ".[a,b]"`` (or ``-e .[a,b]``)."""
    m = re.search(r"-e\s+\"?\.\[([^\]]*)\]", command)
    assert m, command
    return {e.strip() for e in m.group(1).split(",")}


def test_build_sh_installs_every_extra_and_the_cpu_torch(setup):
    text = (ROOT / "scripts" / "build.sh").read_text()
    values = dict(re.findall(r'^(EXTRAS|TORCH_VERSION|TORCH_CPU_INDEX)="([^"]*)"$', text, re.M))
    assert set(values["EXTRAS"].split(",")) == setup["extras"]
    assert values["TORCH_VERSION"] == setup["torch"] and values["TORCH_CPU_INDEX"] == setup["index"]
    # and it uses them: torch from the CPU index, then capslib with those extras
    assert '$PY -m pip install "torch==$TORCH_VERSION" --extra-index-url "${TORCH_INDEX_URL:-$TORCH_CPU_INDEX}"' in text
    assert '$PY -m pip install -e ".[$EXTRAS]"' in text
    assert text.index("torch==$TORCH_VERSION") < text.index('-e ".[$EXTRAS]"')     # torch first: pip keeps it
    assert "bash scripts/debian_packages.sh" in text


def test_environment_yml_has_pyproject_s_packages_and_torch(setup, pyproject):
    yaml = pytest.importorskip("yaml")
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {requirement_name(d): d for d in env["dependencies"] if isinstance(d, str)}
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip == [f"--extra-index-url {setup['index']}", f"torch=={setup['torch']}", pip[2]]
    assert extras_of(pip[2]) == setup["extras"]
    wanted = list(pyproject["project"]["dependencies"]) + [r for rs in pyproject["project"]["optional-dependencies"].values()
                                                           for r in rs]
    for req in wanted:
        name = requirement_name(req)
        if name == "torch":
            continue                                  # pip's, pinned above
        names = ["dask", "distributed"] if req.startswith("dask[distributed]") else [name]
        spec = re.sub(r"^[A-Za-z0-9_.-]+(\[[^\]]*\])?", "", req).replace(" ", "")
        for n in names:
            assert n in conda, f"environment.yml lacks {n} ({req} in pyproject.toml)"
            assert conda[n].replace(" ", "").endswith(spec), f"{conda[n]!r} vs pyproject's {req!r}"


def test_readme_install_commands_agree(setup):
    text = (ROOT / "README.md").read_text()
    commands = re.findall(r"pip install -e \"?\.\[[^\]]*\]\"?", text)
    assert commands, "the README gives no install command"
    for c in commands:
        assert extras_of(c) == setup["extras"], c
    assert f"PyTorch {setup['torch']}'s CPU build" in text and setup["index"] in text
    assert "bash scripts/build.sh" in text and "conda env create -f environment.yml" in text
    named = set(re.findall(r"`((?:capslib|scripts|tests|notebooks)/[\w/.-]+\.(?:py|sh|ipynb))`", text))
    assert named and [p for p in sorted(named) if not (ROOT / p).exists()] == []   # every file it names is there


# ---- build.sh's Debian step without chromium --------------------------------------------------

def run_debian_step(tmp_path, programs: dict[str, str], **env) -> subprocess.CompletedProcess:
    """scripts/debian_packages.sh with PATH holding only ``programs`` (name -> what it prints)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, says in programs.items():
        exe = bin_dir / name
        exe.write_text(f"#!/bin/sh\necho '{says}'\n")
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return subprocess.run([shutil.which("bash"), str(ROOT / "scripts" / "debian_packages.sh")],
                          env={"PATH": str(bin_dir), "HOME": str(tmp_path), **env},
                          capture_output=True, text=True, timeout=60)


def test_debian_step_without_chromium_says_the_browser_tests_skip(tmp_path):
    p = run_debian_step(tmp_path, {"npm": "10.0.0"}, SKIP_APT="1")
    assert p.returncode == 0, p.stderr
    said = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.strip()]
    assert said == ["no chromium (SKIP_APT=1): the browser tests will skip; the study and the book need none"]


def test_debian_step_finds_chromium_on_path_or_where_capslib_chromium_says(tmp_path):
    p = run_debian_step(tmp_path, {"npm": "10.0.0", "chromium": "Chromium 1.2.3"}, SKIP_APT="1")
    assert p.returncode == 0 and "chromium: Chromium 1.2.3" in p.stdout and "skip" not in p.stdout
    p = run_debian_step(tmp_path, {"npm": "10.0.0", "chromium": "Chromium 1.2.3"}, SKIP_APT="1",
                        CAPSLIB_CHROMIUM=str(tmp_path / "nowhere"))
    assert p.returncode == 0 and "the browser tests will skip" in p.stdout and "nowhere is not there" in p.stdout


def test_debian_step_without_npm_stops_the_build(tmp_path):
    p = run_debian_step(tmp_path, {"chromium": "Chromium 1.2.3"}, SKIP_APT="1")
    assert p.returncode != 0
    assert p.stderr.strip().startswith("error: npm not found and SKIP_APT=1")
