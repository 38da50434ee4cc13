"""A myst-nb mime renderer plugin (entry point ``myst_nb.mime_renderers``) that drops
Plotly's own mime type from the book.

:func:`capslib.views.figures.show` displays every figure twice in one bundle: as HTML that uses the
site's plotly.js (what the static book shows) and as ``application/vnd.plotly.v1+json`` (what
JupyterLab's plotly renderer draws). myst-nb knows no renderer for the latter and would warn
("skipping unknown output mime type"); this plugin takes it out of every builder's priority
list and renders it to nothing, so the HTML version is chosen. Imports nothing heavy.
"""
from __future__ import annotations

PLOTLY_MIME = "application/vnd.plotly.v1+json"


class PlotlyMimeIgnore:
    mime_priority_overrides = [("*", PLOTLY_MIME, None)]

    @staticmethod
    def handle_mime(renderer, data, inline):
        return [] if data.mime_type == PLOTLY_MIME else None
