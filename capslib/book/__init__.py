"""The Jupyter Book: execute the notebooks with papermill, write the results overview, vendor the
JavaScript, build the HTML. :mod:`.sphinx_ext` and :mod:`.mystnb_plotly` load without capslib."""
