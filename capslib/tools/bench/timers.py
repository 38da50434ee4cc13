"""Timers of the training paths: the plain path per precision, the fast path's stacked models,
the primary convolution alone, and the stacked evaluation. Used by the benchmark and the GPU
window's pick."""
from __future__ import annotations

import time

import numpy as np
import torch

from capslib.model.capsnet import CapsNet, CapsNetConfig
from capslib.train.stacked import FastOptions, StackedCapsNet, tf32_enabled, train_stacked
from capslib.train.jobs import CapsNetJob
from capslib.train.plain import TrainSettings, evaluate_capsnet, synchronize, train_capsnet

from capslib.tools.bench.flops import macs_per_image


def _job(K: int, n: int, batch: int, standardize: bool, seed: int, device, precision: str = "fp32") -> CapsNetJob:
    torch.manual_seed(seed)
    model = CapsNet(CapsNetConfig(n_classes=K)).to(device)
    targets = torch.randint(0, K, (n,))
    return CapsNetJob(model, np.arange(n), targets, TrainSettings(1, batch, standardize=standardize, precision=precision),
                      torch.Generator().manual_seed(seed))


def time_plain(K, batch, standardize, steps, warmup, device, precision: str = "fp32") -> dict:
    """Plain path, one model: images/s over ``steps`` steps after ``warmup`` steps."""
    n = steps * batch
    images = torch.rand(n, 1, 28, 28)
    for count in (warmup, steps):
        if count == 0:
            continue
        j = _job(K, count * batch, batch, standardize, 0, device, precision)
        fit = train_capsnet(j.model, images[:count * batch], j.targets, j.settings, j.generator)
    return {"images": n, "seconds": fit["train_seconds"], "images_per_s": n / fit["train_seconds"],
            "precision": precision}


def time_plain_precisions(K, batch, standardize, steps, warmup, device, precisions, repeats: int) -> dict:
    """The plain path in each precision, interleaved (fp32, bf16, fp32, bf16, ...) so that a
    change of load hits both alike; per precision the best of ``repeats`` and every try."""
    tries: dict[str, list] = {p: [] for p in precisions}
    for _ in range(repeats):
        for p in precisions:
            tries[p].append(time_plain(K, batch, standardize, steps, warmup, device, p))
    return {p: {**max(ts, key=lambda r: r["images_per_s"]), "tries_images_per_s": [r["images_per_s"] for r in ts]}
            for p, ts in tries.items()}


def time_fast(K, batch, standardize, steps, warmup, models, device, options) -> dict:
    """Fast path, ``models`` models at once: images/s (all models) after a warmup."""
    images = torch.rand(steps * batch, 1, 28, 28)
    for count in (warmup, steps):
        if count == 0:
            continue
        jobs = [_job(K, count * batch, batch, standardize, m, "cpu") for m in range(models)]
        fit = train_stacked(jobs, images[:count * batch], device, options)[0]
    n = steps * batch * models
    return {"images": n, "models": models, "seconds": fit["group_train_seconds"],
            "images_per_s": n / fit["group_train_seconds"]}


def time_primary_conv(models: int, batch: int, device, options: FastOptions, reps: int = 5) -> dict:
    """The primary-capsule convolution alone (the bulk of a step's FLOPs), forward +
    backward, for ``models`` stacked models as one grouped convolution: FLOP/s."""
    x = torch.randn(batch, models * 256, 20, 20, device=device, requires_grad=True)
    w = (0.01 * torch.randn(models * 256, 256, 9, 9, device=device)).requires_grad_()
    if options.channels_last:
        x, w = (t.detach().contiguous(memory_format=torch.channels_last).requires_grad_() for t in (x, w))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if options.bf16 else torch.autocast(device.type, enabled=False)
    best = float("inf")
    with tf32_enabled(options.tf32):
        for i in range(reps + 1):
            synchronize(device)
            t0 = time.perf_counter()
            with autocast:
                y = torch.nn.functional.conv2d(x, w, stride=2, groups=models)    # (B, M*256, 6, 6)
            y.float().sum().backward()
            synchronize(device)
            if i:                                                                 # the first is warm-up
                best = min(best, time.perf_counter() - t0)
    flop = 3 * 2 * batch * models * macs_per_image(2)["primary"]
    return {"models": models, "batch": batch, "seconds": best, "flop_per_s": flop / best,
            "dtype": "bf16" if options.bf16 else ("tf32" if options.tf32 else "fp32")}


def time_eval(K: int, n: int, models: int, device, options: FastOptions) -> dict:
    """Evaluation images/s: the plain evaluate_capsnet (one model) against the stacked
    evaluate_stacked (``models`` models, each its own ``n`` images)."""
    from capslib.train.stacked_eval import evaluate_stacked
    from capslib.train.jobs import EvalRequest
    images = torch.rand(n, 1, 28, 28)
    nets = [CapsNet(CapsNetConfig(n_classes=K)) for _ in range(models)]
    out = {}
    for label in ("plain", "fast"):
        for rep in range(2):                                                      # the first is warm-up
            synchronize(device)
            t0 = time.perf_counter()
            if label == "plain":
                evaluate_capsnet(nets[0].to(device), images, True)
                count = n
            else:
                net = StackedCapsNet(nets).to(device)
                net.bf16, net.channels_last = options.bf16, options.channels_last
                with tf32_enabled(options.tf32):
                    evaluate_stacked(net, [EvalRequest(images, True)] * models)
                count = n * models
            synchronize(device)
            seconds = time.perf_counter() - t0
        out[label] = {"images": count, "seconds": seconds, "images_per_s": count / seconds}
    out["fast_over_plain"] = out["fast"]["images_per_s"] / out["plain"]["images_per_s"]
    return out
