"""Figures for the book: Plotly figures that stay interactive in the static HTML (no
kernel, no internet) and matplotlib reconstruction galleries.

Interactivity without a kernel comes from Plotly ``updatemenus``: one dropdown picks the
cell (normal class and anomaly fraction, or the held-out class) by setting every trace's
``visible``; a second one picks the score or metric by restyling the traces' ``x``/``y``.
The two change different attributes, so they compose. Every number drawn is read from a
results store (per-image scores in ``arrays.npz``, metrics in the rows). Scores follow the
library's convention: higher = more anomalous.

:mod:`.common` labels, colours, menus and layout; :mod:`.scores` ROC curves and score
distributions; :mod:`.summary` bars of every method and ours against the paper;
:mod:`.galleries` reconstruction galleries; :mod:`.stalls` every training against the loss plateau.
"""
from capslib.views.figures.common import (COLORS, LABELS, PANEL_HEIGHT, ROC_SCORES, SCORE_ORDER,
    VARIANT_ORDER, label, show)
from capslib.views.figures.scores import distribution_figure, roc_figure
from capslib.views.figures.summary import accuracy_figure, bars_figure
from capslib.views.figures.galleries import gallery_cells, gallery_figure, gallery_matplotlib, gallery_strip
from capslib.views.figures.stalls import anomaly_capsule_length, stall_figure

__all__ = [
    'COLORS', 'LABELS', 'PANEL_HEIGHT', 'ROC_SCORES', 'SCORE_ORDER', 'VARIANT_ORDER', 'label',
    'show', 'distribution_figure', 'roc_figure', 'accuracy_figure', 'bars_figure', 'gallery_cells',
    'gallery_figure', 'gallery_matplotlib', 'gallery_strip', 'anomaly_capsule_length', 'stall_figure',
]
