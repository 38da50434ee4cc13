"""Training throughput of the plain path vs the fast path on the current device:
``python -m capslib.bench [--steps S] [--models M] [--out results/bench]``.

For paper A's setting (K = 2, batch 32, standardized inputs) and paper B's (K = 9,
batch 100) it times (a) the plain path, :func:`capslib.train.train_capsnet`, one model,
in fp32 and, with ``--precision fp32,bf16`` (the default where the device has bf16
natively), in bf16 too, interleaved, best of ``--repeats``, and (b) the fast path, :func:`capslib.fast.train_stacked`, M models at once, on
random 28x28 images (a step's cost does not depend on the pixels: routing runs a fixed 3
iterations). It prints images/s, achieved FLOP/s (the formula is printed) against a peak,
the ratio (b)/(a) measured in the same run, and a projection of the paper grid's CapsNet
time, and writes everything to ``<out>/<device>-<date>.json``.

The peak: on CUDA the vendor's nominal figure where the device is known, and always the
FLOP/s of a large fp32 matmul measured here ("achievable peak"); a CPU has no nominal one.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from .capsnet import CapsNet, CapsNetConfig
from .fast import FastOptions, StackedCapsNet, tf32_enabled, train_stacked
from .protocols import CapsNetJob
from .store import device_name, git_commit, write_report
from .train import TrainSettings, check_precision, evaluate_capsnet, native_bf16, synchronize, train_capsnet

SETTINGS = {"A": {"K": 2, "batch": 32, "standardize": True}, "B": {"K": 9, "batch": 100, "standardize": False}}
# dense nominal peaks, FLOP/s (vendor data sheets: fp32 without tensor cores / TF32 / BF16 tensor cores)
NOMINAL_PEAKS = {"H100": {"fp32": 67e12, "tf32": 495e12, "bf16": 990e12},
                 "H200": {"fp32": 67e12, "tf32": 495e12, "bf16": 990e12},
                 "A100": {"fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12}}
FLOP_FORMULA = ("training FLOP/image = 3 x 2 x MACs (forward; backward ~ 2x forward); MACs = "
                "conv1 20*20*256*(C*81) + primary 6*6*256*(256*81) + transform N*K*16*8 "
                "+ routing (2r-1)*N*K*16 (r = 3 iterations, N = 1152) + decoder (16K*512 + 512*1024 + 1024*784)")


def macs_per_image(K: int, cfg: CapsNetConfig = CapsNetConfig()) -> dict[str, int]:
    """Multiply-adds of one forward pass, per part (see FLOP_FORMULA)."""
    c1 = cfg.image_size - 8
    g = cfg.primary_grid
    n, d = cfg.n_primary, cfg.class_dim
    h1, h2 = cfg.decoder_hidden
    return {"conv1": c1 * c1 * cfg.conv_channels * cfg.in_channels * 81,
            "primary": g * g * cfg.primary_types * cfg.primary_dim * cfg.conv_channels * 81,
            "transform": n * K * d * cfg.primary_dim,
            "routing": (2 * cfg.routing_iters - 1) * n * K * d,
            "decoder": K * d * h1 + h1 * h2 + h2 * cfg.in_channels * cfg.image_size ** 2}


def training_flops_per_image(K: int) -> float:
    return 3 * 2 * float(sum(macs_per_image(K).values()))


def matmul_flops(device: torch.device, n: int, reps: int = 3, dtype=torch.float32) -> float:
    """FLOP/s of an n x n matmul in ``dtype``, best of ``reps`` (the achievable peak)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        synchronize(device)
        t0 = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


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
    from .fasteval import evaluate_stacked
    from .protocols import EvalRequest
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


def profile_fast(K, batch, standardize, steps, models, device, options, rows: int = 15) -> str:
    """torch.profiler's table of ``steps`` fast-path steps, ops sorted by self time."""
    from torch.profiler import ProfilerActivity, profile
    images = torch.rand(steps * batch, 1, 28, 28)
    jobs = [_job(K, steps * batch, batch, standardize, m, "cpu") for m in range(models)]
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        train_stacked(jobs, images, device, options)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows)


def profile_plain(K, batch, standardize, steps, device, precision, rows: int = 15) -> str:
    """torch.profiler's table of ``steps`` plain-path steps in ``precision``, by self time."""
    from torch.profiler import ProfilerActivity, profile
    images = torch.rand(steps * batch, 1, 28, 28)
    j = _job(K, steps * batch, batch, standardize, 0, device, precision)
    train_capsnet(j.model, images[:batch], j.targets[:batch], j.settings, j.generator)     # warm-up
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        train_capsnet(j.model, images, j.targets, j.settings, j.generator)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows)


def paper_workload() -> dict[str, dict]:
    """Training images (epochs x training-set size) of the paper grid's CapsNet cells per
    setting, from the grid itself; training-set sizes from the nominal 6,000 training
    images per MNIST-family class (exact for Fashion-MNIST and KMNIST, MNIST's vary)."""
    from .runner import PROFILES
    out = {"A": {"cells": 0, "train_images": 0}, "B": {"cells": 0, "train_images": 0}}
    for c in PROFILES["paper"].cells():
        r = c.resolved()
        if r.method != "capsnet":
            continue
        if r.protocol == "imbalanced":
            n = 6000 + int(round(r.anomaly_fraction / (1 - r.anomaly_fraction) * 6000))
            key = "A"
        else:
            n, key = 6000 * r.n_normal_classes, "B"
        out[key]["cells"] += 1
        out[key]["train_images"] += r.epochs * n
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m capslib.bench", description=__doc__.splitlines()[0])
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per path (default: cpu 2, cuda 50)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: cpu 1, cuda 5)")
    p.add_argument("--models", type=int, default=None, help="models in the fast path (default: cpu 2, cuda 8)")
    p.add_argument("--settings", default="A,B", help="A (paper A: K=2, batch 32), B (paper B: K=9, batch 100)")
    p.add_argument("--eval-images", type=int, default=None, help="images per model in the evaluation timing "
                   "(default: cpu 256, cuda 4096; 0 skips it)")
    p.add_argument("--profile", action="store_true",
                   help="print torch.profiler's tables of the plain path's steps (each precision) and the fast path's")
    p.add_argument("--precision", default=None, help="plain-path precisions to time, e.g. fp32,bf16 "
                   "(default: both where the device has bf16 natively, else fp32)")
    p.add_argument("--repeats", type=int, default=None, help="interleaved tries per plain precision, best kept "
                   "(default: cpu 3, cuda 1)")
    p.add_argument("--out", default="results/bench")
    FastOptions.add_flags(p)
    a = p.parse_args(argv)
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    steps, warmup = a.steps or (50 if cuda else 2), a.warmup if a.warmup is not None else (5 if cuda else 1)
    models = a.models or (8 if cuda else 2)
    options = FastOptions.from_flags(a)
    precisions = [check_precision(x) for x in (a.precision or ("fp32,bf16" if native_bf16(device) else "fp32")).split(",")]
    if "fp32" not in precisions:
        precisions.insert(0, "fp32")        # the reference of every ratio
    repeats = a.repeats or (1 if cuda else 3)
    name = device_name(device)
    print(f"device: {name}; torch {torch.__version__}; commit {git_commit()}")
    peak = {"matmul_fp32_flop_per_s": matmul_flops(device, 8192 if cuda else 2048)}
    if "bf16" in precisions:
        peak["matmul_bf16_flop_per_s"] = matmul_flops(device, 8192 if cuda else 2048, dtype=torch.bfloat16)
    nominal = next((v for k, v in NOMINAL_PEAKS.items() if k in name), None) if cuda else None
    peak["nominal"] = nominal
    peak["note"] = ("measured: best of 3 fp32 matmuls (achievable peak); nominal: vendor dense peaks"
                    if nominal else "no nominal peak known for this device: the measured fp32 matmul is the peak")
    ref_peak = nominal["tf32" if a.tf32 else "fp32"] if nominal else peak["matmul_fp32_flop_per_s"]
    print(f"peak: matmul fp32 {peak['matmul_fp32_flop_per_s'] / 1e9:.1f} GFLOP/s"
          + (f", bf16 {peak['matmul_bf16_flop_per_s'] / 1e9:.1f} GFLOP/s" if "matmul_bf16_flop_per_s" in peak else "")
          + (f", nominal {nominal}" if nominal else " (no nominal peak for a CPU)"))
    print(FLOP_FORMULA)
    work = paper_workload()
    report = {"device": name, "device_type": device.type, "torch": torch.__version__, "commit": git_commit(),
              "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "threads": torch.get_num_threads(),
              "load_average_at_start": os.getloadavg(),
              "steps": steps, "warmup": warmup, "repeats": repeats, "precisions": precisions,
              "options": options.__dict__, "peak": peak,
              "flop_formula": FLOP_FORMULA, "settings": {}}
    for key in a.settings.split(","):
        s = SETTINGS[key]
        fpi = training_flops_per_image(s["K"])
        plains = time_plain_precisions(s["K"], s["batch"], s["standardize"], steps, warmup, device, precisions, repeats)
        plain = plains["fp32"]
        fast = time_fast(s["K"], s["batch"], s["standardize"], steps, warmup, models, device, options)
        for r in (*plains.values(), fast):
            r["flop_per_s"] = r["images_per_s"] * fpi
            r["fraction_of_peak"] = r["flop_per_s"] / ref_peak
        ratio = fast["images_per_s"] / plain["images_per_s"]
        w = work[key]
        proj = {"cells": w["cells"], "train_images": w["train_images"],
                "plain_hours": w["train_images"] / plain["images_per_s"] / 3600,
                "fast_hours": w["train_images"] / fast["images_per_s"] / 3600}
        conv = {"plain": time_primary_conv(1, s["batch"], device, FastOptions()),
                "fast": time_primary_conv(models, s["batch"], device, options)}
        if "bf16" in plains:
            conv["plain_bf16"] = time_primary_conv(1, s["batch"], device, FastOptions(bf16=True))
        conv_peak = nominal[conv["fast"]["dtype"]] if nominal else peak["matmul_fp32_flop_per_s"]
        for r in conv.values():
            measured = peak.get(f"matmul_{r['dtype']}_flop_per_s", conv_peak)
            r["fraction_of_peak"] = r["flop_per_s"] / (nominal[r["dtype"]] if nominal else measured)
        n_eval = a.eval_images if a.eval_images is not None else (4096 if cuda else 256)
        evaluation = time_eval(s["K"], n_eval, models, device, options) if n_eval else None
        report["settings"][key] = {**s, "macs_per_image": macs_per_image(s["K"]),
                                   "training_flop_per_image": fpi, "plain": plain, "fast": fast,
                                   "plain_by_precision": plains,
                                   "plain_bf16_over_fp32": (plains["bf16"]["images_per_s"] / plain["images_per_s"]
                                                            if "bf16" in plains else None),
                                   "fast_over_plain": ratio, "paper_grid_projection": proj,
                                   "primary_conv": conv, "evaluation": evaluation}
        print(f"paper {key} (K={s['K']}, batch {s['batch']}): {fpi / 1e9:.3f} GFLOP/training image")
        lines = [(f"plain, 1 model, {p}", r) for p, r in plains.items()] + [(f"fast, {models} models", fast)]
        for label, r in lines:
            print(f"  {label:16s} {r['images_per_s']:9.1f} images/s  {r['seconds']:7.2f} s  "
                  f"{r['flop_per_s'] / 1e9:9.1f} GFLOP/s  ({100 * r['fraction_of_peak']:.1f}% of peak)")
        if "bf16" in plains:
            print(f"  plain bf16 / plain fp32 = {plains['bf16']['images_per_s'] / plain['images_per_s']:.2f}x "
                  f"(best of {repeats} interleaved tries each)")
        print(f"  fast / plain fp32 = {ratio:.2f}x; paper grid, {w['cells']} CapsNet cells, {w['train_images']:,} "
              f"training images: plain {proj['plain_hours']:.1f} h, fast {proj['fast_hours']:.1f} h "
              f"(training only; evaluation adds about one forward pass per test and training image)")
        conv_lines = [("1 model, fp32", conv["plain"])] + ([("1 model, bf16", conv["plain_bf16"])] if "plain_bf16" in conv
                                                            else []) + [(f"{models} models, {conv['fast']['dtype']}", conv["fast"])]
        for label, r in conv_lines:
            print(f"  primary-capsule conv, fwd+bwd, {label:18s} {r['flop_per_s'] / 1e9:9.1f} GFLOP/s "
                  f"({100 * r['fraction_of_peak']:.1f}% of the {'' if nominal else 'measured '}{r['dtype']} peak)")
        if evaluation:
            print(f"  evaluation: plain {evaluation['plain']['images_per_s']:.1f} images/s, stacked "
                  f"{evaluation['fast']['images_per_s']:.1f} images/s ({evaluation['fast_over_plain']:.2f}x)")
        if a.profile:
            for p in precisions:
                table = profile_plain(s["K"], s["batch"], s["standardize"], min(steps, 20), device, p)
                report["settings"][key][f"profile_plain_{p}"] = table
                print(f"plain path, {p}:\n{table}")
            table = profile_fast(s["K"], s["batch"], s["standardize"], min(steps, 20), models, device, options)
            report["settings"][key]["profile"] = table
            print(f"fast path:\n{table}")
    path = write_report(a.out, device.type, report, default=None)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
