"""The results store: one folder per finished cell, written atomically, and a
``cells.csv`` with one row per (cell, score) rebuilt atomically from the folders.

Layout under a results root::

    <root>/<profile>/cells/<cell_id>/cell.json   # schema_version, spec, rows, provenance, info
    <root>/<profile>/cells/<cell_id>/arrays.npz  # per-image test scores, labels, galleries
    <root>/<profile>/cells.csv                   # one row per score, all cells (columns: :mod:`.schema`)

A cell folder appears only by ``os.rename`` of a complete folder from ``.staging/``, so a run
killed at any moment (kill -9) leaves either the whole cell or nothing; ``cells.csv``
is derived from the folders and rewritten by rename, so it never holds a partial row.

Several runs may share a store (:mod:`capslib.run.locks`): a run *claims* a cell before training
it (``.locks/<cell_id>``), so a second run trains the cells nobody holds; a staging folder is
locked by the process writing it, and a clean-up removes only folders whose owner is gone;
``cells.csv`` is rebuilt under ``.locks/cells.csv``.

Every read checks what it reads: :meth:`ResultsStore.check_cell` says in one line why a
cell is damaged (JSON, schema version, rows, npz directory); a damaged cell is moved to
``quarantine/`` (never deleted) by :meth:`ResultsStore.quarantine_damaged`, which ``run``
calls before training. A cell written again deletes the old folder's ``cell.json`` and
``arrays.npz``; an old folder holding anything else goes to ``quarantine/`` whole.
"""
