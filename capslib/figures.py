"""Figures for the book: Plotly figures that stay interactive in the static HTML (no
kernel, no internet) and matplotlib reconstruction galleries.

Interactivity without a kernel comes from Plotly ``updatemenus``: one dropdown picks the
cell (normal class and anomaly fraction, or the held-out class) by setting every trace's
``visible``; a second one picks the score or metric by restyling the traces' ``x``/``y``.
The two change different attributes, so they compose. Every number drawn is read from a
results store (per-image scores in ``arrays.npz``, metrics in the rows). Scores follow the
library's convention: higher = more anomalous.
"""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import report
from .store import ResultsStore

LABELS = {"length_difference": "‖z_a‖ − ‖z_n‖", "r_l": "r_l (reconstruction MSE)", "anomaly_score": "AS",
          "pp": "−PP", "re": "−RE", "routing_gini": "routing Gini"}
ROC_SCORES = {"imbalanced": ("length_difference", "r_l", "anomaly_score"), "novelty": None}
SCORE_ORDER = ["length_difference", "r_l", "anomaly_score", "routing_gini", "pp", "re"]
VARIANT_ORDER = {"standard": 0, "proposed": 1}
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"]


def show(fig: go.Figure) -> None:
    """Display a figure in one bundle of two mime types: HTML that uses the site's plotly.js
    (the book loads it once per site; see BOOK-NOTES), which the static book shows, and
    Plotly's own mime type, which JupyterLab draws. The book drops the latter through the
    myst-nb plugin :mod:`capslib.mystnb_plotly`, so it builds without warnings."""
    from IPython.display import display
    html = fig.to_html(include_plotlyjs=False, full_html=False)
    display({"text/html": html, "application/vnd.plotly.v1+json": json.loads(fig.to_json())}, raw=True)


def label(score: str) -> str:
    """Display name of a score or ``method:score`` column."""
    method, _, s = score.rpartition(":")
    name = LABELS.get(s, s)
    return name if method in ("", "capsnet") else f"{method} {name}"


def _seed(df: pd.DataFrame, seed) -> int | None:
    return int(df["seed"].min()) if seed is None and len(df) else seed


def _cells(df: pd.DataFrame, protocol: str, dataset: str, seed=None) -> pd.DataFrame:
    """One row per cell of one protocol/dataset/seed with its group and panel labels."""
    sel = df[(df["protocol"] == protocol) & (df["dataset"] == dataset)]
    sel = sel[sel["seed"] == _seed(sel, seed)].drop_duplicates("cell_id").copy()
    if protocol == "imbalanced":
        sel["group"] = [f"normal class {c} · {f:.0%} anomalies" for c, f in zip(sel["normal_class"], sel["anomaly_fraction"])]
        sel["_order"] = [(-f, c) for c, f in zip(sel["normal_class"], sel["anomaly_fraction"])]
        sel["panel"] = [v if m == "capsnet" else m for m, v in zip(sel["method"], sel["variant"])]
    else:
        order = report.held_out_order(sel["held_out"])
        sel["group"] = "held-out " + sel["held_out"]
        sel["_order"] = [order.index(h) for h in sel["held_out"]]
        sel["panel"] = ""
    return sel.sort_values(["_order", "panel", "method"])


def _groups(cells: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(cells["group"]))


def _panels(cells: pd.DataFrame) -> list[str]:
    order = {"standard": 0, "proposed": 1}
    return sorted(cells["panel"].unique(), key=lambda p: (order.get(p, 2), p))


def _scores_of(arrays: dict, method: str, wanted=None) -> list[str]:
    have = [k[len("score_"):] for k in arrays if k.startswith("score_")]
    if wanted is not None and method == "capsnet":
        return [s for s in wanted if s in have]
    return have


def _menu(options: list, x: float = 0.0, name: str = "group") -> dict:
    """A dropdown of ``(label, restyle args)`` options, placed above the plot area."""
    return dict(buttons=[dict(label=lab, method="restyle", args=args) for lab, args in options], direction="down",
                x=x, y=1.1, xanchor="left", yanchor="bottom", active=0, showactive=True, name=name)


def _group_menu(groups: list[str], trace_groups: list, x: float = 0.0) -> dict:
    """A dropdown choosing one group; traces whose group is None stay visible."""
    return _menu([(g, [{"visible": [tg is None or tg == g for tg in trace_groups]}]) for g in groups], x, "group")


def _layout(fig: go.Figure, title: str, menus: list, height: int = 480) -> None:
    # the legend runs along the bottom, so that two panels side by side keep about 300 px each
    fig.update_layout(title=dict(text=title, x=0.01, xanchor="left", y=0.98, yanchor="top"), height=height + 60,
                      margin=dict(t=140, b=110, l=70, r=20), updatemenus=menus,
                      legend=dict(orientation="h", yref="container", y=0.0, yanchor="bottom", x=0, xanchor="left"))


def _column_key(c: str):
    method, _, s = c.rpartition(":")
    return (method != "capsnet", method, SCORE_ORDER.index(s) if s in SCORE_ORDER else len(SCORE_ORDER), s)


def _initial_visibility(fig: go.Figure, groups: list[str], trace_groups: list) -> None:
    for tr, g in zip(fig.data, trace_groups):
        tr.visible = g is None or (bool(groups) and g == groups[0])


PANEL_HEIGHT = 320   # px per row of panels; two panels a row keep each about 300 px wide or more


def _grid(panels: list[str]) -> tuple[int, int]:
    """(rows, cols) for the panels: at most two side by side, the rest wrapped into rows."""
    cols = 1 if len(panels) == 1 else 2
    return -(-len(panels) // cols), cols


def _pos(i: int, cols: int) -> tuple[int, int]:
    return i // cols + 1, i % cols + 1


def _empty(title: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=f"{title}: no results", height=200)
    return fig


# ---- (a) ROC curves -----------------------------------------------------------------------

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


# ---- (b) score distributions ------------------------------------------------------------------

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


# ---- (c) grouped bars of every method and score ---------------------------------------------

def bars_figure(df: pd.DataFrame, dataset: str, protocol: str = "novelty", metrics=("auroc", "auprc")) -> go.Figure:
    """Mean ± std over seeds per class for every ``method:score`` (paper B Figs. 5–7). Under
    protocol imbalanced a dropdown picks the (variant, fraction) row; another the metric."""
    sel = df[(df["protocol"] == protocol) & (df["dataset"] == dataset)].copy()
    if sel.empty:
        return _empty(f"Per-class {protocol}, {dataset}")
    sel["column"] = sel["method"] + ":" + sel["score"]
    if protocol == "novelty":
        sel["x"], sel["group"] = sel["held_out"], ""
        xs = report.held_out_order(sel["x"])
    else:
        sel["x"] = sel["normal_class"].astype(str)
        sel["group"] = [f"{v or m} · {f:.0%} anomalies" for m, v, f in zip(sel["method"], sel["variant"], sel["anomaly_fraction"])]
        sel["_key"] = [(-f, VARIANT_ORDER.get(v, 2), m) for m, v, f in zip(sel["method"], sel["variant"], sel["anomaly_fraction"])]
        xs = sorted(sel["x"].unique(), key=int)
    keys = ["group", "column"]
    aggs = {m: report._agg(sel, keys + ["x"], m) for m in metrics}
    fig, trace_groups = go.Figure(), []
    pairs = sel[keys].drop_duplicates()
    order = dict(zip(sel["group"], sel.get("_key", sel["group"])))
    groups = sorted((g for g in dict.fromkeys(pairs["group"]) if g), key=lambda g: order[g])
    cols = sorted(pairs["column"].unique(), key=_column_key)
    pairs = pairs.sort_values("column", key=lambda s: s.map(lambda c: cols.index(c)), kind="stable")
    per_metric = {m: {"y": [], "error_y": []} for m in metrics}
    for g, c in pairs.itertuples(index=False):
        fig.add_trace(go.Bar(name=label(c), x=xs, marker_color=COLORS[cols.index(c) % len(COLORS)], legendgroup=c))
        trace_groups.append(g or None)
        for m in metrics:
            a = aggs[m]
            a = a[(a["group"] == g) & (a["column"] == c)].set_index("x").reindex(xs)
            per_metric[m]["y"].append(a["mean"].round(4).tolist())
            per_metric[m]["error_y"].append(dict(type="data", array=a["std"].fillna(0).round(4).tolist(),
                                                 visible=bool((a["n"] >= 2).any())))   # no bars from one seed
    for i, tr in enumerate(fig.data):
        tr.y, tr.error_y = per_metric[metrics[0]]["y"][i], per_metric[metrics[0]]["error_y"][i]
    menus = [_menu([(m.upper(), [per_metric[m]]) for m in metrics], x=0.55 if groups else 0.0, name="metric")]
    if groups:
        _initial_visibility(fig, groups, trace_groups)
        menus.insert(0, _group_menu(groups, trace_groups))
    fig.update_layout(barmode="group", xaxis_title="held-out class(es)" if protocol == "novelty" else "normal class",
                      yaxis=dict(title="metric", range=[0, 1.02]))
    _layout(fig, f"Per-class results · {protocol} · {dataset} (mean over seeds; error bars: std, with ≥ 2 seeds)", menus)
    return fig


# ---- (d) paper vs ours ------------------------------------------------------------------------

def accuracy_figure(df: pd.DataFrame, dataset: str) -> go.Figure:
    """Paper A's accuracy per normal class beside ours (mean ± std over seeds); a dropdown
    picks the (variant, fraction) row."""
    long = report.accuracy_long(df)
    long = long[long["dataset"] == dataset]
    if long.empty:
        return _empty(f"Accuracy vs paper A, {dataset}")
    ref = long["reference"].iloc[0]
    fig, trace_groups = go.Figure(), []
    rows = [f"{v} {f:.0%}" for (v, f), _ in report._row_groups(long)]
    for (v, f), g in report._row_groups(long):
        x = [str(c) for c in g["normal_class"]]
        fig.add_trace(go.Bar(name=f"ours ({dataset})", x=x, y=g["mean"].round(2), marker_color=COLORS[0],
                             error_y=dict(type="data", array=g["std"].fillna(0).round(2),
                                          visible=bool((g["n"] >= 2).any())),   # no bars from one seed
                             legendgroup="ours"))
        fig.add_trace(go.Bar(name=f"paper A ({ref})", x=x, y=g["paper"], marker_color=COLORS[4],
                             legendgroup="paper"))
        trace_groups += [f"{v} {f:.0%}"] * 2
    _initial_visibility(fig, rows, trace_groups)
    fig.update_layout(barmode="group", xaxis_title="normal class ('mean': over the classes run)",
                      yaxis=dict(title="accuracy %", range=[0, 101]))
    _layout(fig, f"Accuracy % per normal class · {dataset} vs paper A ({ref})", [_group_menu(rows, trace_groups)])
    return fig


# ---- reconstruction galleries ---------------------------------------------------------------------

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
