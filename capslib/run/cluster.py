"""The Dask engine: the grid's units of work on Dask workers, the store written by the driver.

``python -m capslib run ... --workers N`` starts a local Dask cluster of N worker processes
(a ``LocalCluster``); ``--scheduler ADDRESS`` (or ``$CAPSLIB_SCHEDULER``) submits to an
existing one (``dask scheduler`` + ``dask worker``, dask-jobqueue on Slurm/PBS,
dask-kubernetes). Dask is an optional extra: ``pip install -e ".[cluster]"``.

No shared filesystem is needed: the driver sends each unit (its cells' splits, method,
precision) and the dataset (scattered once to every worker, or read by the workers from
``worker_data_root`` on their own disks); a worker returns the finished cells' results, and
the driver's runner (:func:`capslib.run.runner.run_grid`) alone writes the store, holding each
cell's claim until it is written. A worker that dies mid-task (kill -9) loses the task to
the scheduler, which reruns it on another worker; a unit that kills its workers
``distributed.scheduler.allowed-failures`` times (default 3), or raises, is reported
as failed by cell name and the others go on.

Resources: each unit sets torch's CPU threads on its worker (``threads``); on CUDA a unit
asks ``{"GPU": gpu_per_task}``, so only workers started with ``--resources GPU=1`` get it,
and a local cluster's workers each hold ``GPU=1``: N workers share the one GPU.
"""
from __future__ import annotations

import argparse
import itertools
import logging
import os
import socket
import time
import uuid
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterable, Iterator, Optional

from capslib.core.errors import ConfigError

if TYPE_CHECKING:     # torch and the executors load with the engine, not with the CLI's flags
    import torch

    from capslib.data.datasets import Dataset
    from capslib.run.execute import Unit

SCHEDULER_ENV = "CAPSLIB_SCHEDULER"
INSTALL = 'pip install -e ".[cluster]" (or pip install "dask[distributed]")'


def distributed():
    """The ``distributed`` module, or one line saying what to install."""
    try:
        import distributed as d
    except ImportError:
        raise ConfigError(f"--workers/--scheduler need Dask, which is not installed here: {INSTALL}") from None
    return d


def run_unit(unit: "Unit", data, device: Optional[str], threads: Optional[int], deadline_utc: Optional[float]):
    """On a worker: the unit's outcomes and wall seconds. ``data``: the Dataset, or
    (name, root) for the worker to read; ``deadline_utc``: a ``time.time()`` value."""
    import torch

    from capslib.data.datasets import load_dataset
    from capslib.run.execute import Done
    from capslib.core.provenance import provenance
    from capslib.train.plain import default_device
    torch.set_num_threads(threads or worker_cores())
    if isinstance(data, tuple):
        data = load_dataset(*data)
    dev = torch.device(device) if device else default_device()
    deadline = None if deadline_utc is None else time.monotonic() + (deadline_utc - time.time())
    t0 = time.monotonic()
    outcomes = unit.run(data, dev, None, deadline)
    seconds = time.monotonic() - t0
    where = {k: v for k, v in provenance(dev).items() if k != "finished_utc"}
    where["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    for o in outcomes:
        if isinstance(o, Done):
            o.where.update(where)
    if any(isinstance(o, Done) for o in outcomes):
        unit.remove_checkpoint()      # in this worker's cache; the driver writes the cell
    return outcomes, seconds


def worker_cores() -> int:
    """The CPU threads one task may use on this worker: the cores this process may run on,
    divided by the worker's task slots (Dask sets OMP_NUM_THREADS=1 in its workers)."""
    from distributed import get_worker
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        slots = get_worker().state.nthreads
    except ValueError:          # not in a worker
        slots = 1
    return max(1, cores // max(1, slots))


class DaskExecutor:
    """Runs units on a Dask cluster: ``workers`` local processes, or the cluster at
    ``scheduler``. ``threads``: torch's CPU threads per unit (default: the cores shared
    among the local workers; on a given cluster, a worker's cores divided by its task
    slots). ``gpu_per_task``: the share of a worker's GPU a CUDA unit asks. ``worker_data_root``: the workers read the
    datasets there instead of receiving them from the driver."""

    def __init__(self, workers: Optional[int] = None, scheduler: Optional[str] = None,
                 threads: Optional[int] = None, gpu_per_task: float = 1.0, worker_data_root=None):
        if (workers is None) == (scheduler is None):
            raise ConfigError("give the Dask engine either workers (--workers N) or a scheduler (--scheduler ADDRESS)")
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {workers}")
        if threads is not None and threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {threads}")
        if not 0 < gpu_per_task <= 1:
            raise ConfigError(f"--gpu-per-task must be in (0, 1], got {gpu_per_task}")
        distributed()
        self.workers, self.scheduler, self.gpu_per_task = workers, scheduler, gpu_per_task
        self.threads = threads or (max(1, (os.cpu_count() or 1) // workers) if workers else None)
        self.worker_data_root = None if worker_data_root is None else str(worker_data_root)

    @contextmanager
    def client(self):
        d = distributed()
        if self.scheduler is not None:
            try:
                client = d.Client(self.scheduler, timeout="20s")
            except (OSError, TimeoutError, ValueError) as e:
                raise ConfigError(f"no Dask scheduler at {self.scheduler!r} ({type(e).__name__}); start one "
                                  "(dask scheduler) or check --scheduler / $CAPSLIB_SCHEDULER") from None
            with client:
                yield client
            return
        import torch
        resources = {"GPU": 1} if torch.cuda.is_available() else None
        with d.LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True, dashboard_address=None,
                            silence_logs=logging.ERROR, resources=resources) as cluster, d.Client(cluster) as client:
            yield client

    def run(self, units: Iterable["Unit"], data: dict[str, "Dataset"], device: "torch.device",
            deadline: Optional[float] = None) -> Iterator[tuple["Unit", list, float]]:
        """Yields (unit, its outcomes, its wall seconds on its worker) as units end; pulls the
        next unit from ``units`` whenever a worker slot is free (so the runner's claims and
        time budget are checked as late as possible)."""
        import torch

        from capslib.run.execute import Failed
        d = distributed()
        deadline_utc = None if deadline is None else time.time() + (deadline - time.monotonic())
        resources = {"GPU": self.gpu_per_task} if torch.device(device).type == "cuda" else None
        units = iter(units)
        with self.client() as client:
            shipped: dict = {}
            pending: dict = {}
            finished = d.as_completed()
            order = itertools.count()

            def payload(name):
                if self.worker_data_root is not None:
                    return (name, self.worker_data_root)
                if name not in shipped:      # every worker holds a copy: one lost worker loses none
                    shipped[name] = client.scatter(data[name], broadcast=True, hash=False)
                return shipped[name]

            def fill():
                slots = max(1, sum(client.nthreads().values()))
                while len(pending) < slots:
                    unit = next(units, None)
                    if unit is None:
                        return
                    fut = client.submit(run_unit, unit, payload(unit.dataset), str(device), self.threads,
                                        deadline_utc, key=f"{unit.specs[0].cell_id}-{uuid.uuid4().hex[:8]}",
                                        resources=resources, pure=False, priority=-next(order))   # the runner's order
                    pending[fut.key] = unit
                    finished.add(fut)

            fill()
            for fut in finished:
                unit = pending.pop(fut.key)
                try:
                    outcomes, seconds = fut.result()
                except d.KilledWorker:
                    outcomes, seconds = [Failed(s, "its workers died each time it ran (killed or out of memory)")
                                         for s in unit.specs], 0.0
                except Exception as e:   # a task that raised on its worker: the cells fail, the others go on
                    outcomes, seconds = [Failed(s, f"{type(e).__name__}: {e}") for s in unit.specs], 0.0
                fut.release()
                yield unit, outcomes, seconds
                fill()


# ---- the command line --------------------------------------------------------------------------
def add_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="train on a local Dask cluster of N worker processes (pip install -e \".[cluster]\")")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help=f"train on an existing Dask cluster, e.g. tcp://host:8786 (default ${SCHEDULER_ENV})")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per cell on a worker (default: the cores "
                   "shared among --workers; on a --scheduler cluster, a worker's cores / its --nthreads)")
    p.add_argument("--gpu-per-task", type=float, default=None,
                   help="share of a worker's GPU one unit asks (default 1; workers need --resources GPU=1)")
    p.add_argument("--worker-data-root", default=None, metavar="PATH",
                   help="workers read the datasets from PATH on their own disks (default: the driver sends them)")


def from_flags(args) -> Optional[DaskExecutor]:
    """The executor the run flags ask for; None (the in-process runner) without --workers,
    --scheduler or $CAPSLIB_SCHEDULER."""
    if args.workers is not None and args.scheduler is not None:
        raise ConfigError("give --workers N (a local cluster) or --scheduler ADDRESS (an existing one), not both")
    scheduler = args.scheduler or (None if args.workers is not None else os.environ.get(SCHEDULER_ENV) or None)
    if args.workers is None and scheduler is None:
        extra = [f for f, v in (("--threads", args.threads), ("--gpu-per-task", args.gpu_per_task),
                                ("--worker-data-root", args.worker_data_root)) if v is not None]
        if extra:
            raise ConfigError(f"{extra[0]} is for the Dask engine: add --workers N or --scheduler ADDRESS")
        return None
    return DaskExecutor(args.workers, scheduler, args.threads,
                        1.0 if args.gpu_per_task is None else args.gpu_per_task, args.worker_data_root)
