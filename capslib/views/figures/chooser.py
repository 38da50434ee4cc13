"""Figures that show one cell at a time, picked from menus in the page.

A page that offered every cell as its own rendered figure would grow with the results store
(about 25 kB per cell, twice over: once as HTML, once as Plotly's JSON). A chooser carries the
cells' data once, compactly, and draws the chosen cell in the browser with the site's plotly.js
(``chooser.js``), without a kernel:

- ROC curves: the true-positive rate at :data:`FPR_GRID`'s fixed false-positive rates, as
  16-bit integers (``tpr · 65535``), base64;
- score histograms: per label, the bar heights as 8-bit integers relative to the tallest bar
  (whose share is kept as a float), base64;
- galleries: one small 8-bit PNG per cell in a folder beside the page (see ``galleries.py``),
  loaded when the reader picks the cell.

The same payload also gives the figure of the first choice in Python (:meth:`Chooser.figure`):
JupyterLab shows it (Plotly's mime type), tests read it, and ``chooser.js`` builds its traces
the same way.
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import plotly.graph_objects as go

# false-positive rates at which a ROC curve is kept: 49 log-spaced (1e-4 .. 1, 12 per decade) for
# the default log axis, 26 linear ones for the linear axis; the union, sorted (74 points)
FPR_GRID = np.unique(np.round(np.concatenate([np.logspace(-4, 0, 49), np.linspace(0, 1, 26)]), 8))
GREY_LEVELS = 16   # gallery strips keep 16 grey levels (at most 8/255 off), half the bytes of 256


def encode(values: np.ndarray, dtype: str) -> str:
    """Little-endian integers of ``dtype`` ('u1' or 'u2'), base64: how the page stores arrays."""
    return base64.b64encode(np.asarray(values).astype(f"<{dtype}").tobytes()).decode("ascii")


def decode(text: str, dtype: str) -> np.ndarray:
    """Inverse of :func:`encode`."""
    return np.frombuffer(base64.b64decode(text), dtype=f"<{dtype}")


def roc_at_grid(fpr: np.ndarray, tpr: np.ndarray, grid: np.ndarray = FPR_GRID) -> np.ndarray:
    """The ROC curve (sklearn's ``fpr``, ``tpr``, FPR non-decreasing) read at ``grid``: at each
    false-positive rate x, the best true-positive rate reachable with FPR ≤ x."""
    best = np.maximum.accumulate(np.asarray(tpr, dtype=np.float64))
    idx = np.searchsorted(np.asarray(fpr, dtype=np.float64), grid, side="right") - 1
    return np.where(idx >= 0, best[np.clip(idx, 0, None)], 0.0)


@dataclass
class Chooser:
    """One chooser: ``kind`` ('roc', 'hist' or 'gallery'), its ``payload`` (JSON-ready: the
    menus' entries and every item's compact data) and, for Plotly kinds, the ``layout`` every
    choice shares."""
    kind: str
    payload: dict
    layout: dict = field(default_factory=dict)

    def __repr__(self) -> str:   # the notebook's text/plain: short, not the payload
        return f"<{self.kind} chooser: {len(self.payload.get('cells', []))} cells, {len(self.choices())} choices>"

    # ------------------------------------------------------------------ choices
    def choices(self) -> list[tuple]:
        """Every (seed, group) a reader can pick, in menu order."""
        return [(s, g) for s in self.payload["seeds"] for g in self.payload["groups"][str(s)]]

    def scores(self) -> list[str]:
        return list(self.payload.get("scores", []))

    def items(self, seed=None, group=None) -> list[dict]:
        """The items drawn for one choice (default: the first). An item names its cell by
        index ``c`` into ``payload["cells"]``: ``[seed, group, panel index, cell id]``."""
        if seed is None or group is None:
            seed, group = self.choices()[0] if self.choices() else (None, None)
        cells = self.payload["cells"]
        return [it for it in self.payload["items"] if cells[it["c"]][0] == seed and cells[it["c"]][1] == group]

    # ------------------------------------------------------------------ Python figures
    def traces(self, seed=None, group=None, score=None) -> list[dict]:
        """The Plotly traces of one choice, as ``chooser.js`` builds them."""
        if self.kind == "roc":
            return _roc_traces(self.payload, self.items(seed, group))
        if self.kind == "hist":
            return _keep_axes(self.payload, _hist_traces(self.payload, self.items(seed, group), score or self.scores()[0]))
        raise ValueError(f"a {self.kind!r} chooser draws no Plotly traces")

    def figure(self, seed=None, group=None, score=None) -> go.Figure:
        """The figure of one choice (default: the first), as the page draws it."""
        fig = go.Figure(data=self.traces(seed, group, score), layout=self.layout)
        if self.kind == "hist":
            fig.update_layout(annotations=_hist_notes(self.payload, self.layout, self.items(seed, group),
                                                      score or self.scores()[0]))
        return fig

    # ------------------------------------------------------------------ display
    def html(self) -> str:
        """The page's markup: a container, the payload as JSON, and the script that draws it."""
        if not self.choices():
            return f"<p><em>No finished cell to show here ({self.kind}).</em></p>"
        doc = json.dumps({"kind": self.kind, "payload": self.payload, "layout": self.layout},
                         separators=(",", ":"), allow_nan=False)
        uid = "capslib-chooser-" + hashlib.sha1(doc.encode()).hexdigest()[:12]
        first = ""
        if self.kind == "gallery" and self.items():   # the first strip, so that the page shows it with no script
            it = self.items()[0]
            first = strip_html(it["src"], self.payload["cells"][it["c"]][1])
        return (f'<div class="capslib-chooser" id="{uid}"><div class="capslib-menus"></div>'
                f'<div class="capslib-view">{first}</div></div>'
                f'<script type="application/json" id="{uid}-data">{_script_safe(doc)}</script>'
                f'<script>{_js()}\ncapslibChooser("{uid}");</script>')

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = {"text/html": self.html()}
        if self.kind in ("roc", "hist") and self.choices():
            bundle["application/vnd.plotly.v1+json"] = json.loads(self.figure().to_json())
        return bundle


STRIP_STYLE = "width:100%;display:block;image-rendering:pixelated"
# the red line between the 8 normal (left) and the 8 anomalous (right) images
DIVIDER = '<div style="position:absolute;top:0;bottom:0;left:50%;border-left:2px solid #d62728"></div>'


def strip_html(src: str, alt: str) -> str:
    """A gallery strip, scaled to the column, with the line between normal and anomalous."""
    return (f'<div style="position:relative;max-width:896px">'
            f'<img class="capslib-strip" src="{html.escape(src)}" alt="{html.escape(alt)}" style="{STRIP_STYLE}">'
            f'{DIVIDER}</div>')


def _script_safe(doc: str) -> str:
    """JSON inside <script>: '</' would end the element."""
    return doc.replace("</", "<\\/")


_JS_CACHE: list[str] = []


def _js() -> str:
    if not _JS_CACHE:
        _JS_CACHE.append(resources.files("capslib.views.figures").joinpath("chooser.js").read_text())
    return _JS_CACHE[0]


def _axis(i: int) -> tuple[str, str]:
    return (f"x{i + 1}" if i else "x"), (f"y{i + 1}" if i else "y")


def _roc_traces(payload: dict, items: list[dict]) -> list[dict]:
    fpr, cells, names, colors = payload["fpr"], payload["cells"], payload["names"], payload["name_colors"]
    out, shown = [], set()
    for it in items:
        x, y = _axis(cells[it["c"]][2])
        name = names[it["n"]]
        tpr = np.round(decode(it["t"], "u2") / 65535.0, 4).tolist()
        out.append(dict(type="scatter", mode="lines", x=fpr, y=tpr, name=name, legendgroup=name,
                        showlegend=name not in shown, line=dict(color=colors[it["n"]]), xaxis=x, yaxis=y,
                        hovertemplate=f"{name}<br>AUROC {_auc(it['a'])}<br>FPR %{{x}}<br>TPR %{{y}}"
                                      f"<extra>{cells[it['c']][3]}</extra>"))
        shown.add(name)
    for i in range(len(payload["panels"])):
        x, y = _axis(i)
        out.append(dict(type="scatter", mode="lines", x=payload["chance"], y=payload["chance"], name="chance",
                        showlegend=i == 0, hoverinfo="skip", line=dict(dash="dot", color="grey"), xaxis=x, yaxis=y))
    return out


def _auc(a) -> str:
    return "n/a" if a is None else f"{a:.4f}"


def hist_bars(it: dict, bins: int) -> tuple[list, list, list]:
    """(bin centres, normal shares, anomalous shares) of one histogram item."""
    width = (it["hi"] - it["lo"]) / bins
    centres = [round(it["lo"] + (i + 0.5) * width, 6) for i in range(bins)]
    shares = [np.round(decode(it[h], "u1") / 255.0 * it[m], 5).tolist() for h, m in (("hN", "mN"), ("hA", "mA"))]
    return centres, shares[0], shares[1]


def _hist_traces(payload: dict, items: list[dict], score: str) -> list[dict]:
    out, shown, cells = [], set(), payload["cells"]
    for it in (i for i in items if payload["scores"][i["sc"]] == score):
        x, y = _axis(cells[it["c"]][2])
        centres, normal, anomalous = hist_bars(it, payload["bins"])
        width = (it["hi"] - it["lo"]) / payload["bins"]
        for kind, ys, color in (("normal", normal, payload["colors"][0]), ("anomalous", anomalous, payload["colors"][1])):
            out.append(dict(type="bar", x=centres, y=ys, width=width, name=f"{kind} test images", legendgroup=kind,
                            showlegend=kind not in shown, marker=dict(color=color), opacity=0.6, xaxis=x, yaxis=y,
                            hovertemplate=f"{kind}<br>score %{{x}}<br>share %{{y}}<extra>{cells[it['c']][3]}</extra>"))
            shown.add(kind)
        if it["thr"] is not None:
            top = max(normal + anomalous + [0.0])
            out.append(dict(type="scatter", mode="lines", x=[it["thr"], it["thr"]], y=[0, top], name="threshold",
                            legendgroup="thr", showlegend="thr" not in shown, xaxis=x, yaxis=y,
                            line=dict(color="black", dash="dash")))
            shown.add("thr")
    return out


def _keep_axes(payload: dict, traces: list[dict]) -> list[dict]:
    """An empty trace in every panel that has none: plotly.js draws no axes for a subplot
    without traces, and the panel's note would have nowhere to go."""
    used = {t["xaxis"] for t in traces}
    for i in range(len(payload["panels"])):
        x, y = _axis(i)
        if x not in used:
            traces.append(dict(type="scatter", mode="markers", x=[], y=[], xaxis=x, yaxis=y, showlegend=False,
                               hoverinfo="skip"))
    return traces


def _hist_notes(payload: dict, layout: dict, items: list[dict], score: str) -> list[dict]:
    """The panels' titles, plus a note in each panel whose method has no such score."""
    cells = payload["cells"]
    has = {cells[it["c"]][2] for it in items if payload["scores"][it["sc"]] == score}
    notes = list(layout.get("annotations", []))
    for i, panel in enumerate(payload["panels"]):
        if i not in has and any(cells[it["c"]][2] == i for it in items):
            x, y = _axis(i)
            notes.append(dict(text=f"{panel} has no score {payload['score_labels'][score]}:<br>pick one of its own",
                              xref=f"{x} domain", yref=f"{y} domain", x=0.5, y=0.5, showarrow=False,
                              font=dict(color="grey")))
    return notes
