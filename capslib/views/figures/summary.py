"""Summary figures: grouped bars of every method and score, and ours against the paper."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from capslib.core.config import held_out_label, parse_novelty_cell_id
from capslib.views import report
from capslib.views.report.fmt import _agg
from capslib.views.report.paper_a import row_groups

from capslib.views.figures.common import (COLORS, VARIANT_ORDER, _column_key, _empty, _group_menu,
    _initial_visibility, _layout, _menu, label)


def bars_figure(df: pd.DataFrame, dataset: str, protocol: str = "novelty", metrics=("auroc", "auprc")) -> go.Figure:
    """Mean ± std over seeds per class for every ``method:score`` (paper B Figs. 5–7). Under
    protocol imbalanced a dropdown picks the (variant, fraction) row; another the metric."""
    sel = df[(df["protocol"] == protocol) & (df["dataset"] == dataset)].copy()
    if sel.empty:
        return _empty(f"Per-class {protocol}, {dataset}")
    sel["column"] = sel["method"] + ":" + sel["score"]
    if protocol == "novelty":
        sel["x"], sel["group"] = sel["held_out"], ""
        xs = report.held_out_order([*sel["x"], *_asked_held_outs(df, dataset)])
    else:
        sel["x"] = sel["normal_class"].astype(str)
        sel["group"] = [f"{v or m} · {f:.0%} anomalies" for m, v, f in zip(sel["method"], sel["variant"], sel["anomaly_fraction"])]
        sel["_key"] = [(-f, VARIANT_ORDER.get(v, 2), m) for m, v, f in zip(sel["method"], sel["variant"], sel["anomaly_fraction"])]
        xs = sorted(sel["x"].unique(), key=int)
    keys = ["group", "column"]
    aggs = {m: _agg(sel, keys + ["x"], m) for m in metrics}
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
    for x in sorted(set(xs) - set(sel["x"]), key=xs.index):     # asked for, no cell yet: a visible gap
        fig.add_annotation(x=x, y=0.02, text="no cell yet", showarrow=False, textangle=-90, yanchor="bottom",
                           font=dict(size=11, color="#888"))
    fig.update_layout(barmode="group", xaxis_title="held-out class(es)" if protocol == "novelty" else "normal class",
                      xaxis_type="category", yaxis=dict(title="metric", range=[0, 1.02]))
    _layout(fig, f"Per-class results · {protocol} · {dataset}<br>mean over seeds; error bars: std, with ≥ 2 seeds", menus)
    return fig


def _asked_held_outs(df: pd.DataFrame, dataset: str) -> list[str]:
    """The held-out labels ("2", "0+3+5") of the novelty cells asked for on ``dataset``
    (``df.attrs["cells"]``), whether or not they have finished."""
    return [held_out_label(p["held_out"]) for cid in df.attrs.get("cells", [])
            if (p := parse_novelty_cell_id(cid)) and p["dataset"] == dataset]


def accuracy_figure(df: pd.DataFrame, dataset: str) -> go.Figure:
    """Paper A's accuracy per normal class beside ours (mean ± std over seeds); a dropdown
    picks the (variant, fraction) row."""
    long = report.accuracy_long(df)
    long = long[long["dataset"] == dataset]
    if long.empty:
        return _empty(f"Accuracy vs paper A, {dataset}")
    ref = long["reference"].iloc[0]
    fig, trace_groups = go.Figure(), []
    rows = [f"{v} {f:.0%}" for (v, f), _ in row_groups(long)]
    for (v, f), g in row_groups(long):
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
