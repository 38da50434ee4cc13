"""How much CNN+OCSVM's AUROC depends on the RBF kernel's width, from what each cell recorded:
the anomaly-free rule's view (rejection of held-out normal features per γ) beside the oracle's
(test AUROC per γ, which looks at the anomalies and chooses nothing)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from capslib.run.store.results import ResultsStore
from capslib.views.figures.common import COLORS, _empty, _layout


def ocsvm_sweeps(store: ResultsStore, df: pd.DataFrame, dataset: str) -> tuple[pd.DataFrame, list[str]]:
    """One row per (CNN+OCSVM cell of ``dataset``, γ of its grid): log2(γ/γ₀), held-out normal
    rejection, oracle AUROC, whether the rule chose that γ, and the cell's headline AUROC; and the
    ids of the cells that carry no sweep (recorded before it was kept)."""
    cells = df[(df["protocol"] == "novelty") & (df["method"] == "cnn_ocsvm") & (df["dataset"] == dataset)]
    rows, without = [], []
    for cell_id, g in cells.groupby("cell_id", sort=True):
        info = store.load_cell(cell_id).get("info", {})
        if "oracle_auroc_by_gamma" not in info:
            without.append(cell_id)
            continue
        gammas = np.asarray(info["gamma_grid"], dtype=float)
        chosen = info["gamma_grid"].index(info["gamma"])      # the rule picks a γ of its own grid
        for i, (gam, rej, auc) in enumerate(zip(gammas, info["heldout_rejection"], info["oracle_auroc_by_gamma"])):
            rows.append({"cell_id": cell_id, "held_out": g["held_out"].iloc[0], "seed": int(g["seed"].iloc[0]),
                         "log2_gamma_ratio": float(np.round(np.log2(gam / info["gamma0"]), 6)),
                         "heldout_rejection": rej, "tolerance": info["rejection_tolerance"],
                         "oracle_auroc": auc, "chosen": i == chosen, "headline_auroc": float(g["auroc"].iloc[0])})
    return pd.DataFrame(rows), without


def ocsvm_gamma_figure(store: ResultsStore, df: pd.DataFrame, dataset: str) -> go.Figure:
    """Left: each CNN+OCSVM cell's test AUROC against log2(γ/γ₀) (the oracle sweep; the star is
    the headline AUROC of the final OCSVM at the rule's γ). Below: the held-out normal rejection
    rate the rule judges γ by, with its tolerance; the rule keeps the largest γ under it."""
    # two lines: one line of this length is cut at the book's content width
    title = f"CNN+OCSVM · {dataset}: AUROC against the kernel width γ<br>γ₀ = 1/(d·Var), scikit-learn's \"scale\""
    sweeps, without = ocsvm_sweeps(store, df, dataset)
    if sweeps.empty:
        return _empty(title + (f" ({len(without)} cells recorded no sweep)" if without else ""))
    fig = make_subplots(rows=2, cols=1, vertical_spacing=0.16,   # stacked: each panel keeps the page width
                        subplot_titles=("test AUROC (oracle: looks at the anomalies)",
                                        "rejection of held-out normal features (the rule)"))
    for i, (cell_id, g) in enumerate(sweeps.groupby("cell_id", sort=True)):
        color = COLORS[i % len(COLORS)]
        name = f"held out {g['held_out'].iloc[0]}, seed {g['seed'].iloc[0]}"
        pick = g[g["chosen"]]
        fig.add_trace(go.Scatter(x=g["log2_gamma_ratio"], y=g["oracle_auroc"], mode="lines+markers", name=name,
                                 legendgroup=name, line=dict(color=color), text=[cell_id] * len(g),
                                 hovertemplate="%{text}<br>log2(γ/γ₀) %{x}: AUROC %{y:.4f}<extra></extra>"),
                      row=1, col=1)
        fig.add_trace(go.Scatter(x=pick["log2_gamma_ratio"], y=pick["headline_auroc"], mode="markers",
                                 name=f"{name}: headline (rule's γ, final fit)", legendgroup=name, showlegend=False,
                                 marker=dict(symbol="star", size=14, color=color),
                                 hovertemplate="the rule's γ, final OCSVM: AUROC %{y:.4f}<extra></extra>"),
                      row=1, col=1)
        fig.add_trace(go.Scatter(x=g["log2_gamma_ratio"], y=g["heldout_rejection"], mode="lines+markers",
                                 name=name, legendgroup=name, showlegend=False, line=dict(color=color, dash="dash"),
                                 hovertemplate="log2(γ/γ₀) %{x}: rejects %{y:.1%} of held-out normals<extra></extra>"),
                      row=2, col=1)
        fig.add_trace(go.Scatter(x=pick["log2_gamma_ratio"], y=pick["heldout_rejection"], mode="markers",
                                 showlegend=False, legendgroup=name, marker=dict(symbol="star", size=14, color=color),
                                 hovertemplate="the rule's γ<extra></extra>"), row=2, col=1)
    fig.add_hline(y=0.5, line_dash="dot", line_color="#7f7f7f", row=1, col=1)
    fig.add_hline(y=float(sweeps["tolerance"].max()), line_dash="dot", line_color="#7f7f7f", row=2, col=1)
    fig.update_xaxes(title_text="log2(γ/γ₀) (right: a tighter kernel)", dtick=2)
    fig.update_yaxes(title_text="AUROC (dotted: chance)", range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(title_text="rejected (dotted: ν + 2 SE)", range=[0, 1.02], tickformat=".0%", row=2, col=1)
    note = f"; {len(without)} earlier cell(s) recorded no sweep" if without else ""
    _layout(fig, title + note, [], height=720)
    return fig
