"""Where paper B's held-out images go: the normal class whose capsule is longest for each
anomalous test image, the class the decoder then rebuilds it as (paper B, Fig. 3: 9s rebuilt as
4s). Read from the class-capsule lengths a novelty CapsNet cell stores per test image."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from capslib.core.config import held_out_label, parse_novelty_cell_id
from capslib.run.store.results import ResultsStore
from capslib.views.figures.common import _empty, _layout


def taken_for(lengths: np.ndarray, labels: np.ndarray, held_out: tuple[int, ...]) -> np.ndarray:
    """Share of the anomalous images (labels == 1) whose longest capsule is each original class
    0..n−1 (n = capsules + held-out classes); NaN at the held-out classes, which have no capsule."""
    n = lengths.shape[1] + len(held_out)
    normal_classes = np.setdiff1d(np.arange(n), held_out)
    said = normal_classes[lengths[labels == 1].argmax(axis=1)]
    share = np.bincount(said, minlength=n) / max(len(said), 1)
    share = share.astype(float)
    share[list(held_out)] = np.nan
    return share


def assignment_table(store: ResultsStore, df: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """One row per held-out case of ``dataset`` (label like "9" or "0+3+5"), one column per
    original class: :func:`taken_for`, averaged over the seeds that stored capsule lengths."""
    cells = df[(df["protocol"] == "novelty") & (df["method"] == "capsnet") & (df["dataset"] == dataset)]
    rows: dict[str, list[np.ndarray]] = {}
    for cell_id in sorted(set(cells["cell_id"])):
        a = store.load_arrays(cell_id, only=lambda k: k in ("test_lengths", "test_labels"))
        if "test_lengths" not in a:
            continue
        held = parse_novelty_cell_id(cell_id)["held_out"]
        rows.setdefault(held_out_label(held), []).append(taken_for(a["test_lengths"], a["test_labels"], held))
    if not rows:
        return pd.DataFrame()
    order = sorted(rows, key=lambda h: (h.count("+"), [int(c) for c in h.split("+")]))
    # NaN stays at the held-out classes, the same in every seed
    table = pd.DataFrame({h: np.mean(np.stack(rows[h]), axis=0) for h in order}).T
    table.index.name, table.columns.name = "held out", "taken for class"
    return table


def assignment_figure(store: ResultsStore, df: pd.DataFrame, dataset: str) -> go.Figure:
    """Heatmap of :func:`assignment_table`: a row per held-out case, the share of its anomalous
    test images that the CapsNet classifies as each normal class (blank: the held-out classes)."""
    title = f"CapsNet · {dataset}: the normal class each held-out image is taken for"
    table = assignment_table(store, df, dataset)
    if table.empty:
        return _empty(title)
    z = table.to_numpy()
    text = [["" if np.isnan(v) else f"{100 * v:.0f}%" for v in row] for row in z]
    fig = go.Figure(go.Heatmap(z=z, x=[str(c) for c in table.columns], y=list(table.index), text=text,
                               texttemplate="%{text}", colorscale="Blues", zmin=0, zmax=1,
                               colorbar=dict(title="share", tickformat=".0%", lenmode="pixels", len=max(90, 70 * len(table))),
                               hovertemplate="held out %{y}: %{z:.1%} taken for %{x}<extra></extra>"))
    fig.update_xaxes(title_text="the longest capsule's class (the decoder rebuilds the image as this class)",
                     type="category")
    fig.update_yaxes(title_text="held-out class(es)", type="category", autorange="reversed")
    _layout(fig, title, [], height=210 + 70 * len(table))       # about 70 px a row of plot
    fig.update_layout(plot_bgcolor="white")                       # the held-out classes stay blank
    fig.update_xaxes(showgrid=False)
    fig.update_yaxes(showgrid=False)
    return fig
