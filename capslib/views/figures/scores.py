"""Per-image scores as figures: ROC curves and score distributions, drawn for the cell a reader
picks (a :class:`~capslib.views.figures.chooser.Chooser`)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from plotly.subplots import make_subplots

from capslib.model.scores import roc_points
from capslib.run.store.results import ResultsStore

from capslib.views.figures.chooser import FPR_GRID, Chooser, encode, roc_at_grid
from capslib.views.figures.common import (COLORS, PANEL_HEIGHT, ROC_SCORES, _all_seeds, _cells, _empty, _grid,
    _group_label, _layout, _panels, _scores_of, label)


def _frame(df: pd.DataFrame, protocol: str, dataset: str, seeds: list[int]) -> pd.DataFrame:
    """Every cell of the chosen seeds, labelled as :func:`_cells` labels one seed's."""
    return pd.concat([_cells(df, protocol, dataset, s) for s in seeds], ignore_index=True) if seeds else pd.DataFrame()


def _groups_by_seed(cells: pd.DataFrame) -> dict:
    return {str(int(s)): list(dict.fromkeys(g["group"])) for s, g in cells.groupby("seed", sort=True)}


def _subplots(panels: list[str], protocol: str):
    rows, cols = _grid(panels)
    fig = make_subplots(rows, cols, subplot_titles=[p or protocol for p in panels], shared_yaxes=True,
                        vertical_spacing=0.16, horizontal_spacing=0.05)
    return fig, rows, cols


def roc_figure(store: ResultsStore, df: pd.DataFrame, dataset: str, protocol: str = "imbalanced",
               seed=None, scores=None) -> Chooser:
    """ROC curves of several scores on one cell's test set (paper A Fig. 2; paper B Figs. 2,
    4), one panel per variant (or baseline method); menus pick the seed and the cell. The
    curves are kept at :data:`FPR_GRID`'s false-positive rates (see ``chooser.py``)."""
    seeds = _all_seeds(df, protocol, dataset, seed)
    cells = _frame(df, protocol, dataset, seeds)
    wanted = ROC_SCORES.get(protocol) if scores is None else scores
    if cells.empty:
        return Chooser("roc", _empty_payload(), _empty(f"ROC, {protocol}, {dataset}").to_plotly_json()["layout"])
    panels = _panels(cells)
    fig, rows, cols = _subplots(panels, protocol)
    items, names, table = [], [], _cell_table(cells, panels)
    aurocs = _by_cell_and_score(df, "auroc")
    for c, (_, cell) in enumerate(cells.iterrows()):
        arrays = store.load_arrays(cell["cell_id"], only=lambda k: k == "test_labels" or k.startswith("score_"))
        for s in _scores_of(arrays, cell["method"], wanted):
            name = label(f"{cell['method']}:{s}")
            if name not in names:
                names.append(name)
            fpr, tpr = roc_points(arrays[f"score_{s}"], arrays["test_labels"])
            auc = aurocs.get((cell["cell_id"], s))
            items.append(dict(c=c, n=names.index(name),
                              a=round(float(auc), 4) if auc is not None and np.isfinite(auc) else None,
                              t=encode(np.round(roc_at_grid(fpr, tpr) * 65535), "u2")))
    # near AUROC 1 the curves hug the left edge: the false-positive axis is log-scaled by default
    # (1e-4 .. 1), which spreads the few false positives out; a button switches back to linear
    fig.update_xaxes(type="log", range=[-4, 0], dtick=1, exponentformat="power")
    fig.update_yaxes(range=[0, 1.01])
    fig.update_xaxes(title_text="false positive rate (log scale)", row=rows, col=1)   # one title for all panels
    fig.update_yaxes(title_text="true positive rate", col=1)
    n_x = rows * cols
    scale = dict(buttons=[dict(label=lab, method="relayout", args=[{
        **{f"xaxis{i if i > 1 else ''}.type": t for i in range(1, n_x + 1)},
        **{f"xaxis{i if i > 1 else ''}.range": r for i in range(1, n_x + 1)},
        f"xaxis{(rows - 1) * cols + 1 if (rows - 1) * cols + 1 > 1 else ''}.title.text": title}])
        for lab, t, r, title in (("log FPR", "log", [-4, 0], "false positive rate (log scale)"),
                                 ("linear FPR", "linear", [0, 1], "false positive rate"))],
        type="buttons", direction="right", x=0.0, y=1.1, xanchor="left", yanchor="bottom", showactive=True)
    _layout(fig, f"ROC curves · {protocol} · {dataset}", [scale], height=PANEL_HEIGHT * rows + 170)
    fig.update_layout(margin=dict(t=100))   # room for the FPR buttons; the menus are the page's, above
    payload = dict(seeds=seeds, groups=_groups_by_seed(cells), group_label=_group_label(protocol), panels=panels,
                   cells=table, names=names, name_colors=[COLORS[i % len(COLORS)] for i in range(len(names))],
                   fpr=[_sig(x) for x in FPR_GRID], chance=np.logspace(-4, 0, 9).round(6).tolist(), items=items)
    return Chooser("roc", payload, fig.to_plotly_json()["layout"])


def _by_cell_and_score(df: pd.DataFrame, column: str) -> dict:
    """{(cell id, score): the first row's ``column``}: one pass over the rows, read per cell."""
    out = {}
    for key, v in zip(zip(df["cell_id"], df["score"]), df[column]):
        out.setdefault(key, v)
    return out


def _cell_table(cells: pd.DataFrame, panels: list[str]) -> list[list]:
    """``[seed, group, panel index, cell id]`` per cell, which the payload's items index."""
    return [[int(s), g, panels.index(p), cid] for s, g, p, cid in
            zip(cells["seed"], cells["group"], cells["panel"], cells["cell_id"])]


def _sig(x: float, digits: int = 5) -> float:
    """``x`` to ``digits`` significant digits: the payload's floats."""
    return float(f"{x:.{digits}g}")


def _empty_payload() -> dict:
    return dict(seeds=[], groups={}, panels=[], cells=[], items=[], scores=[])


def distribution_figure(store: ResultsStore, df: pd.DataFrame, dataset: str, protocol: str = "imbalanced",
                        seed=None, default_score: str | None = None, bins: int = 32) -> Chooser:
    """Test-set score histograms, normal vs anomalous, with the decision threshold where the
    score has one (paper A Fig. 3: AS and the logistic threshold). Menus: the seed, the cell
    and the score; the y axis is the share of that label's test images per bin."""
    seeds = _all_seeds(df, protocol, dataset, seed)
    cells = _frame(df, protocol, dataset, seeds)
    if cells.empty:
        return Chooser("hist", _empty_payload(), _empty(f"Scores, {protocol}, {dataset}").to_plotly_json()["layout"])
    panels = _panels(cells)
    fig, rows, cols = _subplots(panels, protocol)
    items, options, table = [], {}, _cell_table(cells, panels)
    thresholds = _by_cell_and_score(df, "threshold")
    for c, (_, cell) in enumerate(cells.iterrows()):
        cid = cell["cell_id"]
        a = store.load_arrays(cid, only=lambda k: k == "test_labels" or k.startswith("score_"))
        labels = a["test_labels"].astype(bool)
        for s in _scores_of(a, cell["method"]):
            key = f"{cell['method']}:{s}"
            options[key] = label(key)
            v = a[f"score_{s}"].astype(np.float64)
            thr = thresholds.get((cid, s))
            thr = float(thr) if thr is not None and np.isfinite(thr) else None
            lo, hi = float(v.min()), float(v.max())
            if thr is not None:
                lo, hi = min(lo, thr), max(hi, thr)
            lo, hi = _sig(lo), _sig(hi)
            hi = hi if hi > lo else lo + 1e-6
            item = dict(c=c, sc=key, lo=lo, hi=hi, thr=None if thr is None else _sig(thr))
            for tag, sel in (("N", ~labels), ("A", labels)):
                # clipped into the rounded range: a value just outside lands in the edge bin, not nowhere
                counts, _ = np.histogram(np.clip(v[sel], lo, hi), bins=bins, range=(lo, hi))
                share = counts / max(int(sel.sum()), 1)
                top = float(share.max()) if len(share) else 0.0
                item[f"m{tag}"] = _sig(top)
                item[f"h{tag}"] = encode(np.round(share / top * 255) if top > 0 else np.zeros(bins), "u1")
            items.append(item)
    default = default_score or ("capsnet:anomaly_score" if protocol == "imbalanced" else "capsnet:pp")
    scores = sorted(options, key=lambda o: (o != default, not o.startswith("capsnet:"), o))
    for it in items:
        it["sc"] = scores.index(it["sc"])
    fig.update_layout(barmode="overlay")
    _layout(fig, f"Test scores · {protocol} · {dataset}", [], height=PANEL_HEIGHT * rows + 170)
    fig.update_layout(margin=dict(t=70))
    fig.update_xaxes(title_text="anomaly score (higher = more anomalous)", row=rows, col=1)   # one title
    fig.update_yaxes(title_text="share of the label's test images", col=1)
    payload = dict(seeds=seeds, groups=_groups_by_seed(cells), group_label=_group_label(protocol), panels=panels,
                   cells=table, scores=scores, score_labels=options, bins=bins, colors=COLORS[:2], items=items)
    return Chooser("hist", payload, fig.to_plotly_json()["layout"])
