"""A chapter in JupyterLab, as the study's users work: the server started here (``jupyter lab``
from the project's ``lab`` extra, on 127.0.0.1 with a token), the chapter opened in headless
Debian chromium driven by playwright, every cell run on a real kernel, then the threshold
slider moved the way a reader moves it (the mouse drags its handle): the kernel's callback
prints the new threshold's accuracy and confusion matrix under it.

The chapter is ``notebooks/score_distributions.ipynb`` with papermill's parameters injected
(the quick store of this checkout, ``train=False``: it only reads ``results/quick``). The
browser reaches nothing but 127.0.0.1. With JupyterLab or chromium missing the test skips,
except in CI (CI=true), where that is a failure (a missing chromium not with SKIP_APT=1: the
``chromium`` fixture of conftest.py). Screenshots before and after the move go to
pytest's tmp dir and to ``$CAPSLIB_SCREENSHOTS`` when set.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow(seconds=20)]

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "score_distributions"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
START_S, RUN_S = 90, 150    # the server's start; the chapter's run (torch import, figures, widgets)


def _missing(msg: str):
    if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
        pytest.fail(msg + " (CI=true)")
    pytest.skip(msg)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chapter(tmp: Path) -> Path:
    """The chapter as papermill would run it on this checkout's quick store, reading only."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook
    nb = load_notebook_node(str(ROOT / "notebooks" / f"{CHAPTER}.ipynb"))
    nb = parameterize_notebook(nb, {"profile": "quick", "results_root": str(ROOT / "results"),
                                    "train": False})
    out = tmp / f"{CHAPTER}.ipynb"
    nbformat.write(nb, str(out))
    return out


@pytest.fixture()
def lab(tmp_path):
    """``jupyter lab`` on 127.0.0.1 (free port, random token) serving a folder that holds the
    chapter; yields (base URL, token); the server and its kernels are stopped afterwards."""
    if shutil.which("jupyter") is None or subprocess.run(
            [sys.executable, "-c", "import jupyterlab"], capture_output=True).returncode != 0:
        _missing("JupyterLab is not installed: pip install -e '.[lab]' (scripts/build.sh does)")
    work = tmp_path / "lab"
    work.mkdir()
    _chapter(work)
    # settings of this server only: every cell in the page (no virtual scrolling of the notebook,
    # so the widgets below the fold exist to be found), no news or update checks (the internet)
    settings = tmp_path / "settings"
    for ext, name, value in [("notebook-extension", "tracker", {"windowingMode": "none"}),
                             ("apputils-extension", "notification", {"fetchNews": "false",
                                                                      "checkForUpdates": False})]:
        f = settings / "@jupyterlab" / ext / f"{name}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(value))
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), PYTHONUNBUFFERED="1")
    log = open(tmp_path / "jupyter-lab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}", "--ServerApp.port_retries=0",
         "--LabApp.expose_app_in_browser=True", "--LabApp.extension_manager=readonly",
         f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={tmp_path / 'ws'}"]
        + (["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited ({proc.returncode}):\n"
                            + (tmp_path / "jupyter-lab.log").read_text()[-3000:])
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not answer within {START_S} s:\n"
                            + (tmp_path / "jupyter-lab.log").read_text()[-3000:])
            time.sleep(0.5)
        yield base, token
    finally:
        try:   # the server's process group: the server and the kernels it started
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
        log.close()


RESULT = re.compile(r"threshold (-?\d+\.\d{4}): accuracy (\d+\.\d\d)%")


def test_chapter_runs_in_jupyterlab_and_the_threshold_slider_answers(chromium, lab, tmp_path):
    from playwright.sync_api import sync_playwright
    base, token = lab
    foreign, errors = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            ctx = browser.new_context(viewport={"width": 1400, "height": 900})
            page = ctx.new_page()
            page.on("request", lambda r: foreign.append(r.url)
                    if not re.match(r"(https?|wss?)://127\.0\.0\.1[:/]|(data|blob|about):", r.url) else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}/lab/tree/{CHAPTER}.ipynb?token={token}", timeout=START_S * 1000)
            # the notebook open, its kernel idle: then run every cell as the Run menu does
            page.wait_for_function("""() => {
                const app = window.jupyterapp;
                const w = app && app.shell.currentWidget;
                return !!(w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel
                          && w.sessionContext.session.kernel.status === 'idle');
            }""", timeout=START_S * 1000)
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            # run-all stops at an error; wait until every code cell has run or one has failed
            page.wait_for_function("""() => {
                const w = window.jupyterapp.shell.currentWidget, cells = w.content.model.cells;
                let all = true, failed = false;
                for (let i = 0; i < cells.length; i++) {
                    const c = cells.get(i).toJSON();
                    if (c.cell_type !== 'code') continue;
                    if (!c.execution_count) all = false;
                    if (c.outputs.some(o => o.output_type === 'error')) failed = true;
                }
                return (all || failed) && w.sessionContext.session.kernel.status === 'idle';
            }""", timeout=RUN_S * 1000, polling=500)

            # every cell ran, and none ended in an error (the notebook model, as JupyterLab holds it)
            ran = page.evaluate("""() => {
                const cells = window.jupyterapp.shell.currentWidget.content.model.cells;
                const out = {code: 0, ran: 0, errors: []};
                for (let i = 0; i < cells.length; i++) {
                    const c = cells.get(i).toJSON();
                    if (c.cell_type !== 'code') continue;
                    out.code += 1;
                    if (c.execution_count) out.ran += 1;
                    for (const o of c.outputs) if (o.output_type === 'error') out.errors.push(o.ename + ': ' + o.evalue);
                }
                return out;
            }""")
            assert not ran["errors"], ran["errors"]
            assert ran["ran"] == ran["code"], f"{ran['ran']} of {ran['code']} code cells ran"
            # the threshold explorer is the chapter's widget with a slider: wait for the kernel to draw it
            slider = page.locator(".jp-OutputArea-output .widget-slider").first
            slider.wait_for(state="visible", timeout=RUN_S * 1000)
            explorer = slider.locator("xpath=ancestor::div[contains(@class,'widget-vbox')][1]")
            result = explorer.locator(".widget-output")
            page.wait_for_function("""(el) => /threshold -?\\d+\\.\\d{4}: accuracy/.test(el.innerText)""",
                                   arg=result.element_handle(), timeout=60_000)
            explorer.scroll_into_view_if_needed()
            readout = slider.locator(".widget-readout")
            before_readout = readout.inner_text().strip()
            before = RESULT.search(result.inner_text())
            assert before, result.inner_text()
            assert float(before.group(1)) == pytest.approx(float(before_readout), abs=1e-3)
            screenshot(explorer, f"jupyterlab-{CHAPTER}-before.png", tmp_path)

            # drag the handle a third of the track to the left (the stored threshold sits high)
            handle = slider.locator(".noUi-handle").first
            track = slider.locator(".noUi-target").first
            hb, tb = handle.bounding_box(), track.bounding_box()
            x0, y0 = hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2
            x1 = x0 - tb["width"] / 3 if x0 - tb["width"] / 3 > tb["x"] + 5 else x0 + tb["width"] / 3
            page.mouse.move(x0, y0)
            page.mouse.down()
            page.mouse.move(x1, y0, steps=12)
            page.mouse.up()

            # the kernel answers: the printed threshold follows the slider's new value
            page.wait_for_function("""([el, old]) => {
                const m = /threshold (-?\\d+\\.\\d{4}): accuracy/.exec(el.innerText);
                return m && m[1] !== old;
            }""", arg=[result.element_handle(), before.group(1)], timeout=30_000)
            after_readout = readout.inner_text().strip()
            after = RESULT.search(result.inner_text())
            screenshot(explorer, f"jupyterlab-{CHAPTER}-after.png", tmp_path)
            assert after_readout != before_readout, "the slider's readout did not move"
            assert float(after.group(1)) == pytest.approx(float(after_readout), abs=1e-3), (
                f"the kernel printed threshold {after.group(1)}, the slider shows {after_readout}")
            assert (float(after.group(1)) < float(before.group(1))) == (x1 < x0), "the threshold moved the wrong way"
            # the confusion matrix under it is the kernel's table for the new threshold: 2 x 2 counts
            cells = [int(c) for c in explorer.locator(".widget-output table td").all_inner_texts()]
            assert len(cells) == 4 and sum(cells) > 0, cells
            assert not foreign, f"requests outside 127.0.0.1: {foreign[:5]}"
            print({"threshold": [before.group(1), after.group(1)],
                   "accuracy %": [before.group(2), after.group(2)], "confusion": cells, "page_errors": errors[:3]})
        finally:
            browser.close()
