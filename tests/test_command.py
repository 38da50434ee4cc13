"""The ``capslib`` command: the study's commands and the measurement tools under one name."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from capslib.__main__ import TOOLS, main


def test_help_lists_the_commands_and_the_tools(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(cmd in out for cmd in ("run", "status", "book", "fit", "score", "export-folder"))
    assert all(f"  {tool}" in out for tool in TOOLS)


def test_a_tool_runs_under_the_command(capsys):
    for tool in TOOLS:
        with pytest.raises(SystemExit) as e:
            main([tool, "--help"])
        assert e.value.code == 0 and "usage:" in capsys.readouterr().out
    assert main(["stallrate", "--routes", "gpu-magic", "--device", "cpu"]) == 2


def test_the_console_script_is_installed():
    """pip puts the script beside the interpreter it installs into (a shim may front it on PATH)."""
    here = Path(sys.executable).parent / "capslib"
    exe = str(here) if here.exists() else shutil.which("capslib")
    if exe is None:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail("no capslib command on PATH after pip install -e . (CI=true)")
        pytest.skip("no capslib command on PATH: pip install -e .")
    p = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "stallrate" in p.stdout and "export-folder" in p.stdout


def test_verbose_and_quiet_set_what_the_library_logging_shows(capsys):
    """The library logs; the command line shows INFO and up, DEBUG with -v, only warnings with -q,
    the flag given before or after the command's name, or before a tool's."""
    import logging
    from capslib.cli import logs
    from capslib.cli.main import build_parser
    flags = lambda *argv: (lambda a: (a.verbose, a.quiet))(build_parser().parse_args(list(argv)))
    assert flags("status") == (False, False)
    assert flags("-q", "status") == flags("status", "--quiet") == (False, True)
    assert flags("--verbose", "run") == flags("run", "-v") == (True, False)
    assert logs.split_leading_flags(["-q", "stallrate", "-v"]) == ("quiet", ["stallrate", "-v"])
    top = logging.getLogger("capslib")
    before = (top.level, list(top.handlers))
    log = logging.getLogger("capslib.run.runner")
    try:
        for given, shown in (({}, ["info", "warning"]), ({"quiet": True}, ["warning"]),
                             ({"verbose": True}, ["debug", "info", "warning"])):
            logs.configure(**given)
            for level in ("debug", "info", "warning"):
                getattr(log, level)(level)
            assert capsys.readouterr().err.splitlines() == shown, given
        assert sum(isinstance(h, logs.StderrHandler) for h in top.handlers) == 1   # configured thrice, one handler
        assert main(["-q", "stallrate", "--routes", "gpu-magic", "--device", "cpu"]) == 2
        assert top.level == logging.WARNING
    finally:
        top.setLevel(before[0])
        top.handlers[:] = before[1]
