"""What every figure shares: score labels, colours, dropdown menus, panel grids and layout."""
from __future__ import annotations

import json

import pandas as pd
import plotly.graph_objects as go

from capslib.views import report


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
    myst-nb plugin :mod:`capslib.book.mystnb_plotly`, so it builds without warnings."""
    from IPython.display import display
    if not isinstance(fig, go.Figure):   # a chooser (chooser.py) brings its own mime bundle
        display(fig)
        return
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


def _all_seeds(df: pd.DataFrame, protocol: str, dataset: str, seed=None) -> list[int]:
    """The seeds a chooser offers: the one asked for, else every seed with a cell (smallest first)."""
    sel = df[(df["protocol"] == protocol) & (df["dataset"] == dataset)]
    return [int(seed)] if seed is not None else sorted(int(s) for s in sel["seed"].unique())


def _group_label(protocol: str) -> str:
    """What a chooser's cell menu picks."""
    return "normal class" if protocol == "imbalanced" else "held-out class"


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


def _empty(title: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=f"{title}: no results", height=200)
    return fig
