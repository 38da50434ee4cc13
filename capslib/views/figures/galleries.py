"""Reconstruction galleries: test images beside what the decoder makes of them."""
from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from capslib.run.store.results import ResultsStore

from capslib.views.figures.common import _cells, _group_menu, _initial_visibility, _layout


def gallery_strip(arrays: dict) -> np.ndarray:
    """(2·H, 16·W) uint8: test images (8 normal, then 8 anomalous) above their reconstructions."""
    imgs, recs = arrays["gallery_images"][:, 0], arrays["gallery_reconstructions"][:, 0]
    return np.concatenate([np.concatenate(list(imgs), axis=1), np.concatenate(list(recs), axis=1)], axis=0)


def gallery_matplotlib(store: ResultsStore, cell_ids, titles=None):
    """Paper A Figs. 4/5/7, paper B Fig. 3: per cell, normal (left) and anomalous (right)
    test images above their reconstructions."""
    import matplotlib.pyplot as plt

    cell_ids = list(cell_ids)
    fig, axes = plt.subplots(max(len(cell_ids), 1), 1, figsize=(12, 1.7 * max(len(cell_ids), 1)), squeeze=False)
    for ax, cid, t in zip(axes[:, 0], cell_ids, titles or cell_ids):
        strip = gallery_strip(store.load_arrays(cid))
        ax.imshow(strip, cmap="gray", vmin=0, vmax=255)
        ax.axvline(strip.shape[1] / 2 - 0.5, color="red", lw=1.5)
        ax.set_title(f"{t}: normal | anomalous; top: test images, bottom: reconstructions", fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    plt.close(fig)   # the caller displays it; left open, the inline backend would show it a second time
    return fig


def _png_uri(img: np.ndarray) -> str:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def gallery_figure(store: ResultsStore, cell_ids, titles=None) -> go.Figure:
    """The galleries as one Plotly figure with a dropdown over cells (works without a kernel)."""
    cell_ids, titles = list(cell_ids), list(titles or cell_ids)
    fig = go.Figure()
    for cid in cell_ids:
        strip = gallery_strip(store.load_arrays(cid))
        fig.add_trace(go.Image(source=_png_uri(np.repeat(strip[..., None], 3, axis=2)), name=cid,
                               hovertemplate=f"{cid}<extra></extra>"))
    _initial_visibility(fig, titles, titles)
    if cell_ids:   # the line between the 8 normal and the 8 anomalous images
        half = gallery_strip(store.load_arrays(cell_ids[0])).shape[1] / 2 - 0.5
        fig.add_vline(x=half, line=dict(color="red", width=2))
    _layout(fig, "Test images (top) and reconstructions (bottom): 8 normal | 8 anomalous",
            [_group_menu(titles, titles)], height=330)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


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
