"""What the book shows, read from the store: tables (:mod:`.report`), Plotly figures
(:mod:`.figures`), widgets, the reproduction-status panel and the threshold rules."""
