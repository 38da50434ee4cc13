"""How many models one stacked group should hold on this device, per paper: the GPU window's
group sizes (called by :func:`capslib.tools.window.pick`).

For each paper's setting (:data:`SETTINGS`: paper A K = 2, batch 32; paper B K = 9, batch
100) and each size of :data:`GROUP_SIZES`, the device memory the group would take is
estimated first (:func:`capslib.train.stacked_memory.group_memory`); a size whose estimate
does not fit is skipped untried. The others are timed (:func:`time_group`: images/s over a
timed chunk of steps after a warm-up chunk; on CUDA with the measured peak memory). The
fastest is then checked with the window's soundness check (:func:`soundness`), its check
cells trained inside a group of that size; on failure the next fastest is checked.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

import numpy as np
import torch

from capslib.core.config import CellSpec, FastOptions
from capslib.model.capsnet import CapsNet, CapsNetConfig
from capslib.train.jobs import CapsNetJob
from capslib.train.plain import TrainSettings, synchronize
from capslib.train.stacked import train_stacked
from capslib.train.stacked_memory import USABLE_FRACTION, fits, group_memory

GROUP_SIZES = (8, 16, 32, 64)
GIB = 2 ** 30


@dataclass(frozen=True)
class Setting:
    """One paper's stacked training shape; ``config``: CapsNetConfig fields other than the
    class count (tests shrink the network with it)."""
    protocol: str
    n_classes: int
    batch: int
    standardize: bool
    config: dict = field(default_factory=dict)

    def capsnet_config(self) -> CapsNetConfig:
        return CapsNetConfig(n_classes=self.n_classes, **self.config)


SETTINGS = {"imbalanced": Setting("imbalanced", 2, 32, True),     # paper A: normal vs anomalous capsule
            "novelty": Setting("novelty", 9, 100, False)}         # paper B: nine normal classes (MNIST family)


def time_group(setting: Setting, models: int, device: torch.device, options: FastOptions, steps: int) -> dict:
    """Train ``models`` stacked models of ``setting`` for two chunks of ``steps`` steps (the
    first a warm-up: kernel choice, compilation); images/s of the second chunk,
    ``start_seconds`` (what the warm-up chunk took beyond its steps at that speed: moving the
    data, compiling; a group's one-off cost, which the run's time budget adds per group), and
    on CUDA the peak memory of the whole run. One network's weights serve every model: the
    speed does not depend on their values."""
    cfg, B = setting.capsnet_config(), setting.batch
    torch.manual_seed(0)
    model = CapsNet(cfg)
    n = 2 * steps * B
    images = torch.rand(n, cfg.in_channels, cfg.image_size, cfg.image_size)
    targets = torch.randint(0, cfg.n_classes, (n,))
    jobs = [CapsNetJob(model, np.arange(n), targets, TrainSettings(1, B, standardize=setting.standardize),
                       torch.Generator().manual_seed(m)) for m in range(models)]
    stamps: list[tuple[int, float]] = []

    def progress(done: int, total: int) -> None:
        synchronize(device)
        stamps.append((done, time.perf_counter()))
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    begin = time.perf_counter()
    train_stacked(jobs, images, device, replace(options, chunk_steps=steps), progress=progress)
    (d0, t0), (d1, t1) = stamps[0], stamps[-1]
    out = {"models": models, "steps": d1 - d0, "images": (d1 - d0) * B * models, "seconds": t1 - t0,
           "images_per_s": (d1 - d0) * B * models / (t1 - t0),
           "start_seconds": max(0.0, (t0 - begin) - (t1 - t0) * d0 / (d1 - d0))}
    if device.type == "cuda":
        out["peak_bytes"] = torch.cuda.max_memory_allocated(device)
    return out


def sweep_steps(steps: int, models: int, batch: int) -> int:
    """Timed steps for a group: about the images of ``steps`` steps of 8 models at batch 32
    (paper A's benchmark), at least 3."""
    return max(3, round(steps * 8 * 32 / (models * batch)))


def choose_group(setting: Setting, options: FastOptions, device: torch.device, sizes=GROUP_SIZES, steps: int = 30,
                 device_bytes: Optional[int] = None, check: Optional[Callable] = None,
                 deadline: Optional[float] = None) -> dict:
    """Every size of ``sizes`` estimated, timed where it fits, the fastest sound one chosen:
    {'setting', 'device_bytes', 'candidates': {size: ...}, 'checks': {size: ...}, 'chosen', 'why'}.
    ``check(options, device, protocol, size)``: the soundness check (default :func:`soundness`);
    past ``deadline`` (time.monotonic()) no further size is timed once one has been, and only
    the fastest is checked."""
    check = check or soundness
    cfg = setting.capsnet_config()
    out = {"setting": {"protocol": setting.protocol, "n_classes": setting.n_classes, "batch": setting.batch,
                       **setting.config},
           "device_bytes": device_bytes, "candidates": {}, "checks": {}, "chosen": None}
    late = lambda: deadline is not None and time.monotonic() > deadline
    for size in sizes:
        est = group_memory(cfg, size, setting.batch, bf16=options.bf16)
        c = out["candidates"][size] = {"estimate_bytes": est["total"], "estimate": est}
        if not fits(est["total"], device_bytes):
            c["skipped"] = (f"estimated {est['total'] / GIB:.2f} GiB does not fit in {USABLE_FRACTION:.0%} of the "
                            f"device's {device_bytes / GIB:.2f} GiB")
            continue
        if late() and any("images_per_s" in v for v in out["candidates"].values()):
            c["skipped"] = "the pick's time budget is spent"
            continue
        try:
            c.update(time_group(setting, size, device, options, sweep_steps(steps, size, setting.batch)))
        except (RuntimeError, MemoryError) as e:       # torch.cuda.OutOfMemoryError is a RuntimeError
            c["error"] = f"{type(e).__name__}: {e}"[:300]
            if device.type == "cuda":
                torch.cuda.empty_cache()
    ranked = sorted((s for s, c in out["candidates"].items() if "images_per_s" in c),
                    key=lambda s: -out["candidates"][s]["images_per_s"])
    if not ranked:
        out["why"] = "no group size fits or runs"
        return out
    for size in ranked[:1 if late() else 2]:
        try:
            result = check(options, device, setting.protocol, size)
        except (RuntimeError, MemoryError) as e:
            result = {"sound": False, "why": f"the check raised {type(e).__name__}: {e}"[:300]}
        out["checks"][size] = result
        if result["sound"]:
            out["chosen"] = size
            out["why"] = (f"{size} models: {out['candidates'][size]['images_per_s']:.0f} images/s (sizes by "
                          f"speed: {', '.join(map(str, ranked))}); {result['why']}")
            break
    else:
        out["why"] = "no group size passed the check: " + "; ".join(
            f"{s}: {c['why']}" for s, c in out["checks"].items())
    return out


def check_cells(protocol: str, epochs: int) -> list[CellSpec]:
    """The soundness check's reference cells on the embedded digits, each with 1 and
    ``epochs`` epochs: paper A class 1 at 10%, standard and proposed; paper B held out 2 and 9."""
    if protocol == "imbalanced":
        return [CellSpec("imbalanced", "digits", variant=v, normal_class=1, anomaly_fraction=0.1, seed=0, epochs=e)
                for v in ("standard", "proposed") for e in (1, epochs)]
    return [CellSpec("novelty", "digits", held_out=(h,), seed=0, epochs=e) for h in (2, 9) for e in (1, epochs)]


def filler_cells(protocol: str, epochs: int, n: int, taken) -> list[CellSpec]:
    """``n`` more digits cells of the check cells' group key (other classes and seeds), to
    train the check cells inside a group of the size under test."""
    out, seed = [], 0
    while len(out) < n:
        if protocol == "imbalanced":
            more = [CellSpec("imbalanced", "digits", variant=v, normal_class=c, anomaly_fraction=0.1, seed=seed,
                             epochs=epochs) for c in range(10) for v in ("standard", "proposed")]
        else:
            more = [CellSpec("novelty", "digits", held_out=(h,), seed=seed, epochs=epochs) for h in range(10)]
        out += [c for c in more if c.cell_id not in taken]
        seed += 1
    return out[:n]


def soundness(options: FastOptions, device: torch.device, protocol: str = "imbalanced",
              group_size: Optional[int] = None, epochs: int = 3, tolerance: float = 0.05) -> dict:
    """Train the check cells (:func:`check_cells`) on the fast path with ``options``, inside
    groups of ``group_size`` models (filled with :func:`filler_cells`; None: the check cells
    alone), and on the plain path in fp32; sound when every fast loss is finite, each
    check cell's loss after ``epochs`` epochs is below its loss after one, and every AUROC
    is within ``tolerance`` of the plain path's."""
    from capslib.data.datasets import load_dataset
    from capslib.model.scores import score_metrics
    from capslib.run import runner
    from capslib.run.groups import plan_groups, train_group
    from capslib.study.methods import method_for
    from capslib.study.protocols import RunContext
    refs = check_cells(protocol, epochs)
    data = load_dataset("digits")
    cells = list(refs)
    if group_size is not None:
        for e in (1, epochs):
            mine = [c for c in refs if c.epochs == e]
            cells += filler_cells(protocol, e, max(0, group_size - len(mine)), {c.cell_id for c in refs})
    wanted = {c.cell_id for c in refs}
    fast, plain = {}, {}
    for group in plan_groups(cells, group_size or len(cells)):
        if not wanted & {c.cell_id for c in group}:
            continue
        splits = [runner.split_for(c.resolved(), data) for c in group]
        for spec, res in zip(group, train_group(group, data, splits, device, options)):
            if spec.cell_id in wanted:
                fast[spec.cell_id] = res
    for spec in refs:
        if isinstance(fast[spec.cell_id], Exception):
            return {"sound": False, "why": f"fast path: {fast[spec.cell_id]}", "group_size": group_size}
        if spec.epochs == epochs:             # the plain path's reference for the AUROCs
            r = spec.resolved()
            plain[spec.cell_id] = method_for(protocol, "capsnet")(r, data, runner.split_for(r, data),
                                                                   RunContext(device, precision="fp32"))
    fl = {cid: r.info["final_loss"] for cid, r in fast.items()}
    base = {"losses": fl, "group_size": group_size}
    if not all(math.isfinite(v) for v in fl.values()):
        return {"sound": False, "why": "a fast-path loss is not finite", **base}
    pairs = [(fl[refs[i].cell_id], fl[refs[i + 1].cell_id]) for i in (0, 2)]    # (1 epoch, `epochs` epochs)
    if not all(last < first for first, last in pairs):
        return {"sound": False, "why": f"fast-path loss did not fall over {epochs} epochs: {pairs}", **base}
    auroc = lambda r, s: score_metrics(r.scores[s], r.test_labels)["auroc"]
    diffs = {f"{c.cell_id} {s}": abs(auroc(fast[c.cell_id], s) - auroc(plain[c.cell_id], s))
             for c in refs if c.epochs == epochs for s in plain[c.cell_id].scores}
    worst = max(diffs.values())
    return {"sound": worst <= tolerance, "why": f"largest |AUROC fast − plain| {worst:.4f} (tolerance {tolerance})",
            "auroc_abs_diff": diffs, **base}
