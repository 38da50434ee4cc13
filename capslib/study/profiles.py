"""Profiles: named grids of cells (:class:`Grid`, :data:`PROFILES`), the CLI's narrowing of
them, and the order in which a profile's missing cells are trained (:data:`PRIORITY`).

Pure data and functions of specs: nothing here trains, loads data or touches the store.
:mod:`capslib.run.runner` re-exports every name.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

from capslib.core.errors import ConfigError

from capslib.core.config import PROTOCOLS, CellSpec, known_methods


@dataclass(frozen=True)
class Grid:
    """A profile: which cells to run. Expanded by :meth:`cells`."""
    imbalanced_datasets: tuple[str, ...] = ()
    normal_classes: tuple[int, ...] = tuple(range(10))
    fractions: tuple[float, ...] = (0.1, 0.01)
    variants: tuple[str, ...] = ("standard", "proposed")
    imbalanced_methods: tuple[str, ...] = ("capsnet",)
    novelty_datasets: tuple[str, ...] = ()
    held_outs: tuple[tuple[int, ...], ...] = tuple((c,) for c in range(10))
    extra_held_outs: dict = field(default_factory=dict)      # dataset -> extra held-out sets (case studies)
    novelty_methods: tuple[str, ...] = ("capsnet",)
    seeds: tuple[int, ...] = (0,)
    epochs: Optional[int] = None                              # None: the paper's
    novelty_epochs: Optional[int] = None
    novelty_batch_size: Optional[int] = None                  # None: the paper's

    def cells(self) -> list[CellSpec]:
        out = []
        for ds in self.imbalanced_datasets:
            for method in self.imbalanced_methods:
                variants = self.variants if method == "capsnet" else ("",)
                for c in self.normal_classes:
                    for f in self.fractions:
                        for v in variants:
                            for s in self.seeds:
                                out.append(CellSpec("imbalanced", ds, method, v, normal_class=c,
                                                    anomaly_fraction=f, seed=s, epochs=self.epochs))
        for ds in self.novelty_datasets:
            held = list(self.held_outs) + [tuple(h) for h in self.extra_held_outs.get(ds, ())]
            for method in self.novelty_methods:
                for h in held:
                    for s in self.seeds:
                        out.append(CellSpec("novelty", ds, method, held_out=tuple(h), seed=s,
                                            epochs=self.novelty_epochs or self.epochs,
                                            batch_size=self.novelty_batch_size))
        return out


PROFILES: dict[str, Grid] = {
    # minutes on two CPU cores: both protocols on the embedded digits. Paper B's batch of 100
    # would leave the ~1,100 normal training digits only 11 steps an epoch: batch 32 instead.
    "quick": Grid(imbalanced_datasets=("digits",), normal_classes=(0, 1, 8), fractions=(0.1, 0.01),
                  novelty_datasets=("digits",), held_outs=((2,), (9,)), extra_held_outs={"digits": [(0, 3, 5)]},
                  imbalanced_methods=("capsnet", "cnn", "deepsad"),
                  novelty_methods=("capsnet", "cnn_ocsvm", "dbn", "vae", "cnn_msp"),
                  seeds=(0,), epochs=5, novelty_epochs=3, novelty_batch_size=32),
    # the papers' settings: hours of training, on a GPU or, a slice at a time, on CPUs (scripts/background_grid.sh)
    "paper": Grid(imbalanced_datasets=("mnist", "fashion", "kmnist"), novelty_datasets=("mnist", "fashion"),
                  extra_held_outs={"mnist": [(0, 3, 5)]}, seeds=(0, 1, 2),
                  imbalanced_methods=("capsnet", "cnn", "deepsad"),
                  novelty_methods=("capsnet", "cnn_ocsvm", "dbn", "vae", "cnn_msp")),
}


# The order in which a profile's missing cells are trained: stages that fill whole tables
# early (seed 0 of every row before any second seed). A cell goes to the first stage whose
# every key matches it; within a stage, lower seeds first, then the grid's order; unmatched
# cells come last.
PRIORITY: dict[str, list[dict]] = {
    "paper": [
        # (0) the stall rule's retrainings of paper A's CapsNet cells (book/methods.md, "the loss plateau")
        {"protocol": "imbalanced", "method": "capsnet", "attempt": [1, 2]},
        # (1) paper B's MNIST case studies, seed 0: held out 2, 9 and {0, 3, 5}, each with its references
        {"protocol": "novelty", "seed": [0], "dataset": ["mnist"], "held_out": [(2,)]},
        {"protocol": "novelty", "seed": [0], "dataset": ["mnist"], "held_out": [(9,)]},
        {"protocol": "novelty", "seed": [0], "dataset": ["mnist"], "held_out": [(0, 3, 5)]},
        # (2) the other MNIST held-out classes of paper B, seed 0
        {"protocol": "novelty", "seed": [0], "dataset": ["mnist"]},
        # (3) paper A, seed 0, dataset by dataset, with the CNN and Deep SAD references
        {"protocol": "imbalanced", "seed": [0], "dataset": ["mnist"]},
        {"protocol": "imbalanced", "seed": [0], "dataset": ["fashion"]},
        {"protocol": "imbalanced", "seed": [0], "dataset": ["kmnist"]},
        # (4) paper A, seeds 1 and 2
        {"protocol": "imbalanced", "seed": [1, 2], "dataset": ["mnist"]},
        {"protocol": "imbalanced", "seed": [1, 2], "dataset": ["fashion"]},
        {"protocol": "imbalanced", "seed": [1, 2], "dataset": ["kmnist"]},
        # (5) the rest of paper B, seed 0, then seeds 1 and 2
        {"protocol": "novelty", "seed": [0], "dataset": ["fashion"]},
        {"protocol": "novelty", "seed": [1, 2]},
    ],
}


def _matches(spec: CellSpec, stage: dict) -> bool:
    r = spec.resolved()
    for key, want in stage.items():
        have = getattr(r, key)
        if isinstance(want, (list, tuple)) and not isinstance(want, str):
            if have not in [tuple(w) if isinstance(w, (list, tuple)) else w for w in want]:
                return False
        elif have != want:
            return False
    return True


def stage_of(spec: CellSpec, profile: str) -> int:
    """The index of a cell's priority stage in ``PRIORITY[profile]`` (len(stages) if none)."""
    stages = PRIORITY.get(profile, [])
    return next((i for i, st in enumerate(stages) if _matches(spec, st)), len(stages))


def prioritized(cells: Sequence[CellSpec], profile: str) -> list[CellSpec]:
    """``cells`` in the profile's training order: by stage, then seed, then grid order."""
    return sorted(cells, key=lambda c: (stage_of(c, profile), c.seed))   # sorted() is stable


def profile_grid(name: str) -> Grid:
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name]


def narrow(grid: Grid, protocol: Optional[str] = None, datasets: Optional[Sequence[str]] = None,
           classes: Optional[Sequence[int]] = None, fractions: Optional[Sequence[float]] = None,
           seeds: Optional[Sequence[int]] = None, epochs: Optional[int] = None,
           methods: Optional[Sequence[str]] = None) -> Grid:
    """The grid narrowed by the CLI's options; ``None`` leaves a field as the profile has it."""
    g = grid
    if protocol is not None:
        if protocol not in PROTOCOLS:
            raise ConfigError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
        g = replace(g, **{("novelty_datasets" if protocol == "imbalanced" else "imbalanced_datasets"): ()})
    if datasets is not None:
        ds = tuple(datasets)
        g = replace(g, imbalanced_datasets=ds if g.imbalanced_datasets else (),
                    novelty_datasets=ds if g.novelty_datasets else ())
    if classes is not None:
        g = replace(g, normal_classes=tuple(classes), held_outs=tuple((c,) for c in classes), extra_held_outs={})
    if fractions is not None:
        g = replace(g, fractions=tuple(fractions))
    if seeds is not None:
        g = replace(g, seeds=tuple(seeds))
    if epochs is not None:
        g = replace(g, epochs=epochs, novelty_epochs=epochs)
    if methods is not None:
        names = {p: known_methods(p) for p in PROTOCOLS}
        unknown = [m for m in methods if not any(m in v for v in names.values())]
        if unknown:
            known = sorted({m for v in names.values() for m in v})
            raise ConfigError(f"unknown method {unknown[0]!r}; choose one of {', '.join(known)}")
        g = replace(g, imbalanced_methods=tuple(m for m in methods if m in names["imbalanced"]),
                    novelty_methods=tuple(m for m in methods if m in names["novelty"]))
    return g
