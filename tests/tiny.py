"""Shorter digits splits, for tests whose property does not depend on the data's size (bitwise
resumption, a store's atomicity, a tool's orchestration): every split cut to 16 training and 32
test digits. The ``tiny_splits`` fixture (tests/conftest.py) applies it in a test's process; a
test's driver script applies it in a process of its own with :func:`cut_splits`."""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def shortened(split_for):
    """``split_for`` (capslib.run.runner's), each split it returns cut to its first 12 normal and
    4 anomalous training digits and 16 of each in the test set."""
    from capslib.data.splits import Split

    def short_split(r, data):
        sp = split_for(r, data)
        tr = np.concatenate([np.flatnonzero(sp.train_labels == 0)[:12], np.flatnonzero(sp.train_labels == 1)[:4]])
        te = np.concatenate([np.flatnonzero(sp.test_labels == 0)[:16], np.flatnonzero(sp.test_labels == 1)[:16]])
        return Split(sp.train_idx[tr], sp.train_labels[tr], sp.test_idx[te], sp.test_labels[te])
    return short_split


def cut_splits() -> None:
    """Every split of this process's runs cut (the driver plans them; the units carry them)."""
    import capslib.run.runner as runner
    runner.split_for = shortened(runner.split_for)


ROOT = Path(__file__).resolve().parents[1]
CLI = "import sys, tiny; tiny.cut_splits(); from capslib.cli.main import main; sys.exit(main(sys.argv[1:]))"


def driver_env(**extra) -> dict:
    """The environment of a test's driver process: this one's, with this checkout and tests/ to import from."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), **extra}


def cli(args: list, **popen) -> subprocess.Popen:
    """``python -m capslib ARGS`` in a process of its own, on the short splits."""
    return subprocess.Popen([sys.executable, "-c", CLI, *map(str, args)], env=driver_env(), cwd=ROOT, **popen)


def wait_until_stopped(p: subprocess.Popen, what: str, timeout: float = 600) -> None:
    """Wait until the driver ``p`` has stopped itself (SIGSTOP) at ``what``; fail if it ends or hangs first."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        pid, status = os.waitpid(p.pid, os.WNOHANG | os.WUNTRACED)
        if pid:
            said = p.stderr or p.stdout                    # what the driver printed, where it goes
            assert os.WIFSTOPPED(status), f"the run ended before {what} ({status}): {said.read() if said else ''}"
            return
        time.sleep(0.02)
    raise AssertionError(f"the run did not reach {what} in {timeout} s")
