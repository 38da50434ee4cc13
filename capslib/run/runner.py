"""The runner: plans the missing cells of a grid, hands them to an executor, and alone
writes the store.

``run_grid`` is what the CLI, the notebooks and the tests call. The run layer is a
pipeline: the runner *plans* (the missing cells, in the order given, the CapsNets grouped
for the fast path), claims each unit's cells and checks the time budget as an executor
asks for the next unit; the executor (:class:`capslib.run.execute.InProcess`, the default, or
:class:`capslib.run.cluster.DaskExecutor`) returns each cell's outcome; the runner writes every
finished cell at once, and a failing cell (a NaN loss) is reported by name while the
others go on. What it has to say (a failed, paused or quarantined cell, cells left for the next
run) goes to this module's logger; the command line shows it (:mod:`capslib.cli.logs`).
"""
from __future__ import annotations

import logging
import sys
from contextlib import ExitStack
from typing import Iterable, Iterator, Optional, Sequence

import torch

from capslib.core.config import CellSpec
from capslib.data.datasets import load_dataset
from capslib.run.budget import Rates, TimeBudget, describe
from capslib.run.execute import CellUnit, Done, Failed, GroupUnit, InProcess, Paused, Unit, epochs_run
from capslib.study.methods import method_for
from capslib.data.splits import Split, check_imbalanced, imbalanced_split, novelty_split
from capslib.run.store.results import ResultsStore
from capslib.run.store.schema import result_rows
from capslib.core.provenance import git_commit, provenance
from capslib.train.plain import check_precision, default_device, default_precision

log = logging.getLogger(__name__)


def split_for(r: CellSpec, data) -> Split:
    """A resolved cell's train/test split."""
    if r.protocol == "imbalanced":
        return imbalanced_split(data.y_train, data.y_test, r.normal_class, r.anomaly_fraction, r.seed)
    return novelty_split(data.y_train, data.y_test, r.held_out, data.n_classes)


def write_result(spec: CellSpec, store: ResultsStore, split: Split, result, device, wall_seconds: float,
                 precision: str = "fp32", *, where: Optional[dict] = None, **extra) -> dict:
    """Write one cell's CellResult with its provenance (and ``extra`` provenance fields;
    ``where``: the provenance of the process that trained it, when another); returns its
    cell.json document."""
    r = spec.resolved()
    prov = {**provenance(device), **(where or {})}
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


def cell_unit(spec: CellSpec, data, store: ResultsStore, precision: str) -> CellUnit:
    """The plain-path unit of one cell: its split, its method's cell function, its precision
    (``precision`` is the run's), and for a CapsNet the store that keys its checkpoint."""
    r = spec.resolved()
    return CellUnit(spec, split_for(r, data), method_for(r.protocol, r.method), cell_precision(spec, precision),
                    str(store.dir) if resumable(spec) else None)


def run_cell(spec: CellSpec, store: ResultsStore, data_root=None, device=None, progress=None,
             precision: Optional[str] = None, deadline: Optional[float] = None) -> dict:
    """Train and evaluate one cell and write it; returns its cell.json document.

    ``precision``: the CapsNet's (None: bf16 where the device has it natively, else
    fp32). A CapsNet's training is checkpointed every epoch and resumes from its
    checkpoint; with ``deadline`` (``time.monotonic()``) it may stop at an epoch boundary
    with :class:`capslib.train.checkpoint.TrainingPaused`. The checkpoint goes once the cell is stored."""
    git_commit()                                # the commit this cell starts with
    device = torch.device(device) if device is not None else default_device()
    precision = check_precision(precision or default_precision(device))
    data = load_dataset(spec.resolved().dataset, data_root)
    unit = cell_unit(spec, data, store, precision)
    done = unit.train(data, device, progress, deadline)
    doc = write_result(spec, store, done.split, done.result, device, done.wall_seconds, done.precision, **done.extra)
    unit.remove_checkpoint()
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


def plan(cells: Sequence[CellSpec], store: ResultsStore, data: dict, precision: str, fast: bool,
         group_size: int = 8, fast_options=None) -> list[Unit]:
    """The units of work for ``cells`` (all missing), in their order: with ``fast``, the
    CapsNet cells in stacked groups (:func:`capslib.run.groups.plan_groups`), each group where
    its first cell is; the other cells one by one on the plain path, where they are."""
    from capslib.core.config import FastOptions
    from capslib.run.groups import plan_groups
    if not fast:
        return [cell_unit(c, data[c.resolved().dataset], store, precision) for c in cells]
    position = {c.cell_id: i for i, c in enumerate(cells)}
    placed: list[tuple[int, Unit]] = []
    for group in plan_groups([c for c in cells if c.resolved().method == "capsnet"], group_size):
        d = data[group[0].resolved().dataset]
        placed.append((position[group[0].cell_id],
                       GroupUnit(group, [split_for(s.resolved(), d) for s in group], fast_options or FastOptions())))
    placed += [(position[c.cell_id], cell_unit(c, data[c.resolved().dataset], store, precision))
               for c in cells if c.resolved().method != "capsnet"]
    return [u for _, u in sorted(placed, key=lambda pu: pu[0])]


def run_grid(cells: Sequence[CellSpec], store: ResultsStore, data_root=None, device=None,
             show_progress: bool = True, out=sys.stderr, fast: Optional[bool] = None, group_size: int = 8,
             time_budget: Optional[float] = None, fast_options=None, precision: Optional[str] = None,
             executor=None, rates: Optional[Rates] = None) -> dict:
    """Run every missing cell, in the order given. Returns {'ran': [...], 'skipped': [...],
    'failed': {id: msg}, 'deferred': [...], 'paused': {id: 'epoch k/N'}, 'elsewhere': [...],
    'overrun': [{'cells', 'predicted_s', 'left_s', 'what'}, ...]}.

    ``fast``: train the CapsNet cells in groups of up to ``group_size`` stacked models (one
    size, or one per protocol: :func:`capslib.run.groups.plan_groups`) with ``fast_options``
    (:class:`capslib.core.config.FastOptions`); None = on when the device is CUDA.
    ``precision``: the plain path's CapsNets, fp32 or bf16 (None: bf16 where the device has
    it natively). ``time_budget`` (seconds): leave
    the cells that would not finish in time for the next run ('deferred'); a CapsNet cell
    in training pauses at an epoch boundary ('paused') and the next run resumes it from
    its checkpoint, as it resumes any cell a killed run left in flight. ``rates``
    (:class:`capslib.run.budget.Rates`, measured images/s): a stacked group predicted to end
    after the budget does not start, not even as the run's first unit, and later units that
    fit go on ('overrun': those groups, also in 'deferred'). ``executor``: who
    trains the units (None: :class:`capslib.run.execute.InProcess`; or a
    :class:`capslib.run.cluster.DaskExecutor`); cells another run holds are left to it ('elsewhere').
    ``out``: where the progress bars go; messages go to the module's logger."""
    budget = TimeBudget(time_budget, rates)
    git_commit()                                # the commit this run starts with, kept for its cells
    dev = torch.device(device) if device is not None else default_device()
    precision = check_precision(precision or default_precision(dev))
    # the cells and their data are checked before the store is touched: bad input changes nothing
    first_todo = [c for c in cells if not store.is_done(c)]
    validate_cells(first_todo, data_root)
    data = {name: load_dataset(name, data_root) for name in sorted({c.resolved().dataset for c in first_todo})}
    store.clean_stale()
    for cid, where in store.quarantine_damaged().items():
        log.warning("cell %s was damaged: moved to %s (reason.txt says why); it trains again", cid, where)
    store.rebuild_csv()
    todo = [c for c in cells if not store.is_done(c)]
    report = {"ran": [], "skipped": [c.cell_id for c in cells if store.is_done(c)], "failed": {}, "deferred": [],
              "paused": {}, "elsewhere": [], "overrun": []}
    if not todo:
        return report
    validate_cells(todo, data_root)
    data.update({name: load_dataset(name, data_root) for name in sorted({c.resolved().dataset for c in todo})
                 if name not in data})
    fast = (dev.type == "cuda") if fast is None else fast
    units = plan(todo, store, data, precision, fast, group_size, fast_options)
    executor = executor if executor is not None else InProcess(show_progress, out)
    bar = GridBar(len(todo), show_progress, out)
    claims: dict[int, ExitStack] = {}
    try:
        for unit, outcomes, seconds in executor.run(_admitted(units, store, budget, report, claims, bar),
                                                    data, dev, budget.deadline):
            try:
                for o in outcomes:
                    _record(o, unit, store, dev, report)
            finally:
                claims.pop(id(unit)).close()
            budget.record(seconds, max(map(epochs_run, outcomes), default=1) if unit.resumable else 1, unit)
            bar.finished(len(outcomes))
    finally:
        for stack in claims.values():
            stack.close()
        bar.close()
    if report["overrun"]:
        log.info("skipped %d units predicted to end after the budget (images to train / measured images/s, "
                 "x%.2f), left for the next run: %s", len(report["overrun"]), budget.factor,
                 "; ".join(o["what"] for o in report["overrun"]))
    if report["deferred"]:
        log.info("time budget of %g s: %d cells left for the next run", time_budget, len(report["deferred"]))
    return report


def _admitted(units: Iterable[Unit], store: ResultsStore, budget: TimeBudget, report: dict,
              claims: dict, bar: "GridBar") -> Iterator[Unit]:
    """The units an executor may start now, as it asks for them: within the time budget
    ('deferred' else), narrowed to the cells this run claims ('elsewhere': another run holds
    them, or has finished them meanwhile). The claims stay held until the runner has
    written the unit's outcomes."""
    for unit in units:
        ids = [s.cell_id for s in unit.specs]
        fits, predicted = budget.admits(unit)
        if not fits:
            report["deferred"].extend(ids)
            if predicted is not None:
                left = budget.left()
                report["overrun"].append({"cells": ids, "predicted_s": round(predicted, 1), "left_s": round(left, 1),
                                          "what": describe(unit, predicted, left)})
            bar.skipped(len(ids))
            continue
        stack = ExitStack()
        held = [s for s in unit.specs if stack.enter_context(store.claim(s))]
        report["elsewhere"].extend(s.cell_id for s in unit.specs if s not in held)
        bar.skipped(len(ids) - len(held))
        if not held:
            stack.close()
            continue
        unit = unit.narrowed(held)
        claims[id(unit)] = stack
        bar.started(len(held), held[0].cell_id)
        yield unit


def _record(o, unit: Unit, store: ResultsStore, device, report: dict) -> None:
    """One outcome into the store and the report."""
    cid = o.spec.cell_id
    if isinstance(o, Done):
        write_result(o.spec, store, o.split, o.result, device, o.wall_seconds, o.precision, where=o.where, **o.extra)
        unit.remove_checkpoint()
        report["ran"].append(cid)
    elif isinstance(o, Failed):
        report["failed"][cid] = o.message
        log.warning("cell %s failed, the others go on: %s", cid, o.message)
    elif isinstance(o, Paused):
        report["paused"][cid] = f"epoch {o.epoch}/{o.epochs}"
        report["deferred"].append(cid)
        log.info("cell %s paused after epoch %s/%s (time budget); the next run resumes it", cid, o.epoch, o.epochs)
    else:
        raise TypeError(f"unknown outcome {type(o).__name__}")


class GridBar:
    """The grid's progress bar: cells done / running / left, whichever executor runs them."""

    def __init__(self, total: int, show: bool, out):
        from tqdm.auto import tqdm
        self.bar = tqdm(total=total, desc="cells", unit="cell", disable=not show, file=out)
        self.left, self.running = total, 0

    def _show(self, current: str = "") -> None:
        self.bar.set_postfix_str(f"running {self.running}, left {self.left}" + (f" ({current})" if current else ""))

    def started(self, n: int, current: str) -> None:
        self.left, self.running = self.left - n, self.running + n
        self._show(current)

    def skipped(self, n: int) -> None:
        if n:
            self.left -= n
            self.bar.update(n)
            self._show()

    def finished(self, n: int) -> None:
        self.running -= n
        self.bar.update(n)
        self._show()

    def close(self) -> None:
        self.bar.close()


def _n_train(r: CellSpec, data_root) -> int:
    """Training-set size of a cell, for the progress bar."""
    return len(split_for(r, load_dataset(r.dataset, data_root)).train_idx)
