import multiprocessing as mp
import os
import shutil
import sys
from pathlib import Path
from typing import Optional

import pytest
import torch

# two threads in one process, or (pytest-xdist, scripts/test.sh) one per worker; the processes a test
# starts (Jupyter kernels, CLI runs, window workers) get the same, so that no torch operation spreads
# over threads that busy workers keep waiting (OpenMP waits for its slowest thread)
THREADS = max(1, min(2, os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
torch.set_num_threads(THREADS)
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
# jsonschema (under nbformat) imports the optional rfc3987_syntax, when installed, for its "iri"
# format check, and building that package's grammar costs each test process 1-4 s of CPU. No test
# validates an IRI, so the test processes go without it (jsonschema skips the check); the processes
# they start (kernels, CLI runs, the book build) import it as usual.
sys.modules.setdefault("rfc3987_syntax", None)
# A notebook cell of these tests takes well under a minute. A kernel that stops answering is given
# up after 4 minutes and the notebook run once more with a fresh kernel
# (capslib.book.execute.run_notebook), not after the 20 minutes a cell of the book's build may take
# (the `capslib book` runs the tests start read it too)
os.environ.setdefault("CAPSLIB_CELL_TIMEOUT", "240")

# Processes the tests start through multiprocessing (concurrent runs, Dask's local workers) are forked
# from one fork server per test process, which has imported these once and never run an operation (no
# torch/OpenMP state to inherit), so that each starts in a fraction of a second instead of importing
# torch and scikit-learn again. The server starts with the first such process.
FORK_SERVER_PRELOAD = ["torch", "sklearn.linear_model", "capslib.run.runner", "capslib.run.execute", "distributed"]
FORK_SERVER = mp.get_context("forkserver")
FORK_SERVER.set_forkserver_preload(FORK_SERVER_PRELOAD)      # a module that is not installed is skipped


@pytest.fixture
def dask_workers_from_the_fork_server():
    """Dask's local workers forked from :data:`FORK_SERVER` (Dask's default starts each by spawn);
    nothing where the cluster extra is not installed. A forked worker has the fork server's
    environment, so the variables a test sets (its checkpoint cache, its marks folder) are passed
    on by name: each worker's nanny sets them to their values when the cluster starts."""
    try:
        import dask
        from distributed.utils import get_mp_context
    except ImportError:
        yield
        return
    names = {k for k in os.environ if k.startswith("CAPSLIB_")} | {"CAPSLIB_TEST_MARKS", "PYTHONPATH"}
    with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver",
                          "distributed.nanny.environ": {k: "" for k in sorted(names)}}):
        assert get_mp_context() is FORK_SERVER          # Dask sets its own preload list once, first
        FORK_SERVER.set_forkserver_preload(FORK_SERVER_PRELOAD)
        yield


@pytest.fixture
def digits():
    from capslib.data.datasets import load_dataset
    return load_dataset("digits")


@pytest.fixture
def one_thread():
    """Torch on one thread for the test (tensors as small as the shrunken CapsNets' run fastest
    so, and do not stall behind a busy second core); a module asks for it with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="session")
def _session_checkpoint_cache(tmp_path_factory):
    """The checkpoints of what module- and session-scoped fixtures train (set up before any
    test's own cache) go to a temporary cache too, never ~/.cache/capslib."""
    with pytest.MonkeyPatch.context() as mp_:
        mp_.setenv("CAPSLIB_CACHE", str(tmp_path_factory.mktemp("session-cache")))
        yield


@pytest.fixture(autouse=True)
def _checkpoint_cache(_session_checkpoint_cache, tmp_path_factory, monkeypatch):
    """In-flight checkpoints of every test go to a temporary cache of its own, never ~/.cache/capslib."""
    monkeypatch.setenv("CAPSLIB_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def tiny_splits(monkeypatch):
    """Every split cut to 16 training and 32 test digits (the driver plans them; the units carry
    them): tests/tiny.py."""
    import capslib.run.runner as runner
    from tiny import shortened
    monkeypatch.setattr(runner, "split_for", shortened(runner.split_for))


def chromium_path() -> Optional[str]:
    """The chromium the browser tests drive: $CAPSLIB_CHROMIUM, else `chromium` on PATH (Debian's
    /usr/bin/chromium, which scripts/build.sh installs); None when there is none."""
    given = os.environ.get("CAPSLIB_CHROMIUM")
    if given:
        return given if os.access(given, os.X_OK) else None
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def chromium() -> str:
    """The chromium binary; without one the browser tests skip, saying why. In CI (CI=true) a
    missing chromium fails them, unless the build was told to install no Debian packages (SKIP_APT=1)."""
    path = chromium_path()
    if path is None:
        given = os.environ.get("CAPSLIB_CHROMIUM")
        msg = (f"no browser: CAPSLIB_CHROMIUM={given} is not an executable" if given else
               "no browser: no `chromium` on PATH") + \
              " (Debian's chromium: apt-get install chromium, which scripts/build.sh does unless SKIP_APT=1)"
        if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes") and os.environ.get("SKIP_APT") != "1":
            pytest.fail(msg + " (CI=true)")
        pytest.skip(msg)
    return path


def screenshot(locator, name: str, tmp_path: Path) -> Path:
    """A Playwright locator's screenshot in ``tmp_path``, copied to $CAPSLIB_SCREENSHOTS if set."""
    out = tmp_path / name
    locator.screenshot(path=str(out))
    extra = os.environ.get("CAPSLIB_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, Path(extra) / name)
    return out


@pytest.hookimpl(tryfirst=True)      # before pytest-xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    """The order and grouping pytest-xdist's ``--dist loadgroup`` (scripts/test.sh) hands tests
    out in: the tests of a module that share a module-scoped fixture (a synthetic book, a served
    site, a trained detector) or that mark themselves as one group (``xdist_group``: module
    state) stay together on one worker, so the fixture is built once; every other test goes to
    whichever worker is free. The work units (a group, or a test on its own) are handed out
    longest first, so that the last minutes are not one long test on one worker while the others
    wait: a unit's length is the largest ``seconds`` the ``slow`` markers of its tests state (the
    typical seconds the test, or the whole module where the module is marked, takes in the suite
    on two cores: an ordering hint only), then the other ``slow`` units, then the rest.
    scripts/test.sh keeps this order (``--no-loadscope-reorder``: pytest-xdist would otherwise put
    the units with the most tests first)."""
    shared = {}
    for item in items:
        defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        if item.get_closest_marker("xdist_group") or any(d and d[-1].scope in ("module", "class")
                                                          for d in defs.values()):
            shared.setdefault(item.module.__name__, []).append(item)
    for name, group in shared.items():
        for item in group:
            if not item.get_closest_marker("xdist_group"):
                item.add_marker(pytest.mark.xdist_group(name))

    def unit(item) -> str:
        m = item.get_closest_marker("xdist_group")
        return (m.args[0] if m.args else m.kwargs.get("name", "default")) if m else item.nodeid

    def length(item) -> float:
        m = item.get_closest_marker("slow")
        return -1.0 if m is None else float(m.kwargs.get("seconds", 0))

    longest: dict = {}
    for item in items:
        u = unit(item)
        longest[u] = max(longest.get(u, -1.0), length(item))
    items.sort(key=lambda i: -longest[unit(i)])     # stable: a unit's tests keep their order
