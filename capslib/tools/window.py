"""The first minutes of a GPU window: which way of training is fastest *and* sound on this
device, and how many models a stacked group should hold? (``python -m capslib.tools.window
pick``, called by scripts/gpu_window.sh.)

Each candidate (:data:`CANDIDATES`: the fast path's switch sets, plus the plain path)
is timed on paper A's setting (K = 2, batch 32; the fast path with ``models`` stacked
models) with :mod:`capslib.tools.bench`'s timers. For the fastest fast-path candidate,
:func:`capslib.tools.groupsize.choose_group` then sizes the groups of each paper (paper A
K = 2, batch 32; paper B K = 9, batch 100): groups of 8, 16, 32 and 64 models, each
estimated for device memory first (the sizes that cannot fit are skipped), timed, and the
fastest checked on real cells of the embedded digits trained inside a group of that size
(paper A class 1 at 10%, standard and proposed; paper B held out 2 and 9; a few epochs):
its losses must be finite and fall from the first epoch to the last, and its AUROCs must
lie within ``tolerance`` of the plain path's. If it fails, the next fastest size is
checked; if a paper has no sound size, the next fastest switch set is tried. The decision
is ``fast`` (with its switches and ``--group-size imbalanced=N,novelty=M``) or, when no
fast candidate is sound or the plain path is faster, ``plain-workers``: several
plain-path processes on the same GPU, which share the grid through the store's claims.
Everything, every measured group size included, is written to
``<out>/window-<device>-<date>.json``, with ``rates``: the chosen switch set's images/s (and
a group's start-up seconds) per paper and measured group size. The last line printed is the
decision, as run options; for the fast path it ends with ``--rates <that report>``, so that
the run's time budget starts no group predicted to end after it
(:class:`capslib.run.budget.TimeBudget`).
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from typing import Optional

import torch

from capslib.core.config import FastOptions
from capslib.core.provenance import write_report
from capslib.tools import groupsize
from capslib.tools.groupsize import GROUP_SIZES, SETTINGS, choose_group
from capslib.train.stacked_memory import device_memory

CANDIDATES: dict[str, FastOptions] = {
    "bf16": FastOptions(bf16=True),
    "bf16+channels-last": FastOptions(bf16=True, channels_last=True),
    "bf16+channels-last+cuda-graphs": FastOptions(bf16=True, channels_last=True, compile=True, cuda_graphs=True),
    "tf32": FastOptions(tf32=True),
}
CPU_CANDIDATES = ("bf16", "bf16+channels-last")     # the others need CUDA
FORCE_FALLBACK_ENV = "CAPSLIB_WINDOW_FORCE_FALLBACK"  # tests: take the fallback branch


def run_flags(options: FastOptions) -> list[str]:
    """``python -m capslib run`` flags for a switch set."""
    return [f"--{n.replace('_', '-')}" for n in FastOptions.SWITCHES if getattr(options, n)]


def group_flag(sizes: dict[str, int]) -> str:
    """``--group-size``'s value for per-paper sizes: 'imbalanced=32,novelty=16'."""
    return ",".join(f"{protocol}={n}" for protocol, n in sizes.items())


def rates_of(groups: dict) -> dict:
    """The run's ``--rates`` table from one switch set's group reports: {protocol: {size:
    {'images_per_s', 'start_seconds'}}}, every timed size (:class:`capslib.run.budget.Rates`)."""
    return {protocol: {size: {"images_per_s": c["images_per_s"], "start_seconds": c.get("start_seconds", 0.0)}
                       for size, c in g["candidates"].items() if "images_per_s" in c}
            for protocol, g in groups.items()}


def _check(options: FastOptions, device: torch.device, protocol: str, size: int, epochs: int) -> dict:
    """:func:`capslib.tools.groupsize.soundness` with the pick's ``epochs``."""
    return groupsize.soundness(options, device, protocol, size, epochs=epochs)


def pick(device: torch.device, steps: int, models: int, names=None, sizes=GROUP_SIZES,
         memory_bytes: Optional[int] = None, seconds: Optional[float] = None, settings=None,
         check_epochs: int = 3) -> dict:
    """Time every candidate; for the fastest, size each paper's groups (next fastest switch
    set when a paper has no sound size); returns the report with ``decision`` ('fast' |
    'plain-workers'), ``flags`` (the run options of the decision), per switch set tried,
    ``groups`` (:func:`capslib.tools.groupsize.choose_group`'s report per paper), and for the
    fast path ``rates`` (:func:`rates_of` the chosen switch set's groups).
    ``memory_bytes``: the device memory the group sizes must fit in where the device does
    not say (CUDA's own is used there; None: unlimited). ``seconds``: after this, time no
    further group size once one of a paper has been. ``settings``: {protocol: Setting}
    (default :data:`capslib.tools.groupsize.SETTINGS`). ``check_epochs``: the soundness check's
    longer trainings (:func:`capslib.tools.groupsize.soundness`)."""
    from capslib.tools.bench.timers import time_fast, time_plain
    names = list(names or (CANDIDATES if device.type == "cuda" else CPU_CANDIDATES))
    settings = settings or SETTINGS
    t0 = time.perf_counter()
    deadline = None if seconds is None else time.monotonic() + seconds
    device_bytes = device_memory(device, memory_bytes)
    report = {"device": str(device), "steps": steps, "models": models, "device_bytes": device_bytes,
              "check_epochs": check_epochs,
              "group_sizes_tried": list(sizes), "timings": {}, "checks": {}, "groups": {}}
    plain = time_plain(2, 32, True, steps, 1, device, "bf16" if device.type == "cuda" else "fp32")
    report["timings"]["plain"] = plain
    for name in names:
        try:
            report["timings"][name] = time_fast(2, 32, True, steps, 1, models, device, CANDIDATES[name])
        except Exception as e:      # a switch this device or torch build cannot do: noted, not fatal
            report["timings"][name] = {"error": f"{type(e).__name__}: {e}"[:300]}
    ranked = sorted((n for n in names if "images_per_s" in report["timings"][n]),
                    key=lambda n: -report["timings"][n]["images_per_s"])
    report["decision"], report["flags"] = "plain-workers", ["--no-fast"]
    if os.environ.get(FORCE_FALLBACK_ENV):
        report["why"] = f"{FORCE_FALLBACK_ENV} is set"
    elif not ranked:
        report["why"] = "every fast-path candidate raised"
    elif report["timings"][ranked[0]]["images_per_s"] <= plain["images_per_s"]:
        report["why"] = (f"the plain path ({plain['images_per_s']:.0f} images/s) is as fast as the best fast "
                         f"candidate {ranked[0]} ({report['timings'][ranked[0]]['images_per_s']:.0f} images/s)")
    else:
        for name in ranked[:2]:
            groups = report["groups"][name] = {
                protocol: choose_group(setting, CANDIDATES[name], device, sizes, steps, device_bytes, deadline=deadline,
                                       check=functools.partial(_check, epochs=check_epochs))
                for protocol, setting in settings.items()}
            chosen = {protocol: g["chosen"] for protocol, g in groups.items()}
            sound = all(n is not None for n in chosen.values())
            report["checks"][name] = {"sound": sound, "why": "; ".join(f"{p}: {g['why']}" for p, g in groups.items())}
            if sound:
                report.update(decision="fast", chosen=name, group_sizes=chosen, rates=rates_of(groups),
                              flags=["--fast", *run_flags(CANDIDATES[name]), "--group-size", group_flag(chosen)],
                              why=f"{name}: {report['timings'][name]['images_per_s']:.0f} images/s against the "
                                  f"plain path's {plain['images_per_s']:.0f}; {report['checks'][name]['why']}")
                break
        else:
            report["why"] = "no fast candidate passed the check: " + "; ".join(
                f"{n}: {c['why']}" for n, c in report["checks"].items())
    report["seconds"] = time.perf_counter() - t0
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m capslib.tools.window", description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["pick"])
    p.add_argument("--device", default=None)
    p.add_argument("--steps", type=int, default=None, help="timed steps per candidate (default: cuda 30, cpu 2)")
    p.add_argument("--models", type=int, default=8, help="stacked models in the switch sets' timings")
    p.add_argument("--candidates", default=None, help="comma list of CANDIDATES names")
    p.add_argument("--groups", default=",".join(map(str, GROUP_SIZES)),
                   help="comma list of group sizes to try per paper (default %(default)s)")
    p.add_argument("--memory-gib", type=float, default=None,
                   help="device memory the groups must fit in where the device does not report it "
                        "(CUDA reports its own; default: unlimited)")
    p.add_argument("--seconds", type=float, default=80.0,
                   help="time no further group size after this (default %(default)s s; the checks still run)")
    p.add_argument("--check-epochs", type=int, default=3,
                   help="epochs of the soundness check's longer trainings (default %(default)s; at least 2)")
    p.add_argument("--out", default="results/bench")
    a = p.parse_args(argv)
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    names = a.candidates.split(",") if a.candidates else None
    unknown = [n for n in names or () if n not in CANDIDATES]
    if unknown:
        print(f"error: unknown candidate {unknown[0]!r}; choose among {', '.join(CANDIDATES)}", file=sys.stderr)
        return 2
    try:
        sizes = [int(n) for n in a.groups.split(",")]
        if not sizes or min(sizes) < 1:
            raise ValueError
    except ValueError:
        print(f"error: --groups must be whole numbers >= 1, comma separated, got {a.groups!r}", file=sys.stderr)
        return 2
    if a.check_epochs < 2:
        print(f"error: --check-epochs must be at least 2 (the check compares the loss after 1 epoch and after "
              f"the last), got {a.check_epochs}", file=sys.stderr)
        return 2
    memory = None if a.memory_gib is None else int(a.memory_gib * 2 ** 30)
    report = pick(device, a.steps or (30 if device.type == "cuda" else 2), a.models, names, sizes, memory, a.seconds,
                  check_epochs=a.check_epochs)
    for name, t in report["timings"].items():
        print(f"{name:32s} " + (f"{t['images_per_s']:9.1f} images/s" if "images_per_s" in t else t["error"]))
    for name, groups in report["groups"].items():
        for protocol, g in groups.items():
            for size, c in g["candidates"].items():
                what = (f"{c['images_per_s']:9.1f} images/s" if "images_per_s" in c
                        else c.get("skipped") or c.get("error"))
                print(f"{name} {protocol} x{size:<3d} (estimate {c['estimate_bytes'] / 2 ** 30:6.2f} GiB) {what}")
            print(f"{name} {protocol}: {g['why']}")
    path = write_report(a.out, f"window-{device.type}", report)
    for protocol, sizes in report.get("rates", {}).items():
        print(f"rates for the run's time budget, {protocol}: " + ", ".join(
            f"x{n} {r['images_per_s']:.0f} images/s + {r['start_seconds']:.1f} s start" for n, r in sizes.items()))
    print(f"decision: {report['decision']} ({report['why']}); wrote {path}")
    print(" ".join(report["flags"] + (["--rates", str(path)] if "rates" in report else [])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
