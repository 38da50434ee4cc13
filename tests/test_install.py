"""An install test: capslib installed, without network, into a fresh virtual environment, and its
``capslib`` console script run from there.

The environment sees this interpreter's packages (``--system-site-packages``: torch and the rest
are not downloaded again) and gets capslib itself from a copy of this checkout's project files
(pyproject.toml, README.md, capslib/), built there with this interpreter's setuptools
(``pip install --no-deps --no-build-isolation --no-index``): a build writes into its source
folder (``build/``, ``capslib.egg-info/``), so the copy keeps this checkout as it is. A few
seconds; ``-m install`` runs it alone, ``-m "not install"`` leaves it out."""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from capslib.__main__ import TOOLS
from capslib.cli.main import build_parser

pytestmark = pytest.mark.install

ROOT = Path(__file__).resolve().parent.parent
PROJECT_FILES = ("pyproject.toml", "README.md")       # what the build reads beside the package


def _run(cmd: list, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PIP_INDEX_URL")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv with capslib installed from a copy of this checkout; its folder."""
    for needed in ("pip", "setuptools"):
        if _run([sys.executable, "-c", f"import {needed}"], ROOT).returncode:
            if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
                pytest.fail(f"{needed} is not importable here: an offline install needs it (CI=true)")
            pytest.skip(f"{needed} is not importable here: an offline install needs it")
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    shutil.copytree(ROOT / "capslib", src / "capslib", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in PROJECT_FILES:
        shutil.copy2(ROOT / name, src / name)
    env_dir = tmp / "venv"
    made = _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", env_dir], tmp)
    assert made.returncode == 0, made.stderr
    # pip from the base interpreter's site-packages, run by the venv's python, installs into the venv
    pip = _run([env_dir / "bin" / "python", "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                "-q", src], tmp, timeout=180)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    return env_dir


def test_the_venv_runs_its_own_capslib(venv):
    where = _run([venv / "bin" / "python", "-c", "import capslib; print(capslib.__file__)"], venv.parent)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout     # not this checkout, nor another install


def test_capslib_help_lists_every_command_and_tool(venv):
    p = _run([venv / "bin" / "capslib", "--help"], venv.parent)
    assert p.returncode == 0, p.stderr
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    commands = list(sub.choices)
    assert {"run", "status", "fit", "score", "export-folder"} <= set(commands)
    missing = [c for c in commands if c not in p.stdout] + [t for t in TOOLS if f"  {t}" not in p.stdout]
    assert not missing, f"capslib --help omits {missing}:\n{p.stdout}"


@pytest.mark.parametrize("tool", ["bench", "window"])
def test_a_tool_shows_its_help(venv, tool):
    p = _run([venv / "bin" / "capslib", tool, "--help"], venv.parent)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("usage:") and "Traceback" not in p.stderr
