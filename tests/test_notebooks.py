"""Papermill smoke run of every book notebook.

All notebooks share one temporary results root: a copy of the committed quick store (what the
build reads) less one baseline cell. The first notebook asks for the CapsNets, which it reads,
and that baseline, which it trains as a chapter does a missing cell (the same call for any
method: the CapsNet's training has its own tests); the others read the store. Errors are never
allowed; each executed notebook must show a Plotly figure as HTML.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import nbformat
import pytest

pm = pytest.importorskip("papermill")
from capslib.book.execute import load_overrides, run_notebook  # noqa: E402
from capslib.run.store.results import ResultsStore  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TINY = {"profile": "quick", "seeds": [0], "methods": ["capsnet"], "classes": [1],
        "fractions": [0.1], "held_outs": [2], "extra_held_outs": []}
# your_images fits its own model: one epoch is enough here; imbalanced_accuracy trains its missing cell
PER_NOTEBOOK = {"your_images": {"epochs": 1}, "imbalanced_accuracy": {"methods": ["capsnet", "cnn"]}}
MISSING = ["imbalanced-digits-cnn-n1-f0.1-s0-e5-b32"]      # left out of the copy
READ = [f"imbalanced-digits-capsnet-{v}-n1-f0.1-s0-e5-b32" for v in ("standard", "proposed")]
EXPECTED = {"imbalanced_accuracy", "novelty_auroc", "roc_curves", "score_distributions", "reconstruction_galleries"}

pytestmark = pytest.mark.slow(seconds=75)


@pytest.fixture(scope="module")
def results_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("nb-results")
    shutil.copytree(ROOT / "results" / "quick" / "cells", root / "quick" / "cells",
                    ignore=lambda d, names: [n for n in names if n in MISSING])
    store = ResultsStore(root, "quick")
    store.rebuild_csv()
    assert not any(store.is_done(c) for c in MISSING) and all(store.is_done(c) for c in READ)
    return root


def test_every_notebook_is_there_without_outputs():
    assert EXPECTED <= {p.stem for p in NOTEBOOKS}
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), path.name
        for c in code:
            assert not c.get("outputs") and c.get("execution_count") is None, f"{path.name} has saved outputs"
            assert "def " not in c.source and "%pip" not in c.source and "sys.path" not in c.source, path.name
        for name in ("profile", "results_root", "data_root"):
            assert f"{name} = " in code[0].source, (path.name, name)


def test_chapters_name_the_results_store_relative_to_the_checkout(tmp_path):
    from capslib.book.execute import _portable
    assert _portable(ROOT / "results", ROOT, ROOT / "book" / "quick") == "../../results"
    assert _portable(tmp_path / "results", ROOT, ROOT / "book" / "quick") == str((tmp_path / "results").resolve())


def test_paper_chapters_only_read_the_store():
    """Building the paper profile's book must never start its GPU-scale training."""
    overrides = load_overrides(ROOT, "paper")
    for path in NOTEBOOKS:
        assert "train" in pm.inspect_notebook(str(path)), path.stem
        assert overrides.get(path.stem, {}).get("train") is False, path.stem


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, results_root, tmp_path):
    declared = pm.inspect_notebook(str(path))
    params = {k: v for k, v in {**TINY, **PER_NOTEBOOK.get(path.stem, {})}.items() if k in declared}
    params["results_root"] = str(results_root)
    out = tmp_path / path.name
    t0 = time.perf_counter()
    run_notebook(path, out, params, cwd=tmp_path)     # papermill, per-cell timeout, never allow_errors
    print(f"{path.stem}: {time.perf_counter() - t0:.1f} s")
    if path.stem == "imbalanced_accuracy":
        store = ResultsStore(results_root, "quick")
        assert all(store.is_done(c) for c in MISSING), "the chapter did not train its missing cell"
        for c in READ:   # read, not trained again
            assert (results_root / "quick" / "cells" / c / "cell.json").read_bytes() == \
                (ROOT / "results" / "quick" / "cells" / c / "cell.json").read_bytes(), c
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    # a figure: a Plotly one, or a chooser that draws the picked cell (views/figures/chooser.py)
    assert any("Plotly.newPlot" in h or "capslibChooser(" in h for h in html), f"{path.stem}: no figure"
    assert any("commit" in h for h in html), f"{path.stem}: no provenance table"


def test_widget_font_urls_read_the_assets_path():
    """The widget manager's font URLs are fixed when its stylesheet is evaluated, before the
    bundle reads the assets path: the vendored bundle makes each one read it itself."""
    from capslib.book.common import BookError
    from capslib.book.vendor import font_urls_from_assets_path
    src = b'5890:(e,t,n)=>{"use strict";e.exports=n.p+"1551f4f60c37af51121f.woff2"},9:(e,t,o)=>{e.exports=o.p+"x.js"}'
    out = font_urls_from_assets_path(src)
    assert b'e.exports=(window.__jupyter_widgets_assets_path__||n.p)+"1551f4f60c37af51121f.woff2"' in out
    assert out.endswith(b'e.exports=o.p+"x.js"}')               # not a font: unchanged
    with pytest.raises(BookError):
        font_urls_from_assets_path(b"no fonts here")


def test_committed_chapters_find_their_gallery_strips():
    """Every gallery strip a committed paper chapter names is there beside it (a chapter
    committed without its strips would show broken images)."""
    import re
    chapters = sorted((ROOT / "book" / "paper").glob("*.ipynb"))
    srcs = {(p.parent, s) for p in chapters for s in re.findall(r"galleries/[A-Za-z0-9_.+-]+\.png", p.read_text())}
    missing = sorted(s for d, s in srcs if not (d / s).is_file())
    assert not missing, f"{len(missing)} strips missing, e.g. {missing[:3]}"
