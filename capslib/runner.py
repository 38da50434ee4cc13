"""Profiles (named grids of cells) and the runner that trains only the missing cells.

``run_grid`` is what the CLI, the notebooks and the tests call: it skips every cell
already in the store, writes each finished cell at once, and a failing cell (a NaN
loss) is reported by name while the others go on.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from typing import Iterable, Optional, Sequence

import torch

from .checkpoint import Checkpoint, TrainingPaused
from .config import CellSpec, ConfigError
from .data import load_dataset
from .methods import method_for
from .protocols import RunContext
from .splits import Split, check_imbalanced, imbalanced_split, novelty_split
from .store import ResultsStore, provenance, result_rows
from .train import NonFiniteLoss, check_precision, default_device, default_precision


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
    # the papers' settings (STUDY.md §5); needs a GPU
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
        # (1) paper A, seed 0, dataset by dataset, with the CNN and Deep SAD references
        {"protocol": "imbalanced", "seed": [0], "dataset": ["mnist"]},
        {"protocol": "imbalanced", "seed": [0], "dataset": ["fashion"]},
        {"protocol": "imbalanced", "seed": [0], "dataset": ["kmnist"]},
        # (2) paper B's MNIST case studies (held out 2, 9, {0, 3, 5}), seed 0, every method
        {"protocol": "novelty", "seed": [0], "dataset": ["mnist"], "held_out": [(2,), (9,), (0, 3, 5)]},
        # (3) paper A, seeds 1 and 2
        {"protocol": "imbalanced", "seed": [1, 2], "dataset": ["mnist"]},
        {"protocol": "imbalanced", "seed": [1, 2], "dataset": ["fashion"]},
        {"protocol": "imbalanced", "seed": [1, 2], "dataset": ["kmnist"]},
        # (4) the rest of paper B, seed 0, then seeds 1 and 2
        {"protocol": "novelty", "seed": [0], "dataset": ["mnist"]},
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
    from .methods import METHODS

    g = grid
    if protocol is not None:
        if protocol not in METHODS:
            raise ConfigError(f"unknown protocol {protocol!r}; choose one of {', '.join(METHODS)}")
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
        unknown = [m for m in methods if not any(m in v for v in METHODS.values())]
        if unknown:
            known = sorted({m for v in METHODS.values() for m in v})
            raise ConfigError(f"unknown method {unknown[0]!r}; choose one of {', '.join(known)}")
        g = replace(g, imbalanced_methods=tuple(m for m in methods if m in METHODS["imbalanced"]),
                    novelty_methods=tuple(m for m in methods if m in METHODS["novelty"]))
    return g


def split_for(r: CellSpec, data) -> Split:
    """A resolved cell's train/test split."""
    if r.protocol == "imbalanced":
        return imbalanced_split(data.y_train, data.y_test, r.normal_class, r.anomaly_fraction, r.seed)
    return novelty_split(data.y_train, data.y_test, r.held_out, data.n_classes)


def write_result(spec: CellSpec, store: ResultsStore, split: Split, result, device, wall_seconds: float,
                 precision: str = "fp32", **extra) -> dict:
    """Write one cell's CellResult with its provenance (and ``extra`` provenance fields);
    returns its cell.json document."""
    r = spec.resolved()
    prov = provenance(device)
    prov.update(seed=r.seed, wall_seconds=round(wall_seconds, 3),
                train_seconds=round(result.train_seconds, 3), precision=precision, **extra)
    rows = result_rows(spec, result, prov)
    arrays = {"test_labels": result.test_labels, "test_idx": split.test_idx,
              **{f"score_{k}": v.astype("float32") for k, v in result.scores.items()}, **result.arrays}
    store.write_cell(spec, rows, arrays, prov, result.info)
    return store.load_cell(spec)


def cell_precision(spec: CellSpec, precision: str) -> str:
    """The precision a cell computes in: the CapsNets take the run's; the baselines are fp32."""
    return precision if spec.resolved().method == "capsnet" else "fp32"


def run_cell(spec: CellSpec, store: ResultsStore, data_root=None, device=None, progress=None,
             precision: Optional[str] = None, deadline: Optional[float] = None) -> dict:
    """Train and evaluate one cell and write it; returns its cell.json document.

    ``precision``: the CapsNet's (None: bf16 where the device has it natively, else
    fp32). A CapsNet's training is checkpointed every epoch and resumes from its
    checkpoint; with ``deadline`` (``time.monotonic()``) it may stop at an epoch boundary
    with :class:`capslib.checkpoint.TrainingPaused`. The checkpoint goes once the cell is stored."""
    device = torch.device(device) if device is not None else default_device()
    precision = cell_precision(spec, check_precision(precision or default_precision(device)))
    r = spec.resolved()
    data = load_dataset(r.dataset, data_root)
    split = split_for(r, data)
    fn = method_for(r.protocol, r.method)
    ckpt = Checkpoint(store.dir, spec.cell_id, precision, deadline) if r.method == "capsnet" else None
    t0 = time.perf_counter()
    result = fn(r, data, split, RunContext(device, progress, precision, ckpt))
    resumed = {"resumed_from_epoch": ckpt.resumed_from} if ckpt is not None and ckpt.resumed_from else {}
    doc = write_result(spec, store, split, result, device, time.perf_counter() - t0, precision, **resumed)
    if ckpt is not None:
        ckpt.remove()
    return doc


def resumable(spec: CellSpec) -> bool:
    """Cells whose training is checkpointed per epoch (the CapsNets on the plain path)."""
    return spec.resolved().method == "capsnet"


def validate_cells(cells: Iterable[CellSpec], data_root=None) -> None:
    """Fail early, with one line, if a dataset the grid needs is not there or an anomaly
    fraction leaves a cell no training anomaly."""
    cells = list(cells)
    for name in sorted({c.dataset for c in cells}):
        data = load_dataset(name, data_root)
        for c in cells:
            if c.dataset == name and c.protocol == "imbalanced":
                check_imbalanced(data.y_train, name, c.normal_class, c.anomaly_fraction)


class TimeBudget:
    """For runs that must end by a deadline (a GPU lease's 10-minute commands, a background
    slice of the grid): start no new unit of work (a cell, or a fast-path group) once it
    would likely end past ``seconds``, taking each unit to last as long as the longest so
    far. A resumable cell (checkpointed per epoch) may start while one epoch still fits:
    it pauses at the last epoch boundary before the deadline."""

    def __init__(self, seconds: Optional[float] = None):
        if seconds is not None and seconds <= 0:
            raise ConfigError(f"time budget must be > 0 seconds, got {seconds}")
        self.seconds, self.t0, self.longest, self.longest_epoch = seconds, time.monotonic(), 0.0, 0.0

    @property
    def deadline(self) -> Optional[float]:
        return None if self.seconds is None else self.t0 + self.seconds

    def allows_another(self, resumable: bool = False) -> bool:
        if self.seconds is None:
            return True
        unit = self.longest_epoch if resumable else self.longest
        return time.monotonic() + unit <= self.deadline

    def record(self, seconds: float, epochs: int = 1) -> None:
        self.longest = max(self.longest, seconds)
        self.longest_epoch = max(self.longest_epoch, seconds / max(epochs, 1))


def run_grid(cells: Sequence[CellSpec], store: ResultsStore, data_root=None, device=None,
             show_progress: bool = True, out=sys.stderr, fast: Optional[bool] = None, group_size: int = 8,
             time_budget: Optional[float] = None, fast_options=None, precision: Optional[str] = None) -> dict:
    """Run every missing cell, in the order given. Returns {'ran': [...], 'skipped': [...],
    'failed': {id: msg}, 'deferred': [...], 'paused': {id: 'epoch k/N'}}.

    ``fast``: train the CapsNet cells in groups of up to ``group_size`` stacked models
    (:mod:`capslib.fastgrid`) with ``fast_options`` (:class:`capslib.config.FastOptions`);
    None = on when the device is CUDA. ``precision``: the plain path's CapsNets, fp32 or
    bf16 (None: bf16 where the device has it natively). ``time_budget`` (seconds): leave
    the cells that would not finish in time for the next run ('deferred'); a CapsNet cell
    in training pauses at an epoch boundary ('paused') and the next run resumes it from
    its checkpoint, as it resumes any cell a killed run left in flight."""
    from tqdm.auto import tqdm

    budget = TimeBudget(time_budget)
    dev = torch.device(device) if device is not None else default_device()
    precision = check_precision(precision or default_precision(dev))
    store.clean_stale()
    for cid, where in store.quarantine_damaged().items():
        print(f"cell {cid} was damaged: moved to {where} (reason.txt says why); it trains again", file=out)
    store.rebuild_csv()
    todo = [c for c in cells if not store.is_done(c)]
    report = {"ran": [], "skipped": [c.cell_id for c in cells if store.is_done(c)], "failed": {}, "deferred": [],
              "paused": {}, "elsewhere": []}
    if not todo:
        return report
    validate_cells(todo, data_root)
    if (dev.type == "cuda") if fast is None else fast:
        from .fastgrid import run_groups
        todo = run_groups(todo, store, data_root, dev, report, group_size, fast_options,
                          show_progress=show_progress, out=out, budget=budget)
    outer = tqdm(todo, desc="cells", unit="cell", disable=not show_progress, file=out)
    for spec in outer:
        if not budget.allows_another(resumable(spec)):
            report["deferred"].append(spec.cell_id)
            continue
        with store.claim(spec) as mine:   # another run holds it, or has finished it meanwhile
            if not mine:
                report["elsewhere"].append(spec.cell_id)
                continue
            t_cell = time.monotonic()
            outer.set_postfix_str(spec.cell_id)
            r = spec.resolved()
            n_train = _n_train(r, data_root)
            steps = r.epochs * -(-n_train // r.batch_size) if n_train else None
            inner = tqdm(total=steps, desc=" train", unit="step", leave=False, disable=not show_progress, file=out)

            def progress(info, bar=inner):
                bar.update(info.get("steps", 1))
                if bar.n % 20 == 0:
                    bar.set_postfix(epoch=info["epoch"], loss=f"{info['loss']:.4f}")
            epochs_run = r.epochs
            try:
                doc = run_cell(spec, store, data_root, device, progress, precision, budget.deadline)
                epochs_run = r.epochs - doc.get("provenance", {}).get("resumed_from_epoch", 0)
                report["ran"].append(spec.cell_id)
            except NonFiniteLoss as e:
                report["failed"][spec.cell_id] = str(e)
                print(f"cell {spec.cell_id} failed, the others go on: {e}", file=out)
            except TrainingPaused as e:
                report["paused"][spec.cell_id] = f"epoch {e.epoch}/{e.epochs}"
                report["deferred"].append(spec.cell_id)
                epochs_run = e.epoch
                print(f"cell {spec.cell_id} paused after epoch {e.epoch}/{e.epochs} (time budget); "
                      f"the next run resumes it", file=out)
            finally:
                inner.close()
                budget.record(time.monotonic() - t_cell, epochs_run if resumable(spec) else 1)
    if report["deferred"]:
        print(f"time budget of {time_budget:g} s: {len(report['deferred'])} cells left for the next run", file=out)
    return report


def _n_train(r: CellSpec, data_root) -> int:
    """Training-set size of a cell, for the progress bar."""
    return len(split_for(r, load_dataset(r.dataset, data_root)).train_idx)
