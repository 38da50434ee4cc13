"""Units of work and the in-process executor: the middle of the run pipeline.

:mod:`capslib.run.runner` *plans* (which cells are missing, in what order, grouped how) and
hands units of work to an *executor*; the executor trains them and returns each cell's
outcome; the runner alone writes the store. Executors know nothing of the store:

- :class:`CellUnit`: one cell on the plain path (with its per-epoch checkpoint);
- :class:`GroupUnit`: a group of CapsNet cells trained stacked (:mod:`capslib.run.groups`);
- :class:`InProcess`: runs them one after another in this process (the default);
  :class:`capslib.run.cluster.DaskExecutor` runs them on Dask workers.

A unit carries everything a process needs but the dataset (its split, its method's cell
function, its precision), so it travels to another process as it is.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Iterator, Optional, Sequence, Union

import torch

from capslib.train.checkpoint import Checkpoint, TrainingPaused
from capslib.core.config import CellSpec, FastOptions
from capslib.data.datasets import Dataset
from capslib.study.protocols import CellResult, RunContext
from capslib.data.splits import Split
from capslib.train.plain import NonFiniteLoss


# ---- outcomes: what an executor returns for each cell ----------------------------------------
@dataclass
class Done:
    """A finished cell, ready for :func:`capslib.run.runner.write_result`."""
    spec: CellSpec
    split: Split
    result: CellResult
    wall_seconds: float
    precision: str
    extra: dict = field(default_factory=dict)   # more provenance (resumed_from_epoch)
    where: dict = field(default_factory=dict)   # the provenance of a worker that trained it (device, torch...)


@dataclass
class Failed:
    """A cell that stopped (a NaN loss, a dead worker): reported by name, the others go on."""
    spec: CellSpec
    message: str


@dataclass
class Paused:
    """A CapsNet cell stopped at an epoch boundary by the deadline (its checkpoint saved)."""
    spec: CellSpec
    epoch: int
    epochs: int


Outcome = Union[Done, Failed, Paused]


# ---- units ----------------------------------------------------------------------------------
class EpochLosses:
    """A training progress callback that keeps each epoch's mean minibatch loss and its last
    minibatch loss, and passes every report on to ``then``. ``means(epochs)`` and
    ``ends(epochs)``: the curves, None for an epoch this process did not train (the epochs
    before a resumed checkpoint). The last epoch's end is the cell's ``final_loss``, which the
    stall rule reads; an earlier epoch's end is what a training stopped there would have read."""

    def __init__(self, then: Optional[Callable] = None):
        self.then, self.sums, self.last = then, {}, {}

    def __call__(self, info: dict) -> None:
        if info.get("images"):                  # a step (not the report of a resumed checkpoint)
            s = self.sums.setdefault(info["epoch"], [0.0, 0])
            s[0], s[1] = s[0] + float(info["loss"]), s[1] + 1
            self.last[info["epoch"]] = float(info["loss"])
        if self.then is not None:
            self.then(info)

    def means(self, epochs: int) -> list:
        return [round(self.sums[e][0] / self.sums[e][1], 6) if e in self.sums else None for e in range(1, epochs + 1)]

    def ends(self, epochs: int) -> list:
        return [self.last.get(e) for e in range(1, epochs + 1)]


@dataclass
class CellUnit:
    """One cell on the plain path. ``fn``: its method's cell function (:mod:`capslib.study.methods`);
    ``checkpoint_key``: the results folder whose name keys its in-flight checkpoint (the
    CapsNets, None for the others)."""
    spec: CellSpec
    split: Split
    fn: Callable
    precision: str
    checkpoint_key: Optional[str] = None

    @property
    def specs(self) -> list[CellSpec]:
        return [self.spec]

    @property
    def dataset(self) -> str:
        return self.spec.resolved().dataset

    @property
    def resumable(self) -> bool:
        return self.checkpoint_key is not None

    def narrowed(self, held: Sequence[CellSpec]) -> "CellUnit":
        return self

    def train(self, data: Dataset, device: torch.device, progress=None, deadline: Optional[float] = None) -> Done:
        """Train and evaluate; raises NonFiniteLoss or TrainingPaused (run_cell's contract)."""
        ckpt = (Checkpoint(self.checkpoint_key, self.spec.cell_id, self.precision, deadline)
                if self.checkpoint_key is not None else None)
        t0 = time.perf_counter()
        curve = EpochLosses(progress)           # the CapsNet's loss curve: the stall rule's evidence
        watch = curve if self.spec.resolved().method == "capsnet" else progress
        result = self.fn(self.spec.resolved(), data, self.split, RunContext(device, watch, self.precision, ckpt))
        if curve.sums:
            result.info["epoch_losses"] = curve.means(self.spec.resolved().epochs)
            result.info["epoch_end_losses"] = curve.ends(self.spec.resolved().epochs)
        extra = {"resumed_from_epoch": ckpt.resumed_from} if ckpt is not None and ckpt.resumed_from else {}
        return Done(self.spec, self.split, result, time.perf_counter() - t0, self.precision, extra)

    def run(self, data: Dataset, device: torch.device, progress=None, deadline: Optional[float] = None) -> list:
        try:
            return [self.train(data, device, progress, deadline)]
        except NonFiniteLoss as e:
            return [Failed(self.spec, str(e))]
        except TrainingPaused as e:
            return [Paused(self.spec, e.epoch, e.epochs)]

    def remove_checkpoint(self) -> None:
        if self.checkpoint_key is not None:
            Checkpoint(self.checkpoint_key, self.spec.cell_id, self.precision).remove()

    def progress_bar(self, show: bool, out):
        from tqdm.auto import tqdm
        r = self.spec.resolved()
        steps = r.epochs * -(-len(self.split.train_idx) // r.batch_size) if len(self.split.train_idx) else None
        bar = tqdm(total=steps, desc=" train", unit="step", leave=False, disable=not show, file=out)

        def progress(info, bar=bar):
            bar.update(info.get("steps", 1))
            if bar.n % 20 == 0:
                bar.set_postfix(epoch=info["epoch"], loss=f"{info['loss']:.4f}")
        return bar, progress


@dataclass
class GroupUnit:
    """CapsNet cells of one :func:`capslib.run.groups.group_key`, trained stacked."""
    specs: list[CellSpec]
    splits: list[Split]
    options: FastOptions = field(default_factory=FastOptions)
    resumable = False

    @property
    def dataset(self) -> str:
        return self.specs[0].resolved().dataset

    @property
    def precision(self) -> str:
        return "bf16" if self.options.bf16 else ("tf32" if self.options.tf32 else "fp32")

    def narrowed(self, held: Sequence[CellSpec]) -> "GroupUnit":
        keep = [i for i, s in enumerate(self.specs) if s in held]
        return replace(self, specs=[self.specs[i] for i in keep], splits=[self.splits[i] for i in keep])

    def run(self, data: Dataset, device: torch.device, progress=None, deadline: Optional[float] = None) -> list:
        from capslib.run.groups import train_group
        t0 = time.perf_counter()
        results = train_group(self.specs, data, self.splits, device, self.options, progress)
        wall = time.perf_counter() - t0
        return [Failed(s, str(res)) if isinstance(res, NonFiniteLoss)
                else Done(s, sp, res, wall / len(self.specs), self.precision)
                for s, sp, res in zip(self.specs, self.splits, results)]

    def remove_checkpoint(self) -> None:
        pass

    def progress_bar(self, show: bool, out):
        from tqdm.auto import tqdm
        r0 = self.specs[0].resolved()
        bar = tqdm(total=None, desc=f" fast x{len(self.specs)} {r0.protocol}-{r0.dataset}", unit="step",
                   leave=False, disable=not show, file=out)

        def progress(done, total, bar=bar):
            bar.total = total
            bar.update(done - bar.n)
        return bar, progress


Unit = Union[CellUnit, GroupUnit]


def epochs_run(outcome: Outcome) -> int:
    """Epochs a cell's outcome trained in this run (the time budget's unit for resumable cells)."""
    r = outcome.spec.resolved()
    if isinstance(outcome, Paused):
        return outcome.epoch
    if isinstance(outcome, Done):
        return r.epochs - outcome.extra.get("resumed_from_epoch", 0)
    return r.epochs


# ---- the in-process executor ----------------------------------------------------------------
class InProcess:
    """The units one after another in this process, each with its training progress bar."""

    def __init__(self, show_progress: bool = True, out=sys.stderr):
        self.show_progress, self.out = show_progress, out

    def run(self, units: Iterable[Unit], data: dict[str, Dataset], device: torch.device,
            deadline: Optional[float] = None) -> Iterator[tuple[Unit, list, float]]:
        """Yields (unit, its outcomes, its wall seconds) as each unit ends; a unit is pulled
        from ``units`` only when the previous one has ended."""
        for unit in units:
            bar, progress = unit.progress_bar(self.show_progress, self.out)
            t0 = time.monotonic()
            try:
                outcomes = unit.run(data[unit.dataset], device, progress, deadline)
            finally:
                bar.close()
            yield unit, outcomes, time.monotonic() - t0
