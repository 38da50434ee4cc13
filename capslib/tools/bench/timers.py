"""Timers of the training paths: the plain path per precision, the fast path's stacked models,
the primary convolution alone, and the stacked evaluation. Used by the benchmark and the GPU
window's pick."""
from __future__ import annotations

import time

import numpy as np
import torch

from capslib.model.capsnet import CapsNet, CapsNetConfig, dynamic_routing
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


def _best_seconds(fn, device, reps: int, untimed: int = 1) -> float:
    """``fn()`` run ``untimed`` times, then ``reps`` times timed, the device synchronized around
    each call: the fastest timed call, in seconds."""
    for _ in range(untimed):
        fn()
    best = float("inf")
    for _ in range(reps):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best


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


def time_interleaved(timers: dict, repeats: int) -> dict:
    """Each timer of ``timers`` (name -> a function returning a dict with ``images_per_s``)
    ``repeats`` times, interleaved (a, b, a, b, ...) so that a change of load hits all alike;
    per name the best try, with the median and every try."""
    tries: dict[str, list] = {name: [] for name in timers}
    for _ in range(repeats):
        for name, timer in timers.items():
            tries[name].append(timer())
    return {name: {**max(ts, key=lambda r: r["images_per_s"]),
                   "median_images_per_s": float(np.median([r["images_per_s"] for r in ts])),
                   "tries_images_per_s": [r["images_per_s"] for r in ts]}
            for name, ts in tries.items()}


def time_plain_precisions(K, batch, standardize, steps, warmup, device, precisions, repeats: int,
                          others: dict | None = None) -> dict:
    """The plain path in each precision, interleaved with each other and with ``others``
    (name -> timer, e.g. a peer's training step): :func:`time_interleaved`."""
    timers = {p: (lambda p=p: time_plain(K, batch, standardize, steps, warmup, device, p)) for p in precisions}
    return time_interleaved({**timers, **(others or {})}, repeats)


def time_adam(K: int, device, reps: int = 12) -> dict:
    """One Adam step over a CapsNet's parameters (K class capsules), milliseconds, best of
    ``reps`` after 3 untimed: the per-parameter loop, foreach, and the fused kernel the plain
    path uses."""
    out = {}
    for label, kw in (("loop", {"foreach": False}), ("foreach", {"foreach": True}), ("fused", {"fused": True})):
        torch.manual_seed(0)
        model = CapsNet(CapsNetConfig(n_classes=K)).to(device)
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, **kw)
        out[f"{label}_ms"] = 1e3 * _best_seconds(opt.step, device, reps, untimed=3)
    return out


def time_primary_conv_parts(batch: int, device, reps: int = 6) -> dict:
    """The primary convolution in bf16 (the plain path's autocast), one model: forward, the
    backward's input gradient alone, its weight gradient alone, and both (as training asks),
    in contiguous and channels-last layouts: seconds (best of ``reps``) and FLOP/s."""
    conv_flop = 2 * batch * macs_per_image(2)["primary"]      # forward; each gradient is as many
    out = {}
    for layout in ("contiguous", "channels_last"):
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        x = torch.randn(batch, 256, 20, 20, device=device, dtype=torch.bfloat16).contiguous(memory_format=fmt)
        w = (0.01 * torch.randn(256, 256, 9, 9, device=device, dtype=torch.bfloat16)).contiguous(memory_format=fmt)
        gy = torch.randn(batch, 256, 6, 6, device=device, dtype=torch.bfloat16).contiguous(memory_format=fmt)

        def backward(mask):
            return torch.ops.aten.convolution_backward(gy, x, w, None, [2, 2], [0, 0], [1, 1], False, [0, 0], 1, mask)
        parts = {"forward": (lambda: torch.nn.functional.conv2d(x, w, stride=2), 1),
                 "grad_input": (lambda: backward([True, False, False]), 1),
                 "grad_weight": (lambda: backward([False, True, False]), 1),
                 "backward": (lambda: backward([True, True, False]), 2)}
        res = {}
        for name, (fn, flop_units) in parts.items():
            seconds = _best_seconds(fn, device, reps)
            res[name] = {"seconds": seconds, "flop_per_s": flop_units * conv_flop / seconds}
        out[layout] = res
    return out


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

    def step():
        with autocast:
            y = torch.nn.functional.conv2d(x, w, stride=2, groups=models)        # (B, M*256, 6, 6)
        y.float().sum().backward()
    with tf32_enabled(options.tf32):
        best = _best_seconds(step, device, reps)
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


def time_routing(K: int, batch: int, device, reps: int = 5) -> dict:
    """The capsule transform and the three routing iterations alone, forward and backward, as
    the plain path runs them (fp32) and with both in bf16 (a candidate, not what the plain path
    does): milliseconds, best of ``reps`` after one untimed."""
    device, out = torch.device(device), {}
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(0)
        W = (0.01 * torch.randn(1152, K, 16, 8, device=device)).to(dtype).requires_grad_()
        u = torch.randn(batch, 1152, 8, device=device, dtype=dtype, requires_grad=True)

        def step(W=W, u=u):
            u_hat = torch.einsum("nkdi,bni->bnkd", W, u)                  # (B, 1152, K, 16)
            v, _ = dynamic_routing(u_hat)                                  # (B, K, 16)
            v.float().norm(dim=-1).sum().backward()
        out["fp32_ms" if dtype == torch.float32 else "bf16_ms"] = 1e3 * _best_seconds(step, device, reps)
    return out
