"""Figures for the book that stay interactive in the static HTML (no kernel, no internet).

Figures of one cell at a time (ROC curves, score histograms, galleries) are choosers
(:mod:`.chooser`): the page carries every cell's data in compact form and draws the cell a
reader picks from its menus, so that a page does not grow by a rendered figure per cell.
Summary figures (a few traces each) use Plotly ``updatemenus``: one dropdown sets every
trace's ``visible``, a second restyles ``x``/``y``; they change different attributes, so they
compose. Every number drawn is read from a
results store (per-image scores in ``arrays.npz``, metrics in the rows). Scores follow the
library's convention: higher = more anomalous.

:mod:`.common` labels, colours, menus and layout; :mod:`.scores` ROC curves and score
distributions; :mod:`.summary` bars of every method and ours against the paper;
:mod:`.galleries` reconstruction galleries (PNG strips beside the page); :mod:`.stalls` every training against the loss plateau;
:mod:`.sensitivity` CNN+OCSVM's AUROC against its kernel width; :mod:`.assignments` the normal
class each held-out image is taken for.
"""
from capslib.views.figures.common import (COLORS, LABELS, PANEL_HEIGHT, ROC_SCORES, SCORE_ORDER,
    VARIANT_ORDER, label, show)
from capslib.views.figures.scores import distribution_figure, roc_figure
from capslib.views.figures.summary import accuracy_figure, bars_figure
from capslib.views.figures.chooser import Chooser
from capslib.views.figures.galleries import gallery_cells, gallery_chooser, gallery_panel, gallery_strip, strip_png
from capslib.views.figures.stalls import anomaly_capsule_length, stall_figure
from capslib.views.figures.assignments import assignment_figure, assignment_table, taken_for
from capslib.views.figures.sensitivity import ocsvm_gamma_figure, ocsvm_sweeps

__all__ = [
    'COLORS', 'LABELS', 'PANEL_HEIGHT', 'ROC_SCORES', 'SCORE_ORDER', 'VARIANT_ORDER', 'label',
    'show', 'distribution_figure', 'roc_figure', 'accuracy_figure', 'bars_figure', 'gallery_cells',
    'Chooser', 'gallery_chooser', 'gallery_panel', 'gallery_strip', 'strip_png', 'anomaly_capsule_length', 'stall_figure',
    'ocsvm_gamma_figure', 'ocsvm_sweeps', 'assignment_figure', 'assignment_table', 'taken_for',
]
