"""The grid side of the fast path: group the missing CapsNet cells of a grid by shape
(:func:`plan_groups`), train each group with :func:`capslib.train.stacked.train_stacked`, evaluate
it stacked (:func:`capslib.train.stacked_eval.evaluate_stacked`) and score every model with the plain
path's code (:func:`train_group`).

Planned by :func:`capslib.run.runner.plan` when ``fast`` is on (the default on CUDA) and run by
an executor as a :class:`capslib.run.execute.GroupUnit`; the runner writes the cells.
"""
from __future__ import annotations

import time
from typing import Mapping, Sequence, Union

import torch

from capslib.core.errors import ConfigError

from capslib.core.config import CellSpec
from capslib.data.datasets import Dataset
from capslib.train.stacked import FastOptions, StackedCapsNet, tf32_enabled, train_stacked
from capslib.train.stacked_eval import evaluate_stacked
from capslib.study.protocols import CellResult, capsnet_job, cell_result, evaluation_requests
from capslib.data.splits import Split

DEFAULT_GROUP_SIZE = 8


def group_key(spec: CellSpec) -> tuple:
    """Cells with one key share every tensor shape and the training schedule's form:
    protocol, dataset, number of capsules, batch size, epochs, lr, lr decay. The variant
    (standard / proposed) is *not* in it: it only changes per-sample masks, which each
    model carries; training-set sizes may differ too (ragged epochs are handled)."""
    r = spec.resolved()
    k = 2 if r.protocol == "imbalanced" else r.n_normal_classes
    return (r.protocol, r.dataset, k, r.batch_size, r.epochs, r.lr, r.lr_decay)


def group_limit(group_size: Union[int, Mapping[str, int]], protocol: str) -> int:
    """The most models of one group of ``protocol``: ``group_size`` itself, or its entry for
    the protocol (:data:`DEFAULT_GROUP_SIZE` where it names none)."""
    n = group_size.get(protocol, DEFAULT_GROUP_SIZE) if isinstance(group_size, Mapping) else group_size
    if n < 1:
        raise ConfigError(f"group size must be >= 1, got {n}")
    return n


def plan_groups(cells: Sequence[CellSpec], group_size: Union[int, Mapping[str, int]] = DEFAULT_GROUP_SIZE
                ) -> list[list[CellSpec]]:
    """The CapsNet cells in groups of at most ``group_size`` with one :func:`group_key`, each
    group placed where its first cell is in ``cells``: a group fills with the next cells of
    its key, so the order given (the profile's priority) is kept group by group.
    ``group_size``: one size, or one per protocol ({'imbalanced': 32, 'novelty': 16}: paper
    A's and paper B's networks differ in size, and so does the group the device fits)."""
    for protocol in (group_size if isinstance(group_size, Mapping) else ("",)):
        group_limit(group_size, protocol)                 # a size below 1: one line, before any grouping
    groups: list[list[CellSpec]] = []
    open_group: dict[tuple, list[CellSpec]] = {}
    for c in cells:
        key = group_key(c)
        g = open_group.get(key)
        if g is None or len(g) >= group_limit(group_size, key[0]):
            g = open_group[key] = []
            groups.append(g)
        g.append(c)
    return groups


def train_group_only(specs: Sequence[CellSpec], data: Dataset, splits: Sequence[Split], device: torch.device,
                     options: FastOptions = FastOptions(), progress=None) -> tuple[list, list]:
    """Train one group together, nothing else: (the trained jobs, per cell train_stacked's fit
    dict or the NonFiniteLoss that stopped it)."""
    jobs = [capsnet_job(s, data, sp, torch.device("cpu")) for s, sp in zip(specs, splits)]
    size = jobs[0].model.config.image_size
    crop = size if size != data.image_shape[-1] else None     # smallNORB: 48x48 stored, 32x32 crops
    return jobs, train_stacked(jobs, data.x_train, device, options, crop=crop, progress=progress)


def train_group(specs: Sequence[CellSpec], data: Dataset, splits: Sequence[Split], device: torch.device,
                options: FastOptions = FastOptions(), progress=None) -> list:
    """Train one group together; per cell a CellResult (exactly the plain path's fields,
    plus ``info['fast_path']``) or the NonFiniteLoss that stopped it."""
    jobs, fits = train_group_only(specs, data, splits, device, options, progress)
    net = StackedCapsNet([j.model for j in jobs]).to(device)               # the trained weights, stacked
    net.bf16, net.channels_last, net.conv1_fp32 = options.bf16, options.channels_last, options.conv1_fp32
    requests = [evaluation_requests(s, data, sp) for s, sp in zip(specs, splits)]
    outputs: list[dict] = [{} for _ in specs]
    t0 = time.perf_counter()
    with tf32_enabled(options.tf32, options.exact_bf16_reductions):        # as in training
        for name in requests[0]:                                            # paper A: train, test; B: test
            for m, o in enumerate(evaluate_stacked(net, [q[name] for q in requests])):
                outputs[m][name] = o
    eval_seconds = time.perf_counter() - t0
    out: list = []
    for spec, split, fit, outs in zip(specs, splits, fits, outputs):
        if isinstance(fit, Exception):
            out.append(fit)
            continue
        res: CellResult = cell_result(spec, data, split, outs, fit)
        res.info["epoch_end_losses"] = fit["epoch_end_losses"]
        res.info["fast_path"] = {"group_size": fit["group_size"],
                                 "group_train_seconds": round(fit["group_train_seconds"], 3),
                                 "group_eval_seconds": round(eval_seconds, 3),
                                 "group": [s.cell_id for s in specs]}
        out.append(res)
    return out
