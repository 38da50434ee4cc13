"""``python -m capslib.tools.bench``: images per second of the plain and fast paths on this device
for paper A's and paper B's settings, with FLOP rates and profiles, written to results/bench."""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from capslib.train.stacked import FastOptions, train_stacked
from capslib.core.provenance import device_name, git_commit, write_report
from capslib.train.plain import check_precision, native_bf16, train_capsnet

from capslib.tools.bench.flops import (FLOP_FORMULA, NOMINAL_PEAKS, SETTINGS, macs_per_image, matmul_flops,
    training_flops_per_image)
from capslib.tools.bench.timers import (_job, time_adam, time_eval, time_fast, time_plain_precisions, time_primary_conv,
    time_primary_conv_parts, time_routing)


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
    from capslib.study.profiles import PROFILES
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
    p = argparse.ArgumentParser(prog="python -m capslib.tools.bench", description=__doc__.splitlines()[0])
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
    p.add_argument("--peer", metavar="DIR", default=None,
                   help="a clone of github.com/XifengGuo/CapsNet-Pytorch: its fp32 training step is timed in the "
                        "same run, interleaved with the plain path's (capslib.tools.bench.peer)")
    p.add_argument("--parts", action="store_true",
                   help="also time the plain path's parts: one Adam step (loop, foreach, fused), the primary "
                        "convolution's forward and gradients in bf16 (contiguous, channels-last), and the capsule "
                        "transform with routing in fp32 and in bf16")
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
    peer = None
    if a.peer:
        from capslib.tools.bench.peer import load_peer
        peer = load_peer(a.peer)
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
              "flop_formula": FLOP_FORMULA, "peer": peer and {"url": "https://github.com/XifengGuo/CapsNet-Pytorch",
                                                            "commit": git_commit(Path(peer.root))},
              "settings": {}}
    for key in a.settings.split(","):
        s = SETTINGS[key]
        fpi = training_flops_per_image(s["K"])
        others = {}
        if peer is not None:
            from capslib.tools.bench.peer import time_peer
            others["peer"] = lambda: time_peer(peer, s["K"], s["batch"], steps, warmup, device)
        plains = time_plain_precisions(s["K"], s["batch"], s["standardize"], steps, warmup, device, precisions, repeats,
                                       others)
        peer_result = plains.pop("peer", None)
        plain = plains["fp32"]
        fast = time_fast(s["K"], s["batch"], s["standardize"], steps, warmup, models, device, options)
        for r in (*plains.values(), fast):
            r["flop_per_s"] = r["images_per_s"] * fpi
            # a bf16 plain run against the bf16 peak (its convolutions' precision), the others against fp32's
            bf16_peak = (nominal or {}).get("bf16") or peak.get("matmul_bf16_flop_per_s")
            r["fraction_of_peak"] = r["flop_per_s"] / (bf16_peak if r.get("precision") == "bf16" and bf16_peak
                                                       else ref_peak)
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
        if peer_result is not None:
            report["settings"][key]["peer"] = peer_result
            report["settings"][key]["over_peer"] = {
                p: {"best": r["images_per_s"] / peer_result["images_per_s"],
                    "median": r["median_images_per_s"] / peer_result["median_images_per_s"]} for p, r in plains.items()}
        if a.parts:
            report["settings"][key]["parts"] = {"adam": time_adam(s["K"], device),
                                                "primary_conv_bf16": time_primary_conv_parts(s["batch"], device),
                                                "transform_and_routing": time_routing(s["K"], s["batch"], device)}
        print(f"paper {key} (K={s['K']}, batch {s['batch']}): {fpi / 1e9:.3f} GFLOP/training image")
        fast_label = f"fast, {models} model" + ("s" if models > 1 else "")
        lines = [(f"plain, 1 model, {p}", r) for p, r in plains.items()] + [(fast_label, fast)]
        for label, r in lines:
            print(f"  {label:22s} {r['images_per_s']:9.1f} images/s  {r['seconds']:7.2f} s  "
                  f"{r['flop_per_s'] / 1e9:9.1f} GFLOP/s  ({100 * r['fraction_of_peak']:.1f}% of peak)"
                  + (f"  median {r['median_images_per_s']:.1f}" if "median_images_per_s" in r else ""))
        if peer_result is not None:
            print(f"  {'peer, fp32':22s} {peer_result['images_per_s']:9.1f} images/s  {peer_result['seconds']:7.2f} s  "
                  f"(median {peer_result['median_images_per_s']:.1f}); ours / peer: "
                  + ", ".join(f"{p} {v['best']:.2f}x (median {v['median']:.2f}x)"
                              for p, v in report['settings'][key]['over_peer'].items()))
        if a.parts:
            adam = report["settings"][key]["parts"]["adam"]
            print("  one Adam step: " + ", ".join(f"{k[:-3]} {v:.1f} ms" for k, v in adam.items()))
            rt = report["settings"][key]["parts"]["transform_and_routing"]
            print(f"  capsule transform + routing, fwd+bwd: fp32 {rt['fp32_ms']:.1f} ms, bf16 {rt['bf16_ms']:.1f} ms")
            for layout, parts in report["settings"][key]["parts"]["primary_conv_bf16"].items():
                print(f"  primary conv bf16, {layout}: " + ", ".join(
                    f"{k} {1e3 * v['seconds']:.1f} ms ({v['flop_per_s'] / 1e9:.0f} GFLOP/s)" for k, v in parts.items()))
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
