"""The paper chapters stay light when the store holds the whole grid.

A synthetic store of every cell of the paper profile (1,035: both papers, every dataset,
method and seed), with the real cells' array shapes and dtypes and rows computed by the
library's own ``result_rows``, is written cheaply; the paper chapters are executed on it with
papermill and built with Jupyter Book. Budgets: every executed notebook under 1.5 MB; every
built page's HTML plus the files of its own that it loads at first view (images, gallery
strips) under 3 MB. The site's shared scripts and styles (plotly.js, the theme), loaded once
for every page, are reported, not counted per page.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow(seconds=75)
NOTEBOOK_BUDGET = 1.5e6
PAGE_BUDGET = 3e6
# score name -> decision threshold, per (protocol, method): the scores the real cells store
SCORES = {
    ("imbalanced", "capsnet"): {"length_difference": 0.0, "r_l": 0.05, "anomaly_score": 0.1, "routing_gini": 0.0,
                                "pp": None, "re": None},
    ("imbalanced", "cnn"): {"p_anomaly": 0.5},
    ("imbalanced", "deepsad"): {"distance": 0.2},
    ("novelty", "capsnet"): {"pp": None, "re": None},
    ("novelty", "cnn_msp"): {"msp": None},
    ("novelty", "cnn_ocsvm"): {"ocsvm": 0.0},
    ("novelty", "dbn"): {"re": None, "mse": None},
    ("novelty", "vae"): {"re": None, "mse": None},
}
N_TEST = {"imbalanced": 2004, "novelty": 2064}
N_CLASSES = {"smallnorb": 5}   # every other dataset has 10
PROV = {"commit": "synthetic", "device": "cpu (test)", "torch": "x", "precision": "fp32",
        "finished_utc": "2026-01-01T00:00:00Z"}


def _arrays(spec, rng) -> tuple[dict, SimpleNamespace]:
    n = N_TEST[spec.protocol]
    labels = (rng.random(n) < 0.5).astype(np.int64)
    thresholds = SCORES[(spec.protocol, spec.method)]
    scores = {k: (rng.normal(size=n) + 1.5 * labels).astype(np.float32) for k in thresholds}
    arrays = {"test_labels": labels, "test_idx": np.arange(n, dtype=np.int64),
              **{f"score_{k}": v for k, v in scores.items()}}
    if spec.method == "capsnet":
        arrays.update(gallery_positions=np.arange(16, dtype=np.int64),
                      gallery_images=rng.integers(0, 256, (16, 1, 28, 28), dtype=np.uint8),
                      gallery_reconstructions=rng.integers(0, 256, (16, 1, 28, 28), dtype=np.uint8))
        if spec.protocol == "imbalanced":
            m = 5983
            arrays.update(test_lengths=rng.random((n, 2), dtype=np.float32),
                          train_anomaly_score=rng.normal(size=m).astype(np.float32),
                          train_labels=(rng.random(m) < 0.01).astype(np.int64))
        else:
            arrays.update(test_classes=rng.integers(0, 10, n, dtype=np.int64),
                          test_lengths=rng.random((n, N_CLASSES.get(spec.dataset, 10) - len(spec.held_out)),
                                                  dtype=np.float32))
    if spec.method == "cnn_msp":
        arrays["test_probs"] = rng.random((n, 9), dtype=np.float32)
    return arrays, SimpleNamespace(test_labels=labels, scores=scores, thresholds=thresholds, train_seconds=60.0)


@pytest.fixture(scope="module")
def synthetic_book(tmp_path_factory):
    """A project root holding the notebooks, a 1,035-cell synthetic paper store, the executed
    paper chapters and their built site."""
    from capslib.book.execute import execute
    from capslib.run.store.results import ResultsStore
    from capslib.run.store.schema import result_rows
    from capslib.study.profiles import PROFILES

    root = tmp_path_factory.mktemp("book")
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    for name in ("_config.yml",):
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(ROOT / "book" / "assets", root / "book" / "assets")
    (root / "_vendor").mkdir()
    shutil.copy(Path(__import__("plotly").__file__).parent / "package_data" / "plotly.min.js", root / "_vendor")
    results = root / "results"
    store = ResultsStore(results, "paper", durable=False)     # throwaway: no fsync per file
    cells = PROFILES["paper"].cells()
    rng = np.random.default_rng(0)
    rebuild, store.rebuild_csv = store.rebuild_csv, lambda: None     # cells.csv once, at the end
    for spec in cells:
        arrays, res = _arrays(spec, rng)
        store.write_cell(spec, result_rows(spec, res, PROV), arrays, PROV,
                         info={"final_loss": float(rng.choice([0.01, 0.41]))})
    rebuild()
    execute(root, "paper", results, data_root=None)
    (root / "book" / "paper.md").write_text("# Synthetic paper profile\n")     # the overview the chapters link to
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/paper\nchapters:\n  - glob: book/paper/*\n")
    (root / "capslib").symlink_to(ROOT / "capslib")     # the book's Sphinx extension (_config.yml)
    r = subprocess.run([sys.executable, "-c", "import sys; from jupyter_book.cli.main import main; sys.exit(main())",
                        "build", str(root), "--builder", "html", "-W", "--keep-going"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return SimpleNamespace(root=root, n_cells=len(cells), html=root / "_build" / "html")


def test_the_synthetic_store_is_the_whole_grid(synthetic_book):
    import pandas as pd
    csv = pd.read_csv(synthetic_book.root / "results" / "paper" / "cells.csv")
    assert synthetic_book.n_cells == 1035 and csv["cell_id"].nunique() == 1035


def test_every_executed_chapter_is_under_budget(synthetic_book):
    sizes = {p.name: p.stat().st_size for p in sorted((synthetic_book.root / "book" / "paper").glob("*.ipynb"))}
    assert len(sizes) == 5, sizes
    print(json.dumps({"notebook_bytes": sizes}))
    over = {k: v for k, v in sizes.items() if v > NOTEBOOK_BUDGET}
    assert not over, f"executed chapters over {NOTEBOOK_BUDGET / 1e6} MB at 1,035 cells: {over}"


def _first_view_bytes(page: Path) -> tuple[int, int]:
    """(the page's HTML plus the files of its own that it loads at first view, the site's
    shared files it loads). Own files: every <img> (all of them, not only those above the
    fold); shared: scripts and styles under _static/."""
    html = page.read_text()
    own, shared = page.stat().st_size, 0
    for src in set(re.findall(r'<img[^>]*?\ssrc="([^"]+)"', html)):
        if not src.startswith("data:"):
            own += (page.parent / src).stat().st_size
    for src in set(re.findall(r'<(?:script|link)[^>]*?\s(?:src|href)="([^"?#]+)', html)):
        f = page.parent / src
        if "_static/" in src and f.is_file():
            shared += f.stat().st_size
    return own, shared


def test_every_built_page_loads_under_budget_at_first_view(synthetic_book):
    pages = sorted((synthetic_book.html / "book" / "paper").glob("*.html"))
    assert len(pages) == 5, pages
    sizes = {p.name: _first_view_bytes(p) for p in pages}
    print(json.dumps({"page_bytes (own, shared)": sizes}))
    over = {k: own for k, (own, _) in sizes.items() if own > PAGE_BUDGET}
    assert not over, f"pages over {PAGE_BUDGET / 1e6} MB at first view at 1,035 cells: {over}"


def test_the_built_galleries_find_their_strips(synthetic_book):
    page = (synthetic_book.html / "book" / "paper" / "reconstruction_galleries.html").read_text()
    srcs = set(re.findall(r'"src":"(galleries/[^"]+)"', page)) | set(re.findall(r'src="(galleries/[^"]+)"', page))
    capsnet = 3 * 120 + 30 + 33      # the CapsNet cells of the grid: each has its strip
    assert len(srcs) == capsnet
    missing = [s for s in srcs if not (synthetic_book.html / "book" / "paper" / s).is_file()]
    assert not missing, missing[:3]
