"""Reconstruction galleries: test images above what the decoder makes of them. Each cell's strip
is a small PNG file beside the page, so that a page's size does not grow with the store."""
from __future__ import annotations

import html
import io
from pathlib import Path

import numpy as np
import pandas as pd
from capslib.run.store.results import ResultsStore

from capslib.views.figures.chooser import GREY_LEVELS, Chooser, strip_html
from capslib.views.figures.common import _all_seeds, _cells, _group_label


def gallery_strip(arrays: dict) -> np.ndarray:
    """(2·H, 16·W) uint8: test images (8 normal, then 8 anomalous) above their reconstructions."""
    imgs, recs = arrays["gallery_images"][:, 0], arrays["gallery_reconstructions"][:, 0]
    return np.concatenate([np.concatenate(list(imgs), axis=1), np.concatenate(list(recs), axis=1)], axis=0)


def strip_png(store: ResultsStore, cell_id: str, folder: str | Path = "galleries") -> str:
    """Write the cell's gallery strip as an 8-bit greyscale PNG ``<folder>/<cell_id>.png``
    (relative to the working directory: the executed chapter's folder) and return that relative
    path, the ``src`` the page uses. The strip keeps :data:`GREY_LEVELS` grey levels (at most
    8/255 off the stored images). The file is rewritten only when its bytes would change."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{cell_id}.png"
    buf = io.BytesIO()
    strip = gallery_strip(store.load_arrays(cell_id, only=lambda k: k.startswith("gallery_"))).astype(np.float64)
    step = 255 / (GREY_LEVELS - 1)
    Image.fromarray(np.round(np.round(strip / step) * step).astype(np.uint8), mode="L").save(buf, format="PNG",
                                                                                            optimize=True)
    if not path.exists() or path.read_bytes() != buf.getvalue():
        path.write_bytes(buf.getvalue())
    return path.as_posix()


class GalleryPanel:
    """Several strips under their titles (paper A Figs. 4/5/7, paper B Fig. 3), as HTML whose
    images are the PNG files beside the page."""

    def __init__(self, srcs: list[str], titles: list[str]):
        self.srcs, self.titles = srcs, titles

    def _repr_html_(self) -> str:
        if not self.srcs:
            return "<p><em>No gallery: no CapsNet cell of this kind has finished.</em></p>"
        parts = [f'<p style="margin:0.6em 0 0.2em"><b>{html.escape(t)}</b></p>{strip_html(src, t)}'
                 for src, t in zip(self.srcs, self.titles)]
        return ('<div class="capslib-gallery"><p><em>Each strip: 8 normal test images left of the red line, 8 '
                'anomalous ones right of it; top row the images, bottom row what the decoder rebuilt.</em></p>'
                + "".join(parts) + "</div>")


def gallery_panel(store: ResultsStore, cell_ids, titles=None, folder: str | Path = "galleries") -> GalleryPanel:
    """Per cell, its title above the strip: normal (left of the red line) and anomalous
    (right) test images above their reconstructions."""
    cell_ids = list(cell_ids)
    return GalleryPanel([strip_png(store, cid, folder) for cid in cell_ids], list(titles or cell_ids))


def gallery_chooser(store: ResultsStore, df: pd.DataFrame, protocol: str, dataset: str, seed=None,
                    folder: str | Path = "galleries") -> Chooser:
    """Every CapsNet cell's strip behind menus (seed, cell): the page loads only the chosen
    cell's PNG; works in the static book without a kernel."""
    seeds = _all_seeds(df, protocol, dataset, seed)
    items, groups, cells = [], {}, []
    for s in seeds:
        ids, titles = gallery_cells(df, protocol, dataset, seed=s)
        for cid, t in zip(ids, titles):
            items.append(dict(c=len(cells), src=strip_png(store, cid, folder)))
            cells.append([s, t, 0, cid])
            groups.setdefault(str(s), []).append(t)
    seeds = [s for s in seeds if str(s) in groups]
    payload = dict(seeds=seeds, groups=groups, items=items, cells=cells, panels=[""],
                   group_label=_group_label(protocol))
    return Chooser("gallery", payload)


def gallery_cells(df: pd.DataFrame, protocol: str, dataset: str, seed=None, variant=None, fraction=None):
    """(cell ids, titles) of one protocol/dataset/seed, optionally one variant and fraction,
    in the book's order: the cells whose galleries a page shows. Only CapsNet cells store
    galleries (test images and their reconstructions); other methods are left out."""
    cells = _cells(df, protocol, dataset, seed)
    cells = cells[cells["method"] == "capsnet"]
    if variant is not None:
        cells = cells[cells["variant"] == variant]
    if fraction is not None:
        cells = cells[np.isclose(cells["anomaly_fraction"].astype(float), fraction)]
    titles = [f"{g} · {p}" if p else g for g, p in zip(cells["group"], cells["panel"])]
    return list(cells["cell_id"]), titles
