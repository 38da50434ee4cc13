"""Per-image scores as figures: ROC curves and score distributions, one dropdown entry per
normal class or held-out class."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from capslib.run.store.results import ResultsStore

from capslib.views.figures.common import (COLORS, PANEL_HEIGHT, ROC_SCORES, _cells, _empty, _grid,
    _group_menu, _groups, _initial_visibility, _layout, _menu, _panels, _pos, _scores_of, _seed, label)


def roc_figure(store: ResultsStore, df: pd.DataFrame, dataset: str, protocol: str = "imbalanced",
               seed=None, scores=None) -> go.Figure:
    """ROC curves of several scores on one cell's test set (paper A Fig. 2; paper B Figs. 2,
    4), one panel per variant (or baseline method); a dropdown picks the cell."""
    from sklearn.metrics import roc_curve

    cells = _cells(df, protocol, dataset, seed)
    if cells.empty:
        return _empty(f"ROC, {protocol}, {dataset}")
    wanted = ROC_SCORES.get(protocol) if scores is None else scores
    panels, groups = _panels(cells), _groups(cells)
    rows, cols = _grid(panels)
    fig = make_subplots(rows, cols, subplot_titles=[p or protocol for p in panels], shared_yaxes=True,
                        vertical_spacing=0.16, horizontal_spacing=0.05)
    trace_groups, seen, colors = [], set(), {}
    for _, cell in cells.iterrows():
        arrays = store.load_arrays(cell["cell_id"])
        row, col = _pos(panels.index(cell["panel"]), cols)
        for s in _scores_of(arrays, cell["method"], wanted):
            name = label(f"{cell['method']}:{s}")
            colors.setdefault(name, COLORS[len(colors) % len(COLORS)])
            fpr, tpr, _ = roc_curve(arrays["test_labels"], arrays[f"score_{s}"], drop_intermediate=True)
            auc = df.loc[(df["cell_id"] == cell["cell_id"]) & (df["score"] == s), "auroc"]
            fig.add_trace(go.Scatter(
                x=np.round(fpr, 4), y=np.round(tpr, 4), mode="lines", name=name, legendgroup=name,
                line=dict(color=colors[name]), showlegend=(cell["group"], name) not in seen,
                hovertemplate=f"{name}<br>AUROC {auc.iloc[0]:.4f}<br>FPR %{{x}}<br>TPR %{{y}}<extra>{cell['cell_id']}</extra>"),
                row=row, col=col)
            seen.add((cell["group"], name))
            trace_groups.append(cell["group"])
    chance = np.logspace(-4, 0, 50)
    for i in range(len(panels)):
        row, col = _pos(i, cols)
        fig.add_trace(go.Scatter(x=chance, y=chance, mode="lines", line=dict(dash="dot", color="grey"),
                                 name="chance", showlegend=i == 0, hoverinfo="skip"), row=row, col=col)
        trace_groups.append(None)
    _initial_visibility(fig, groups, trace_groups)
    # near AUROC 1 the curves hug the left edge: the false-positive axis is log-scaled by default
    # (1e-4 .. 1), which spreads the few false positives out; a button switches back to linear
    fig.update_xaxes(type="log", range=[-4, 0], dtick=1, exponentformat="power")
    fig.update_yaxes(range=[0, 1.01])
    fig.update_xaxes(title_text="false positive rate (log scale)", row=rows, col=1)   # one title for all panels
    fig.update_yaxes(title_text="true positive rate", col=1)
    n_x = len(panels)
    scale = dict(buttons=[dict(label=lab, method="relayout", args=[{
        **{f"xaxis{i if i > 1 else ''}.type": t for i in range(1, n_x + 1)},
        **{f"xaxis{i if i > 1 else ''}.range": r for i in range(1, n_x + 1)},
        f"xaxis{(rows - 1) * cols + 1 if (rows - 1) * cols + 1 > 1 else ''}.title.text": title}])
        for lab, t, r, title in (("log FPR", "log", [-4, 0], "false positive rate (log scale)"),
                                 ("linear FPR", "linear", [0, 1], "false positive rate"))],
        type="buttons", direction="right", x=0.62, y=1.1, xanchor="left", yanchor="bottom", showactive=True)
    _layout(fig, f"ROC curves · {protocol} · {dataset} · seed {_seed(cells, seed)}",
            [_group_menu(groups, trace_groups), scale], height=PANEL_HEIGHT * rows + 170)
    return fig


def _hist(values: np.ndarray, lo: float, hi: float, bins: int) -> tuple[list, list, float]:
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    share = counts / max(len(values), 1)
    return np.round((edges[:-1] + edges[1:]) / 2, 5).tolist(), np.round(share, 5).tolist(), float(edges[1] - edges[0])


def distribution_figure(store: ResultsStore, df: pd.DataFrame, dataset: str, protocol: str = "imbalanced",
                        seed=None, default_score: str | None = None, bins: int = 40) -> go.Figure:
    """Test-set score histograms, normal vs anomalous, with the decision threshold where the
    score has one (paper A Fig. 3: AS and the logistic threshold). Dropdowns: the cell and
    the score; the y axis is the share of that label's test images per bin."""
    cells = _cells(df, protocol, dataset, seed)
    if cells.empty:
        return _empty(f"Scores, {protocol}, {dataset}")
    panels, groups = _panels(cells), _groups(cells)
    loaded = {cid: store.load_arrays(cid) for cid in cells["cell_id"]}
    options = list(dict.fromkeys(f"{m}:{s}" for cid, m in zip(cells["cell_id"], cells["method"])
                                 for s in _scores_of(loaded[cid], m)))
    default = default_score or ("capsnet:anomaly_score" if protocol == "imbalanced" else "capsnet:pp")
    options.sort(key=lambda o: (o != default, not o.startswith("capsnet:"), o))
    rows, cols = _grid(panels)
    fig = make_subplots(rows, cols, subplot_titles=[p or protocol for p in panels], shared_yaxes=True,
                        vertical_spacing=0.16, horizontal_spacing=0.05)
    trace_groups, seen, per_option = [], set(), {o: {"x": [], "y": [], "width": []} for o in options}
    for _, cell in cells.iterrows():
        a, cid = loaded[cell["cell_id"]], cell["cell_id"]
        row, col = _pos(panels.index(cell["panel"]), cols)
        labels = a["test_labels"].astype(bool)
        for kind, sel, color in (("normal", ~labels, COLORS[0]), ("anomalous", labels, COLORS[1])):
            fig.add_trace(go.Bar(name=f"{kind} test images", marker_color=color, opacity=0.6, legendgroup=kind,
                                 showlegend=(cell["group"], kind) not in seen, hovertemplate=
                                 f"{kind}<br>score %{{x}}<br>share %{{y}}<extra>{cid}</extra>"), row=row, col=col)
            trace_groups.append(cell["group"])
            seen.add((cell["group"], kind))
        fig.add_trace(go.Scatter(mode="lines", name="threshold", line=dict(color="black", dash="dash"),
                                 legendgroup="thr", showlegend=(cell["group"], "thr") not in seen),
                      row=row, col=col)
        trace_groups.append(cell["group"])
        seen.add((cell["group"], "thr"))
        for o in options:
            method, _, s = o.partition(":")
            key = f"score_{s}"
            if method != cell["method"] or key not in a:
                for _ in range(3):
                    per_option[o]["x"].append([]), per_option[o]["y"].append([]), per_option[o]["width"].append(0)
                continue
            v = a[key].astype(np.float64)
            thr = df.loc[(df["cell_id"] == cid) & (df["score"] == s), "threshold"]
            thr = float(thr.iloc[0]) if len(thr) and np.isfinite(thr.iloc[0]) else None
            lo, hi = float(v.min()), float(v.max())
            if thr is not None:
                lo, hi = min(lo, thr), max(hi, thr)
            hi = hi if hi > lo else lo + 1e-6
            top = 0.0
            for sel in (~labels, labels):
                x, y, w = _hist(v[sel], lo, hi, bins)
                top = max([top] + y)
                per_option[o]["x"].append(x), per_option[o]["y"].append(y), per_option[o]["width"].append(w)
            per_option[o]["x"].append([thr, thr] if thr is not None else [])
            per_option[o]["y"].append([0, top] if thr is not None else [])
            per_option[o]["width"].append(0)
    for i, tr in enumerate(fig.data):   # start on the default score
        tr.x, tr.y = per_option[options[0]]["x"][i], per_option[options[0]]["y"][i]
        if isinstance(tr, go.Bar):
            tr.width = per_option[options[0]]["width"][i]
    _initial_visibility(fig, groups, trace_groups)
    # a panel whose method has no such score says so instead of standing empty
    titles = list(fig.layout.annotations)
    methods = dict(zip(cells["panel"], cells["method"]))

    def notes(o):
        method = o.partition(":")[0]
        out = []
        for i, pnl in enumerate(panels):
            if methods.get(pnl) != method:
                ax = i + 1 if i else ""
                out.append(dict(text=f"{pnl or protocol} has no score {label(o)}:<br>pick one of its own in the menu",
                                xref=f"x{ax} domain", yref=f"y{ax} domain", x=0.5, y=0.5, showarrow=False,
                                font=dict(color="grey")))
        return titles + out

    score_menu = dict(_menu([(label(o), [per_option[o], {"annotations": notes(o)}]) for o in options], x=0.55,
                            name="score"))
    for b in score_menu["buttons"]:
        b["method"] = "update"
    fig.update_layout(barmode="overlay", annotations=notes(options[0]) if options else titles)
    _layout(fig, f"Test scores · {protocol} · {dataset} · seed {_seed(cells, seed)}",
            [_group_menu(groups, trace_groups), score_menu], height=PANEL_HEIGHT * rows + 170)
    fig.update_xaxes(title_text="anomaly score (higher = more anomalous)", row=rows, col=1)   # one title
    fig.update_yaxes(title_text="share of the label's test images", col=1)
    return fig
