"""Parameters checked at the door, once, for the CLI, papermill and the Python API alike.

:class:`GridRequest` is what every entry point builds from what the user typed: the CLI's
strings, papermill's ``-p`` values (``-p classes 3`` arrives as an int, ``-p classes 3,5``
as a string) and API arguments. A list parameter takes a list, one scalar or a comma string;
numeric strings become numbers; a bool is never a number; anything else is a
:class:`~capslib.core.config.ConfigError` of one line naming the parameter, before any training.

:func:`check_notebook` stops a papermill run given a parameter the notebook does not know.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, replace
from typing import Optional

from capslib.core.errors import ConfigError

from capslib.core.config import CellSpec, as_int, as_float, as_list, as_str
from capslib.study.profiles import Grid, narrow, profile_grid


def _held_out_sets(name: str, v) -> tuple[tuple[int, ...], ...]:
    """Held-out sets: a list of lists of classes, e.g. [[0, 3, 5]]."""
    if not isinstance(v, (list, tuple)) or not all(isinstance(h, (list, tuple)) for h in v):
        raise ConfigError(f"{name} must be a list of held-out sets, e.g. [[0, 3, 5]], got {v!r}")
    return tuple(as_list(name, h, as_int) for h in v)


def _list_of(item):
    return lambda name, v: as_list(name, v, item)


# parameter -> how its value is read (None stays None: the profile's)
READERS = {
    "profile": as_str,
    "protocol": as_str,
    "datasets": _list_of(as_str),
    "classes": _list_of(as_int),
    "fractions": _list_of(as_float),
    "seeds": _list_of(as_int),
    "epochs": as_int,
    "methods": _list_of(as_str),
    "extra_held_outs": _held_out_sets,
}


@dataclass(frozen=True)
class GridRequest:
    """The cells a user asks for: a profile narrowed like ``python -m capslib run``'s options.

    ``classes`` are the normal classes (protocol imbalanced) or the single held-out classes
    (novelty); ``extra_held_outs`` (novelty case studies, e.g. ``[[0, 3, 5]]``) replaces the
    profile's for every novelty dataset. ``None`` leaves a field as the profile has it.
    """
    profile: str = "quick"
    protocol: Optional[str] = None
    datasets: Optional[tuple[str, ...]] = None
    classes: Optional[tuple[int, ...]] = None
    fractions: Optional[tuple[float, ...]] = None
    seeds: Optional[tuple[int, ...]] = None
    epochs: Optional[int] = None
    methods: Optional[tuple[str, ...]] = None
    extra_held_outs: Optional[tuple[tuple[int, ...], ...]] = None

    def __post_init__(self):
        for name, read in READERS.items():
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, read(name, v))
        profile_grid(self.profile)   # an unknown profile: one line naming the known ones

    @classmethod
    def from_args(cls, args) -> "GridRequest":
        """From the CLI's parsed ``run``/``status`` options (strings as typed)."""
        return cls(profile=args.profile, protocol=args.protocol, datasets=args.dataset, classes=args.classes,
                   fractions=args.fractions, seeds=args.seeds, epochs=args.epochs, methods=args.methods)

    def grid(self) -> Grid:
        g = narrow(profile_grid(self.profile), protocol=self.protocol, datasets=self.datasets,
                   classes=self.classes, fractions=self.fractions, seeds=self.seeds, epochs=self.epochs,
                   methods=self.methods)
        if self.extra_held_outs is not None:
            g = replace(g, extra_held_outs={ds: list(self.extra_held_outs) for ds in g.novelty_datasets})
        return g

    def cells(self) -> list[CellSpec]:
        """The cells, each validated (a class, fraction or dataset out of range is one line)."""
        return self.grid().cells()


# ---- notebooks ----------------------------------------------------------------------------
INJECTED_MARK = "# Parameters"   # the first line of the cell papermill injects


def _assigned(source: str) -> list[str]:
    """The names a cell assigns at its top level (a parameters cell's parameters)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
            if isinstance(node, ast.AnnAssign) else []
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def check_notebook(namespace: dict) -> None:
    """Call from a notebook's first cell after its parameters (``params.check_notebook(globals())``).
    In a run where papermill injected parameters, any name the notebook's parameters cell
    does not assign stops the run with one line naming it and the parameters the notebook
    knows. Outside papermill (or with no parameters given) it does nothing."""
    history = list(namespace.get("In") or namespace.get("_ih") or [])
    for i in range(len(history) - 1, 0, -1):
        if history[i].lstrip().startswith(INJECTED_MARK):
            declared = next((set(_assigned(src)) for src in reversed(history[:i])
                             if _assigned(src) and not src.lstrip().startswith(INJECTED_MARK)), set())
            unknown = [n for n in _assigned(history[i]) if n not in declared]
            if unknown:
                raise ConfigError(f"unknown parameter {', '.join(map(repr, unknown))} for this notebook; "
                                  f"it knows {', '.join(sorted(declared))}")
            return

