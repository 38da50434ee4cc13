"""capslib: capsule networks for image anomaly detection (Piciarelli et al. 2019; Li et al. 2019).

Every score in this library is an anomaly score: higher = more anomalous.

The package imports lazily, so that light modules (the book's Sphinx plugins) load
without torch.
"""
__version__ = "0.1.0"

_LAZY = {"CapsNet": "capsnet", "CapsNetConfig": "capsnet", "dynamic_routing": "capsnet", "squash": "capsnet",
         "CellSpec": "config", "ConfigError": "config"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'capslib' has no attribute {name!r}")
