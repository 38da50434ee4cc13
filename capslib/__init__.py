"""capslib: capsule networks for image anomaly detection (Piciarelli et al. 2019; Li et al. 2019).

Every score in this library is an anomaly score: higher = more anomalous.

The folders are the layers, lowest first; a layer imports only from those before it
(``tests/test_layout.py`` checks it):

    core     errors, the validated cell configuration, provenance (commit, device)
    model    the CapsNet (squash, dynamic routing), its losses, the anomaly scores and metrics
    data     datasets, the two protocols' splits, folders of your own images
    train    the plain and stacked (fast) training paths, jobs, per-epoch checkpoints
    study    the cells of both papers: CapsNet protocols, baselines, the method registry,
             the profiles (grids and priority), notebook parameters, the papers' numbers
    run      the store of finished cells, the runner, its executors (in-process, Dask), progress
    detect   a detector on your images (arrays: ``CapsNetDetector``; a folder): fit, save, load, score
    views    tables, figures and widgets for the book, read from the store
    book     papermill execution and the Jupyter Book build
    cli      ``python -m capslib``
    tools    measurements: benchmarks, the GPU window's pick, route and fast-path checks

Where a new thing goes: a score in ``model/scores.py`` (and the protocol's measures in
``study/protocols.py``); a dataset in ``data/datasets.py`` (its name and class count in
``core/config.py``); a baseline in ``study/baselines/`` (registered in its ``__init__`` and named
in ``core/config.METHOD_NAMES``); an executor in ``run/`` beside ``execute.py`` and ``cluster.py``.

The package imports lazily, so that light modules (the book's Sphinx plugins) load
without torch.
"""
__version__ = "0.1.0"

_LAZY = {"CapsNet": "model.capsnet", "CapsNetConfig": "model.capsnet", "dynamic_routing": "model.capsnet",
         "squash": "model.capsnet", "CellSpec": "core.config", "ConfigError": "core.errors",
         "CapsNetDetector": "detect.estimator"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'capslib' has no attribute {name!r}")
