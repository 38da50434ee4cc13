"""The stall rule in one picture: every training of paper A's CapsNet, its accuracy against its
last training loss and against the anomaly capsule's length on normal test images."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from capslib.run.store.results import ResultsStore
from capslib.run.store.schema import PLATEAU_LOSS
from capslib.views import report
from capslib.views.figures.common import COLORS, _empty, _layout

ROWS = ["standard 10%", "proposed 10%", "standard 1%", "proposed 1%"]


def anomaly_capsule_length(store: ResultsStore, cell_id: str) -> float:
    """Median length of the anomaly capsule z_a over a cell's normal test images (near 1 when the
    training stalled with that capsule saturated "on")."""
    a = store.load_arrays(cell_id, only=lambda k: k in ("test_lengths", "test_labels"))
    return float(np.median(a["test_lengths"][a["test_labels"] == 0, 1])) if "test_lengths" in a else np.nan


def stall_figure(store: ResultsStore, every: pd.DataFrame, dataset: str) -> go.Figure:
    """Accuracy (the paper's decision of each variant) of every training of one dataset's paper-A
    CapsNet cells, against its last training loss (left) and its median ‖z_a‖ on normal test
    images (right); filled markers converged, open markers stalled."""
    h = report.headline(every[(every["protocol"] == "imbalanced") & (every["method"] == "capsnet")
                              & (every["dataset"] == dataset)])
    if h.empty:
        return _empty(f"Accuracy against the loss plateau, {dataset}")
    h = h.drop_duplicates("cell_id").copy()
    h["row"] = [report.ROW_LABEL.format(variant=v, fraction=f) for v, f in zip(h["variant"], h["anomaly_fraction"])]
    h["za"] = [anomaly_capsule_length(store, c) for c in h["cell_id"]]
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=("last training loss", "median ‖z_a‖, normal test images"))
    for i, row in enumerate(r for r in ROWS if r in set(h["row"])):
        for is_stalled in (False, True):
            g = h[(h["row"] == row) & ((h["stalled"] == "yes") == is_stalled)]
            if g.empty:
                continue
            text = [f"{c}<br>attempt {a}" for c, a in zip(g["cell_id"], g["attempt"])]
            marker = dict(color=COLORS[i], size=8, symbol="circle-open" if is_stalled else "circle",
                          line=dict(width=2 if is_stalled else 0))
            name = f"{row}{' (stalled)' if is_stalled else ''}"
            for col, x in ((1, g["final_loss"]), (2, g["za"])):
                fig.add_trace(go.Scatter(x=x, y=(100 * g["accuracy"]).round(2), mode="markers", marker=marker,
                                         name=name, legendgroup=name, showlegend=col == 1, text=text,
                                         hovertemplate="%{text}<br>x %{x:.3g}, accuracy %{y:.2f}%<extra></extra>"),
                              row=1, col=col)
    fig.add_vline(x=PLATEAU_LOSS, line_dash="dot", line_color="#7f7f7f", row=1, col=1)
    fig.update_xaxes(type="log", title_text="loss (log scale; dotted: the rule's 0.3)", row=1, col=1)
    fig.update_xaxes(title_text="‖z_a‖ (1: the anomaly capsule always on)", range=[0, 1.05], row=1, col=2)
    fig.update_yaxes(title_text="accuracy % (the paper's decision)", range=[0, 101], row=1, col=1)
    _layout(fig, f"Every training of paper A's CapsNet · {dataset}: accuracy against the loss plateau", [])
    return fig
