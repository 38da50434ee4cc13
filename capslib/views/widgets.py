"""Live views for JupyterLab with a running kernel (ipywidgets).

In the static book these render their saved state only (the Python callbacks need a
kernel); the Plotly dropdowns of :mod:`capslib.views.figures` carry the interactivity there.
The one exception is the ``jslink``-ed index slider / number box pair of
:func:`gallery_browser`, which stays linked in the browser.

Scores follow the library's convention: higher = more anomalous; the decision is
"anomaly iff score > threshold".
"""
from __future__ import annotations

import io

import numpy as np
import pandas as pd

from capslib.model.scores import accuracy_at
from capslib.run.store.results import ResultsStore


def confusion(scores: np.ndarray, labels: np.ndarray, threshold: float) -> pd.DataFrame:
    """Counts of (true label, decision) for "anomaly iff score > threshold"; labels 1 = anomaly."""
    from sklearn.metrics import confusion_matrix
    said = (np.asarray(scores) > threshold).astype(int)
    counts = confusion_matrix(np.asarray(labels).astype(bool).astype(int), said, labels=[0, 1])
    return pd.DataFrame(counts, index=["true normal", "true anomalous"], columns=["said normal", "said anomalous"])


def _cell_options(df: pd.DataFrame, score: str) -> list[tuple[str, str]]:
    sel = df[df["score"] == score].drop_duplicates("cell_id")
    return [(cid, cid) for cid in sorted(sel["cell_id"])]


STORED = "stored threshold"


def threshold_explorer(store: ResultsStore, df: pd.DataFrame, score: str = "anomaly_score", cell_id=None):
    """A cell picker, a threshold slider and a choice of threshold rule; shows the accuracy
    and the confusion matrix at the chosen threshold, beside the stored threshold's accuracy.

    For AS (``anomaly_score``, paper A eq. 1) of a cell that stored its training scores, the
    rule menu offers paper A's threshold read three ways (:mod:`capslib.views.thresholds`): plain
    and class-balanced logistic regression on the training scores, and the best threshold on
    the test set (an oracle upper bound); picking one moves the slider there."""
    import ipywidgets as W
    from IPython.display import display

    from capslib.views.thresholds import ORACLE, SCORE, cell_thresholds

    options = _cell_options(df, score)
    if not options:
        return W.HTML(f"<i>No cell has score {score!r}.</i>")
    pick = W.Dropdown(options=options, value=cell_id or options[0][1], description="cell",
                      layout=W.Layout(width="95%"))
    slider = W.FloatSlider(description="threshold", readout_format=".3f", continuous_update=False,
                           layout=W.Layout(width="95%"))
    rule = W.Dropdown(options=[STORED], value=STORED, description="rule", layout=W.Layout(width="95%"))
    rules_info, out = W.HTML(), W.Output()
    state = {}

    def load(_=None):
        a = store.load_arrays(pick.value)
        s, y = a[f"score_{score}"].astype(np.float64), a["test_labels"]
        row = df[(df["cell_id"] == pick.value) & (df["score"] == score)].iloc[0]
        stored = float(row["threshold"]) if np.isfinite(row["threshold"]) else float(np.median(s))
        rules = (cell_thresholds(a) if score == SCORE else None) or {}
        state.update(s=s, y=y, stored=stored, has=np.isfinite(row["threshold"]), rules=rules)
        marks = [stored] + [t for t, _ in rules.values() if np.isfinite(t)]
        lo, hi = float(min(s.min(), *marks)), float(max(s.max(), *marks))
        state["quiet"] = True          # resetting the menu must not move the slider
        rule.options, rule.value = [STORED] + list(rules), STORED
        state["quiet"] = False
        slider.unobserve(render, "value")
        slider.min, slider.max = -1e9, 1e9          # widen first so the new bounds are always valid
        slider.min, slider.max, slider.step = lo, hi, max((hi - lo) / 200, 1e-6)
        slider.value = stored
        slider.observe(render, "value")
        render()

    def pick_rule(_=None):
        if state.get("quiet"):
            return
        t = state["stored"] if rule.value == STORED else state["rules"][rule.value][0]
        if np.isfinite(t):
            slider.value = t

    def render(_=None):
        s, y, t = state["s"], state["y"], slider.value
        with out:
            out.clear_output(wait=True)
            ref = (f"stored threshold {state['stored']:.4f}: accuracy {accuracy_at(s, y, state['stored']):.2%}"
                   if state["has"] else "this score has no stored threshold (AUROC only); the slider starts at the median")
            display(W.HTML(f"<b>threshold {t:.4f}: accuracy {accuracy_at(s, y, t):.2%}</b> · {ref}"))
            display(confusion(s, y, t))
        if state["rules"]:
            rules_info.value = "<br>".join(
                f"{name}: threshold {thr:.4f}, accuracy {acc:.2%}"
                + (" <i>(fitted on the test labels: an upper bound, not a result)</i>" if name == ORACLE else "")
                for name, (thr, acc) in state["rules"].items())
        else:
            rules_info.value = ("<i>This cell stored no training scores: the threshold rules cannot be refitted.</i>"
                                if score == SCORE else "")

    pick.observe(load, "value")
    rule.observe(pick_rule, "value")
    load()
    return W.VBox([W.HTML(f"<b>Score {score}</b>: anomaly iff score &gt; threshold"), pick, slider, rule, rules_info, out])


def _png(img: np.ndarray) -> bytes:
    from PIL import Image
    im = Image.fromarray(img).resize((img.shape[1] * 4, img.shape[0] * 4), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def gallery_browser(store: ResultsStore, df: pd.DataFrame, cell_ids=None):
    """Browse a cell's 16 gallery images (8 normal, 8 anomalous): the test image, its
    reconstruction and every score of that image. Only CapsNet cells store galleries."""
    import ipywidgets as W

    if cell_ids is None:   # every CapsNet cell of the smallest seed
        caps = df[df["method"] == "capsnet"] if len(df) else df
        cell_ids = sorted(caps.loc[caps["seed"] == caps["seed"].min(), "cell_id"].unique()) if len(caps) else []
    ids = list(cell_ids)
    if not ids:
        return W.HTML("<i>No cells.</i>")
    pick = W.Dropdown(options=ids, value=ids[0], description="cell", layout=W.Layout(width="95%"))
    index = W.IntSlider(min=0, max=15, description="image")
    box = W.BoundedIntText(min=0, max=15, layout=W.Layout(width="70px"))
    W.jslink((index, "value"), (box, "value"))      # stays linked without a kernel
    original, recon = W.Image(format="png"), W.Image(format="png")
    info = W.HTML()

    def render(_=None):
        a = store.load_arrays(pick.value)
        n = len(a["gallery_positions"])
        index.max = box.max = n - 1
        i = min(index.value, n - 1)
        pos = int(a["gallery_positions"][i])
        original.value, recon.value = _png(a["gallery_images"][i, 0]), _png(a["gallery_reconstructions"][i, 0])
        lab = "anomalous" if a["test_labels"][pos] else "normal"
        scores = "".join(f"<tr><td>{k[6:]}</td><td>{float(a[k][pos]):.4f}</td></tr>"
                         for k in sorted(a) if k.startswith("score_"))
        info.value = (f"<b>test image {pos}</b> ({lab})<table>{scores}</table>"
                      "<small>higher = more anomalous</small>")

    pick.observe(render, "value")
    index.observe(render, "value")
    render()
    images = W.HBox([W.VBox([W.HTML("test image"), original]), W.VBox([W.HTML("reconstruction"), recon]), info])
    return W.VBox([pick, W.HBox([index, box]), images])
