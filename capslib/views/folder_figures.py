"""Figures and tables of the chapter *Your own images* (notebooks/your_images.ipynb): a fitted
:class:`capslib.detect.detector.Detector` on the test set of a :class:`capslib.data.folder.FolderData`.
Plotly figures (shown with :func:`capslib.views.figures.show`, so they work in the static book) and
pandas tables; every number comes from the detector's scores (higher = more anomalous)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from capslib.detect.detector import Detector
from capslib.views.figures import COLORS, label
from capslib.data.folder import FolderData
from capslib.model.scores import score_metrics

MAIN_SCORE = {"imbalanced": "anomaly_score", "novelty": "pp"}   # paper A's AS (eq. 1), paper B's −PP (eq. 1)


@dataclass
class TestScores:
    """The detector's scores on the folder's test set, and the ``k`` most anomalous images
    by the main score with their reconstructions."""
    scores: dict[str, np.ndarray]
    labels: np.ndarray               # 1 = anomaly
    main: str                        # the score drawn and ranked by
    threshold: Optional[float]       # its decision threshold, if it has one
    top: np.ndarray                  # positions in the test set, most anomalous first
    images: np.ndarray               # (k, C, H, W) in [0, 1]
    reconstructions: np.ndarray      # (k, C, H, W)
    labelled: bool


def test_scores(det: Detector, data: FolderData, k: int = 8) -> TestScores:
    scores = det.evaluate(data.x_test)
    main = MAIN_SCORE[det.protocol]
    top = np.argsort(-scores[main], kind="stable")[:k]
    recon = det.evaluate(data.x_test[top], keep=np.arange(len(top)))["reconstructions"]
    return TestScores({s: v for s, v in scores.items() if s != "predicted_class"}, data.test_labels, main,
                      det.thresholds.get(main), top, data.x_test[top].numpy(), recon, data.labelled)


def histogram(t: TestScores, bins: int = 40) -> go.Figure:
    """The test scores per label (or all, unlabelled), with the decision threshold (paper A Fig. 3)."""
    v = t.scores[t.main].astype(np.float64)
    lo, hi = float(v.min()), float(v.max())
    if t.threshold is not None and np.isfinite(t.threshold):
        lo, hi = min(lo, t.threshold), max(hi, t.threshold)
    fig = go.Figure()
    groups = ([("normal test images", t.labels == 0, COLORS[0]), ("anomalous test images", t.labels == 1, COLORS[1])]
              if t.labels.any() else [("test images", np.ones(len(v), bool), COLORS[0])])
    for name, sel, color in groups:
        fig.add_trace(go.Histogram(x=v[sel], name=f"{name} ({int(sel.sum())})", marker_color=color, opacity=0.6,
                                   xbins=dict(start=lo, end=hi + 1e-9, size=(hi - lo) / bins or 1e-3),
                                   histnorm="probability"))
    if t.threshold is not None and np.isfinite(t.threshold):
        fig.add_vline(x=t.threshold, line=dict(color="black", dash="dash"),
                      annotation_text=f"threshold {t.threshold:.3g}", annotation_position="top")
    fig.update_layout(barmode="overlay", height=380, title=f"Test scores: {label(t.main)}",
                      xaxis_title=f"{label(t.main)} (higher = more anomalous)",
                      yaxis_title="share of the group's images")
    return fig


def _rgb(x: np.ndarray) -> np.ndarray:
    """(C, H, W) in [0, 1] → (H, W, 3) uint8 for display (gray repeated; alpha dropped)."""
    a = np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)
    return np.repeat(a[:1], 3, axis=0).transpose(1, 2, 0) if a.shape[0] < 3 else a[:3].transpose(1, 2, 0)


def most_anomalous(t: TestScores, data: FolderData) -> go.Figure:
    """The most anomalous test images (top row) above their reconstructions (bottom row)."""
    k = len(t.top)
    fig = make_subplots(2, max(k, 1), vertical_spacing=0.08, horizontal_spacing=0.01,
                        subplot_titles=[f"{t.scores[t.main][i]:.3f}" + (" (A)" if t.labels[i] else "")
                                        for i in t.top] + [""] * k)
    for j, i in enumerate(t.top):
        name = data.test_paths[i].name
        fig.add_trace(go.Image(z=_rgb(t.images[j]), hovertemplate=f"{name}<extra>image</extra>"), 1, j + 1)
        fig.add_trace(go.Image(z=_rgb(t.reconstructions[j]), hovertemplate=f"{name}<extra>reconstruction</extra>"),
                      2, j + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=300, margin=dict(t=70, b=10), title=f"The {k} most anomalous test images by "
                      f"{label(t.main)} (its value above; (A): labelled anomalous); below: reconstructions")
    return fig


def roc(t: TestScores) -> go.Figure:
    """ROC curve of every score on the labelled test set, AUROC in the legend."""
    from sklearn.metrics import roc_curve

    fig = go.Figure()
    for n, (s, v) in enumerate(t.scores.items()):
        fpr, tpr, _ = roc_curve(t.labels, v)
        auc = score_metrics(v, t.labels)["auroc"]
        fig.add_trace(go.Scatter(x=np.round(fpr, 4), y=np.round(tpr, 4), mode="lines",
                                 name=f"{label(s)}: AUROC {auc:.3f}", line=dict(color=COLORS[n % len(COLORS)])))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line=dict(dash="dot", color="grey")))
    fig.update_layout(height=420, title="ROC on the test set", xaxis_title="false positive rate",
                      yaxis_title="true positive rate", xaxis_range=[0, 1], yaxis_range=[0, 1.01])
    return fig


def metrics_table(t: TestScores, det: Detector) -> pd.DataFrame:
    """AUROC, AUPRC and, where a threshold exists, the accuracy, per score."""
    rows = [{"score": label(s), **score_metrics(v, t.labels, det.thresholds.get(s))} for s, v in t.scores.items()]
    return pd.DataFrame(rows).round(4)


def confusion(t: TestScores) -> pd.DataFrame:
    """Test images by label and by the decision "anomaly iff main score > threshold"."""
    from sklearn.metrics import confusion_matrix
    said = (t.scores[t.main] > t.threshold).astype(int)
    counts = confusion_matrix((np.asarray(t.labels) == 1).astype(int), said, labels=[0, 1])
    return pd.DataFrame(counts, index=pd.Index(["normal", "anomalous"], name="label"),
                        columns=pd.Index(["normal", "anomalous"], name=f"{label(t.main)} > {t.threshold:.3g}"))


def model_card(det: Detector, how: str) -> pd.DataFrame:
    """Where the model came from: commit, device, torch, training settings and time."""
    m, tr = det.meta, det.meta["training"]
    return pd.DataFrame([{"model": how, "paper": m["paper"], "protocol": m["protocol"], "classes": ", ".join(m["classes"]),
                          "epochs": tr["epochs"], "batch": tr["batch_size"], "precision": tr["precision"],
                          "train_seconds": round(tr["train_seconds"], 1), "device": m["device"],
                          "torch": m["torch"], "commit": m["commit"], "created_utc": m["created_utc"]}])


def skipped_table(data: FolderData) -> pd.DataFrame:
    return pd.DataFrame([{"file": str(p), "why": why} for p, why in data.skipped], columns=["file", "why"])
