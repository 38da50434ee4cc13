"""The confusion tables of the chapters' threshold slider (capslib.views.widgets) and of *Your own
images* (capslib.views.folder_figures), on hand-counted scores: "anomaly iff score > threshold"."""
from types import SimpleNamespace

import numpy as np

# 3 normals (0.1, 0.5, 0.9) and 4 anomalies (0.2, 0.5, 0.7, 0.95); at 0.5 (strictly above: anomalous)
# normals: 2 said normal, 1 said anomalous; anomalies: 2 said normal (0.2 and 0.5 itself), 2 said anomalous
SCORES = np.array([0.1, 0.2, 0.5, 0.5, 0.7, 0.9, 0.95])
LABELS = np.array([0, 1, 0, 1, 1, 0, 1])


def test_slider_confusion_counts_by_label_and_decision():
    from capslib.views.widgets import confusion
    cm = confusion(SCORES, LABELS, 0.5)
    assert list(cm.index) == ["true normal", "true anomalous"] and list(cm.columns) == ["said normal", "said anomalous"]
    assert cm.to_numpy().tolist() == [[2, 1], [2, 2]]
    assert confusion(SCORES, LABELS, 1.0).to_numpy().tolist() == [[3, 0], [4, 0]]     # nobody said anomalous
    assert confusion(SCORES[LABELS == 0], LABELS[LABELS == 0], 0.0).to_numpy().tolist() == [[0, 3], [0, 0]]


def test_folder_confusion_names_the_score_and_threshold():
    from capslib.views.folder_figures import confusion
    t = SimpleNamespace(scores={"anomaly_score": SCORES}, labels=LABELS, main="anomaly_score", threshold=0.5)
    cm = confusion(t)
    assert cm.index.name == "label" and list(cm.index) == list(cm.columns) == ["normal", "anomalous"]
    assert cm.columns.name.endswith("> 0.5") and cm.to_numpy().tolist() == [[2, 1], [2, 2]]
    only_normals = SimpleNamespace(**{**vars(t), "scores": {"anomaly_score": SCORES[:1]}, "labels": LABELS[:1]})
    assert confusion(only_normals).to_numpy().tolist() == [[1, 0], [0, 0]]           # empty rows stay, as zeros
