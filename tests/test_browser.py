"""The built book in a real browser, offline: headless Debian chromium driven by playwright.

- Every page of ``_build/html`` loads with no request to anything but 127.0.0.1 (the host
  resolver maps every other name to nothing, and any such request fails the test), no uncaught
  JavaScript error, every Plotly figure drawn, every saved widget rendered, the math typeset.
- In a chapter, picking another cell (class, seed) in a chooser's menu draws that cell: other
  curves or bars, another gallery strip that loads; in the static HTML, with no kernel.

Screenshots of a chooser go to pytest's tmp dir, and also to
``$CAPSLIB_SCREENSHOTS`` when set. With no built book the tests skip, except in CI (CI=true),
where a missing book is a failure. With no chromium ($CAPSLIB_CHROMIUM, else `chromium` on
PATH) they skip, saying so (the ``chromium`` fixture of conftest.py).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow(seconds=45)]

ROOT = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("CAPSLIB_BOOK_HTML", ROOT / "_build" / "html"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
LOCAL_SCHEMES = {"data", "blob", "about"}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def chapter_pages() -> list[Path]:
    return sorted(p for p in HTML.glob("book/*/*.html"))


def all_pages() -> list[Path]:
    skip = {"search.html", "genindex.html"}
    return sorted(p for p in HTML.rglob("*.html")
                  if p.name not in skip and "_static" not in p.parts and "_sources" not in p.parts)


@pytest.fixture(scope="module")
def site():
    """Serve ``_build/html`` on 127.0.0.1 (a free port); yields the base URL."""
    if not (HTML / "index.html").exists() or not chapter_pages():
        msg = (f"no built book with chapters under {HTML}: run `bash scripts/build.sh` "
               f"(or `python -m capslib book`) first")
        if in_ci():
            pytest.fail(msg + " (CI=true: the book must be built before the tests)")
        pytest.skip(msg)
    proc = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
                             "--directory", str(HTML)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        line = proc.stdout.readline()     # "Serving HTTP on 127.0.0.1 port 43125 (http://127.0.0.1:43125/) ..."
        m = re.search(r"port (\d+)", line)
        assert m, f"http.server did not start: {line!r}"
        yield f"http://127.0.0.1:{m.group(1)}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser(chromium, site):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


class Visit:
    """A page opened in the site's browser context, with every request and JavaScript error it
    makes recorded. The pages share the context's cache, as a reader's tabs do: the site's
    shared scripts (plotly.js, the theme, the widget manager) are compiled once, not once per
    page; each page's own requests are still recorded, cached or not."""

    def __init__(self, ctx, site: str, page_path: Path):
        self.url = f"{site}/{page_path.relative_to(HTML).as_posix()}"
        self.requests, self.failed, self.errors = [], [], []
        self.page = ctx.new_page()
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("requestfailed", lambda r: self.failed.append(f"{r.url} ({r.failure})"))
        self.page.on("response", lambda r: self.failed.append(f"{r.url} (HTTP {r.status})") if r.status >= 400 else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        # MathJax and the widget manager finish after the load event: the caller waits for what it checks
        self.page.goto(self.url, wait_until="networkidle", timeout=60_000)

    def foreign_requests(self) -> list[str]:
        out = []
        for u in self.requests:
            p = urlparse(u)
            if p.scheme in LOCAL_SCHEMES:
                continue
            if p.hostname != "127.0.0.1":
                out.append(u)
        return out

    def front(self):
        """This page, made the visible tab: a page left in the background gets no animation
        frames, and Plotly and the widgets draw in them."""
        self.page.bring_to_front()
        return self.page

    def close(self):
        self.page.close()


# --------------------------------------------------------------------------- every page
PAGE_STATE = """() => {
    const figs = Array.from(document.querySelectorAll('.plotly-graph-div'));
    return {
      figs: figs.length,
      drawn: figs.filter(el => el.classList.contains('js-plotly-plot') && el.querySelector('.main-svg')).length,
      widgetState: !!document.querySelector('script[type="application/vnd.jupyter.widget-state+json"]'),
      widgetViews: document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length,
      widgetsShown: document.querySelectorAll('.jupyter-widgets, .widget-inline-hbox, .lm-Widget').length,
      math: document.querySelectorAll('div.math, span.math').length,
      typeset: document.querySelectorAll('mjx-container').length,
    };
}"""


def _wait_for(page, js: str, arg=None, timeout_ms: int = 15000) -> bool:
    """Wait until ``js`` (called with ``arg``) holds on ``page``; False on a time-out, which the
    checks that follow then report."""
    try:
        page.wait_for_function(js, arg=arg, timeout=timeout_ms)
        return True
    except Exception:
        return False


SETTLED = """() => document.fonts.ready.then(() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r))))"""


@pytest.fixture(scope="module")
def visited(site, browser):
    """Every page of the site opened once: ({page path: what the page tests check} (requests
    outside 127.0.0.1, JavaScript errors, failed requests, what is drawn; for a chapter its
    layout, for the paper page its status section), {chapter path: its open Visit}). The
    chapters stay open for the tests that then act on them (menus, a linked widget, a wide
    table), so each page is loaded and drawn once for the whole module."""
    out, chapters = {}, {}
    ctx = browser.new_context(viewport={"width": 1280, "height": 1000}, service_workers="block")
    try:
        for path in all_pages():
            v = Visit(ctx, site, path)
            keep = path in chapter_pages()
            try:
                # Plotly draws its figures, MathJax typesets and the widget manager renders saved
                # widgets after the load event: wait for each (the checks report what never came)
                _wait_for(v.page, """() => Array.from(document.querySelectorAll('.plotly-graph-div'))
                                       .every(el => el.classList.contains('js-plotly-plot') && el.querySelector('.main-svg'))""")
                _wait_for(v.page, """() => !document.querySelector('div.math, span.math')
                                       || !!document.querySelector('mjx-container')""")
                _wait_for(v.page, """() => !(document.querySelector('script[type="application/vnd.jupyter.widget-state+json"]')
                                         && document.querySelector('script[type="application/vnd.jupyter.widget-view+json"]'))
                                       || !!document.querySelector('.jupyter-widgets, .widget-inline-hbox, .lm-Widget')""")
                r = {"foreign": v.foreign_requests(), "errors": list(v.errors),
                     "failed": [u for u in v.failed if "favicon" not in u], "state": v.page.evaluate(PAGE_STATE),
                     "plotly_js": any(u.split("?")[0].endswith("/plotly.min.js") for u in v.requests)}
                if keep:
                    v.page.evaluate(SETTLED)      # web fonts in, two frames drawn: the layout is final
                    r["layout"] = v.page.evaluate(LAYOUT_JS)
                if path == HTML / "book" / "paper.html":
                    sec = v.page.locator("section#reproduction-status")
                    r["status"] = {"sections": sec.count(), "text": sec.inner_text() if sec.count() == 1 else "",
                                   "images": sec.locator("img").count(),
                                   "loaded": sec.locator("img").count() >= 1 and
                                   sec.locator("img").first.evaluate("(i) => i.complete && i.naturalWidth > 0")}
                out[path] = r
            finally:
                if keep:
                    chapters[path] = v
                else:
                    v.close()
        yield out, chapters
    finally:
        ctx.close()     # its pages with it


@pytest.fixture(scope="module")
def rendered(visited) -> dict:
    return visited[0]


@pytest.fixture(scope="module")
def chapters(visited) -> dict:
    """{chapter path: its page, open and drawn} (see :func:`visited`)."""
    return visited[1]


def test_every_page_is_offline_and_renders(rendered):
    assert rendered, f"no pages under {HTML}"
    problems = []
    n_figs = n_widgets = 0
    for path, r in rendered.items():
        name, state = path.relative_to(HTML), r["state"]
        if r["foreign"]:
            problems.append(f"{name}: requests outside 127.0.0.1: {r['foreign'][:5]}")
        if r["errors"]:
            problems.append(f"{name}: JavaScript errors: {r['errors'][:3]}")
        if r["failed"]:
            problems.append(f"{name}: failed requests: {r['failed'][:5]}")
        if state["drawn"] != state["figs"]:
            problems.append(f"{name}: {state['figs'] - state['drawn']} of {state['figs']} Plotly figures not drawn")
        if state["widgetState"] and state["widgetViews"] and not state["widgetsShown"]:
            problems.append(f"{name}: saved widgets not rendered")
        if state["math"] and not state["typeset"]:
            problems.append(f"{name}: math not typeset by MathJax")
        draws = any(mark in path.read_text() for mark in ("plotly-graph-div", "capslib-chooser"))
        if r["plotly_js"] != draws:
            problems.append(f"{name}: plotly.js " + ("not loaded by a page that draws with it" if draws else
                                                    "loaded by a page that draws nothing with it"))
        n_figs += state["figs"]
        n_widgets += state["widgetsShown"] > 0
    assert not problems, "\n".join(problems)
    assert n_figs > 0, "the book has no Plotly figure at all"


# --------------------------------------------------------------------------- a linked widget
FIND_LINKED = """() => {
  const state = document.querySelector('script[type="application/vnd.jupyter.widget-state+json"]');
  if (!state || !/"_model_name":\\s*"(Directional)?LinkModel"/.test(state.textContent)) return -2;
  const boxes = Array.from(document.querySelectorAll('.widget-hbox, .jupyter-widgets.widget-box'));
  return boxes.findIndex(b => b.querySelector('.widget-slider .widget-readout') && b.querySelector('.widget-text input'));
}"""


def test_linked_widget_works_without_kernel(chapters):
    """A ``jslink``-ed slider / number box pair saved in a chapter: typing a number moves the
    slider, in the static page (no kernel)."""
    for path, v in chapters.items():
        i = v.front().evaluate(FIND_LINKED)
        if i == -2:            # no linked widgets saved in this chapter
            continue
        if i < 0:              # saved, but the widget manager renders them after the load event
            v.page.wait_for_function(f"({FIND_LINKED})() >= 0", timeout=20000)
            i = v.page.evaluate(FIND_LINKED)
        box = v.page.locator(".widget-hbox, .jupyter-widgets.widget-box").nth(i)
        readout = box.locator(".widget-slider .widget-readout").first
        field = box.locator(".widget-text input").first
        before = readout.inner_text().strip()
        new = "3" if before != "3" else "4"
        field.fill(new)
        field.press("Enter")
        _wait_for(v.page, "([el, want]) => el.innerText.trim() === want", arg=[readout.element_handle(), new],
                  timeout_ms=5000)      # the assertion below reports a time-out
        after = readout.inner_text().strip()
        assert after == new, (f"{path.name}: typing {new} in the linked box left the slider at {after!r} "
                              f"(was {before!r})")
        assert not v.errors, f"JavaScript errors: {v.errors[:3]}"
        return
    pytest.skip("no chapter has a jslink-ed slider and number box")


# --------------------------------------------------------------------------- layout
LAYOUT_JS = """() => {
  const col = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const width = col.getBoundingClientRect().width;
  // a table counts as too wide only where the reader cannot scroll it within its output
  const wide = [...col.querySelectorAll('table')].filter(t => {
      const r = t.getBoundingClientRect();
      let p = t.parentElement, scrolls = false;
      while (p && p !== col) { const o = getComputedStyle(p).overflowX; if (o === 'auto' || o === 'scroll') { scrolls = true; break; } p = p.parentElement; }
      return !scrolls && r.width > width + 1;
  }).map(t => Math.round(t.getBoundingClientRect().width));
  const overlaps = [];
  for (const f of document.querySelectorAll('.js-plotly-plot')) {
    const boxes = [...f.querySelectorAll('.xtitle, .ytitle')].map(e => e.getBoundingClientRect()).filter(r => r.width > 0);
    for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
      const a = boxes[i], b = boxes[j];
      if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom) overlaps.push(f.id);
    }
  }
  // plot panels: a subplot that draws an image (a thumbnail of a gallery strip) is a picture, not a chart panel
  const panels = [...document.querySelectorAll('.js-plotly-plot .nsewdrag')].filter(e => {
      const sp = e.getAttribute('data-subplot'), plot = e.closest('.js-plotly-plot');
      const g = sp && plot.querySelector(`g.subplot.${sp}`);
      return !(g && g.querySelector('.imagelayer image'));
  }).map(e => Math.round(e.getBoundingClientRect().width));
  return {width: Math.round(width), wide, overlaps, panels};
}"""


def test_paper_page_has_status_panel_and_chapters_fit(rendered):
    paper = HTML / "book" / "paper.html"
    if paper not in rendered:
        pytest.skip("the paper page is not built")
    st = rendered[paper]["status"]
    assert st["sections"] == 1, "no 'Reproduction status' section on the paper page"
    assert re.search(r"Paper A: \d+ of \d+ cells finished", st["text"]), st["text"][:500]
    assert re.search(r"Paper B: \d+ of \d+ cells finished", st["text"]), st["text"][:500]
    assert st["images"] >= 1, "the status heat-map is not on the paper page"
    assert st["loaded"], "the heat-map did not load"
    problems = []
    for path in chapter_pages():
        lay, name = rendered[path]["layout"], path.relative_to(HTML)
        if lay["wide"]:
            problems.append(f"{name}: tables wider than the {lay['width']} px column: {lay['wide']}")
        if lay["overlaps"]:
            problems.append(f"{name}: overlapping axis titles in {sorted(set(lay['overlaps']))}")
        narrow = [w for w in lay["panels"] if w < 280]
        if narrow:
            problems.append(f"{name}: figure panels narrower than 280 px: {narrow}")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- a wide table
def _wide_novelty_table():
    """Paper B's AUROC table as a chapter displays it (pandas' text/html), from a hand-built
    store of the paper's shape: 11 held-out rows, CapsNet PP/RE and four baselines, three
    seeds (so every cell carries ± its std), wider than the text column."""
    import numpy as np
    from types import SimpleNamespace
    from capslib.views import report
    from capslib.core.config import CellSpec
    from capslib.run.store.schema import result_rows

    rng = np.random.default_rng(0)
    labels = np.array([0] * 30 + [1] * 30)
    prov = {"commit": "abc123", "device": "cpu (test)", "torch": "x", "finished_utc": "2026-01-02T03:04:05Z"}
    scores = {"capsnet": ("pp", "re"), "dbn": ("mse", "re"), "vae": ("mse", "re"), "cnn_msp": ("msp",),
              "cnn_ocsvm": ("ocsvm",)}
    rows = []
    for held in [(c,) for c in range(10)] + [(0, 3, 5)]:
        for method, names in scores.items():
            for seed in range(3):
                spec = CellSpec("novelty", "mnist", method, held_out=held, seed=seed, epochs=1)
                res = SimpleNamespace(test_labels=labels, train_seconds=1.0, thresholds={},
                                      scores={n: (labels + rng.normal(0, 0.8, labels.size)).astype(np.float32)
                                              for n in names})
                rows += result_rows(spec, res, prov)
    table = report.novelty_table(report.to_frame(rows), "mnist", "auroc")
    assert table.shape == (11, 8) and table.iloc[0, 0].count("±") == 1, table
    assert table.columns.nlevels == 2, table.columns      # the method over its scores
    return table


def _put_table(slot, table) -> dict:
    slot.evaluate("(el, html) => { el.innerHTML = html; }", table._repr_html_())
    slot.page.evaluate(SETTLED)
    return slot.evaluate("""(el) => {
        const col = document.querySelector('article.bd-article');
        const t = el.querySelector('table.dataframe');
        el.scrollLeft = el.scrollWidth;
        const th = t.querySelector('tbody th'), box = el.getBoundingClientRect();
        return {col: col.getBoundingClientRect().width, table: t.getBoundingClientRect().width,
                out: box.width, outLeft: box.left, scrolled: el.scrollLeft,
                thLeft: th.getBoundingClientRect().left, docWidth: document.documentElement.scrollWidth,
                viewport: window.innerWidth, overflow: getComputedStyle(el).overflowX};
    }""")


def test_wide_table_scrolls_in_the_column_with_its_row_labels_in_view(chapters):
    """Paper B's AUROC table of the paper's shape (11 held-out rows, 8 method/score columns, ±
    over three seeds, hand-built) put into a chapter's table output fits the text column; a table
    three times as wide scrolls inside its output, the page does not grow sideways, and scrolled
    to its end its held-out column is still in view at the output's left edge."""
    import pandas as pd
    table = _wide_novelty_table()
    # the novelty chapter where it has tables (an empty paper store has none), else any chapter's table
    pages = sorted(chapters, key=lambda p: (p.stem != "novelty_auroc", p.as_posix()))
    for path in pages:
        v = chapters[path]
        slot = v.front().locator("div.cell_output div.output.text_html:has(table.dataframe)").first
        if slot.count():
            break
    else:
        pytest.fail(f"no chapter under {HTML / 'book'} has a table output")
    got = _put_table(slot, table)
    assert got["table"] <= got["out"] + 1 and got["out"] <= got["col"] + 1, f"the paper-shaped table does not fit: {got}"
    wider = pd.concat({f"copy {i}": table for i in range(3)}, axis=1)
    got = _put_table(slot, wider)
    assert got["table"] > max(got["col"], got["out"]), f"the widened table is not wider than the column: {got}"
    assert got["overflow"] in ("auto", "scroll") and got["out"] <= got["col"] + 1, got
    assert got["scrolled"] > 0, f"the output did not scroll: {got}"
    assert got["docWidth"] <= got["viewport"], f"the page grew sideways: {got}"
    assert abs(got["thLeft"] - got["outLeft"]) <= 1, f"the row labels scrolled out of view: {got}"
    lay = v.page.evaluate(LAYOUT_JS)
    assert not lay["wide"], lay


# --------------------------------------------------------------------------- the choosers
CHOOSER_STATE = """(el) => {
  const plot = el.querySelector('.capslib-plot');
  const img = el.querySelector('img.capslib-strip');
  return {
    choice: el.dataset.choice || null,
    drawn: !!(plot && plot.querySelector('.main-svg')),
    ys: plot && plot.data ? JSON.stringify(plot.data.map(t => t.y)) : null,
    src: img ? img.getAttribute('src') : null,
    loaded: img ? (img.complete && img.naturalWidth > 0) : null,
    options: [...el.querySelectorAll('select[name=group] option')].map(o => o.value),
  };
}"""


def test_choosers_draw_the_picked_cell(chapters, tmp_path):
    """Every chooser (ROC curves, histograms, gallery strips) draws its first cell with no
    kernel; picking another cell in its menu draws that one (other curves or bars, another
    strip that loads)."""
    kinds = {"roc_curves": "plot", "score_distributions": "plot", "reconstruction_galleries": "img"}
    checked = 0
    for path, v in chapters.items():
        if path.stem not in kinds:
            continue
        choosers = v.front().locator(".capslib-chooser")
        if not choosers.count():
            continue
        for i in range(choosers.count()):
            el = choosers.nth(i)
            v.page.wait_for_function("(el) => !!el.dataset.choice", arg=el.element_handle(), timeout=15000)
            before = el.evaluate(CHOOSER_STATE)
            assert before["drawn"] or before["loaded"], f"{path.name} chooser {i}: nothing drawn: {before}"
            if len(before["options"]) < 2:
                continue
            el.scroll_into_view_if_needed()
            el.locator("select[name=group]").select_option(before["options"][-1])
            _wait_for(v.page, f"""([el, before]) => {{ const s = ({CHOOSER_STATE})(el);   // the choice, then its drawing
                return s.choice !== before.choice && (s.ys !== before.ys || s.src !== before.src); }}""",
                      arg=[el.element_handle(), before], timeout_ms=5000)
            after = el.evaluate(CHOOSER_STATE)
            assert after["choice"] != before["choice"], f"{path.name} chooser {i}: the menu changed nothing"
            if kinds[path.stem] == "plot":
                assert after["drawn"] and after["ys"] != before["ys"], f"{path.name} chooser {i}: same traces"
            else:
                v.page.wait_for_function("(el) => { const i = el.querySelector('img.capslib-strip');"
                                         " return i.complete && i.naturalWidth > 0; }",
                                         arg=el.element_handle(), timeout=10000)
                after = el.evaluate(CHOOSER_STATE)
                assert after["src"] != before["src"] and after["loaded"], f"{path.name} chooser {i}: {after}"
            if not checked:
                screenshot(el, f"chooser-{path.stem}.png", tmp_path)
            checked += 1
        assert not v.errors, f"{path.name}: JavaScript errors: {v.errors[:3]}"
        bad = [u for u in v.failed if "favicon" not in u]
        assert not bad, f"{path.name}: failed requests: {bad[:5]}"
    assert checked, "no chooser with two or more cells in any chapter"
