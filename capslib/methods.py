"""Registry: protocol → method name → cell function ``(spec, data, split, ctx) -> CellResult``.

The CapsNet cells live in :mod:`capslib.protocols`; the baselines and reference
detectors add themselves here. An unknown name is a :class:`capslib.config.ConfigError`.
"""
from __future__ import annotations

from typing import Callable

METHODS: dict[str, dict[str, Callable]] = {"imbalanced": {}, "novelty": {}}


def register(protocol: str, name: str):
    def deco(fn: Callable) -> Callable:
        METHODS[protocol][name] = fn
        return fn
    return deco


def method_for(protocol: str, name: str) -> Callable:
    from .config import ConfigError
    try:
        return METHODS[protocol][name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r} for protocol {protocol!r}; "
                          f"choose one of {', '.join(METHODS.get(protocol, {}))}") from None


def _register_builtin() -> None:
    from . import protocols
    METHODS["imbalanced"]["capsnet"] = protocols.run_imbalanced_capsnet
    METHODS["novelty"]["capsnet"] = protocols.run_novelty_capsnet
    from . import baselines
    METHODS["imbalanced"].update(baselines.IMBALANCED)
    METHODS["novelty"].update(baselines.NOVELTY)


_register_builtin()
