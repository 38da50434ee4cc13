"""Registry: protocol → method name → cell function ``(spec, data, split, ctx) -> CellResult``.

The CapsNet cells live in :mod:`capslib.study.protocols`; the baselines and reference
detectors add themselves here. The registry dict itself is :data:`capslib.core.config.METHODS`
(a :class:`~capslib.core.config.CellSpec` accepts the study's names and any registered one); an
unknown name is a :class:`capslib.core.errors.ConfigError`.
"""
from __future__ import annotations

from typing import Callable

from capslib.core.config import METHOD_NAMES, METHODS
from capslib.core.errors import ConfigError


def register(protocol: str, name: str):
    def deco(fn: Callable) -> Callable:
        METHODS[protocol][name] = fn
        return fn
    return deco


def method_for(protocol: str, name: str) -> Callable:
    try:
        return METHODS[protocol][name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r} for protocol {protocol!r}; "
                          f"choose one of {', '.join(METHODS.get(protocol, {}))}") from None


def _register_builtin() -> None:
    from capslib.study import protocols
    METHODS["imbalanced"]["capsnet"] = protocols.run_imbalanced_capsnet
    METHODS["novelty"]["capsnet"] = protocols.run_novelty_capsnet
    from capslib.study import baselines
    METHODS["imbalanced"].update(baselines.IMBALANCED)
    METHODS["novelty"].update(baselines.NOVELTY)
    for protocol, names in METHOD_NAMES.items():     # every name a CellSpec accepts has its code
        if not set(names) <= set(METHODS[protocol]):
            raise ImportError(f"capslib.core.config.METHOD_NAMES[{protocol!r}] lists {sorted(names)}, "
                              f"the registry has {sorted(METHODS[protocol])}")


_register_builtin()
