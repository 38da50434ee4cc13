"""The gradient of one loss-plateau state on every training route, against a float64 reference
(``python -m capslib.tools.gradcheck``; book/methods.md, "the loss plateau").

Paper A's CapsNet reaches the plateau within a few dozen steps: the anomaly capsule saturates
"on" for every image, and the only pull back is small. Whether a route leaves it can hinge on
how exactly it computes that pull. This trains one cell's network for ``--steps`` Adam steps on
the plain path in fp32 (its own initialisation and data order), then takes the gradient of the
next batch's loss on each route of :data:`ROUTES` and on the CPU in float64, and writes per route
and parameter group (conv1, primary capsules, capsule transform W, decoder) the relative L2
distance from the float64 gradient, with the loss and the anomaly capsule's mean length, to
``<out>/gradcheck-<device>-<date>.json``.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time

import torch

from capslib.core.errors import ConfigError
from capslib.core.provenance import device_name, git_commit, write_report
from capslib.tools.stallrate import CPU_ROUTES, DEFAULT_CELL, ROUTES

GROUPS = {"conv1": ("conv1.",), "primary": ("primary.",), "W": ("W",), "decoder": ("decoder.",)}


def batch(job, data, idx, device, dtype=torch.float32):
    """The images, margin-loss targets, decoder capsules and reconstruction mask (None: every
    image) of the training batch ``idx``, as the plain path's training loop takes them."""
    x = data.x_train[job.train_idx][idx].to(device, dtype)
    y = job.targets[idx].to(device)
    dmask = (job.decoder_mask if job.decoder_mask is not None else job.targets)[idx].to(device)
    rmask = None if job.recon_mask is None else job.recon_mask[idx].to(device, dtype)
    return x, y, dmask, rmask


def plain_loss(model, standardize: bool, x, y, dmask, rmask, precision: str = "fp32"):
    """The plain path's training loss of one batch (:func:`capslib.train.plain.train_capsnet`'s),
    and the capsule lengths."""
    from capslib.model.losses import margin_loss, reconstruction_loss
    from capslib.train.plain import model_input, precision_context
    with precision_context(precision, x.device):
        out = model(model_input(x, standardize), mask=dmask)
    return margin_loss(out.lengths, y) + reconstruction_loss(out.reconstruction, x, sample_mask=rmask), out.lengths


def plateau_state(job, data, steps: int):
    """The job's model after ``steps`` Adam steps of its own training (plain path, fp32), and
    the indices of the next batch."""
    from capslib.train.plain import adam_steps
    model, s = job.model, job.settings
    device = next(model.parameters()).device
    order = torch.randperm(len(job.train_idx), generator=job.generator)
    batches = [order[i:i + s.batch_size] for i in range(0, len(order), s.batch_size)]
    steps = min(steps, len(batches) - 1)
    it = iter(batches[:steps])
    adam_steps(model, lambda _idx: plain_loss(model, s.standardize, *batch(job, data, next(it), device))[0],
               steps * s.batch_size, 1, s.batch_size, s.lr, 1.0, torch.Generator().manual_seed(0), device)
    return model, batches[steps]


def route_gradient(route: str, model, job, data, idx, device) -> tuple[dict, float, float]:
    """{parameter name: gradient} of the batch ``idx``'s loss on ``route``, the loss and the mean
    length of the anomaly capsule (capsule 1)."""
    from capslib.train.plain import model_input
    from capslib.train.stacked import PARAM_NAMES, StackedCapsNet, stacked_losses, tf32_enabled
    fast, precision, opt = ROUTES[route]
    m = copy.deepcopy(model).to(device).float()
    x, y, dmask, rmask = batch(job, data, idx, device)
    with tf32_enabled(opt.tf32, opt.exact_bf16_reductions):
        if not fast:
            loss, lengths = plain_loss(m, job.settings.standardize, x, y, dmask, rmask, precision)
            loss.backward()
            grads = {n: p.grad.detach().double().cpu() for n, p in m.named_parameters()}
        else:
            net = StackedCapsNet([m]).to(device)
            net.bf16, net.channels_last, net.conv1_fp32 = opt.bf16, opt.channels_last, opt.conv1_fp32
            lengths, recon, _ = net(model_input(x, job.settings.standardize).unsqueeze(0), dmask.unsqueeze(0))
            ones = torch.ones(1, len(idx), device=device)
            rm = ones if rmask is None else rmask.unsqueeze(0)
            loss = stacked_losses(lengths, recon, x.unsqueeze(0), y.unsqueeze(0), rm, ones).sum()
            loss.backward()
            grads = {n: getattr(net, PARAM_NAMES[n]).grad[0].detach().double().cpu() for n in PARAM_NAMES}
            lengths = lengths[0]
    return grads, loss.item(), lengths[:, 1].mean().item()


def reference_gradient(model, job, data, idx) -> tuple[dict, float, float]:
    """The same batch's gradient in float64 on the CPU."""
    m = copy.deepcopy(model).cpu().double()
    loss, lengths = plain_loss(m, job.settings.standardize, *batch(job, data, idx, "cpu", torch.float64))
    loss.backward()
    return {n: p.grad.detach() for n, p in m.named_parameters()}, loss.item(), lengths[:, 1].mean().item()


def distances(grads: dict, ref: dict) -> dict:
    """Relative L2 distance from the reference, per parameter group."""
    out = {}
    for group, prefixes in GROUPS.items():
        names = [n for n in ref if n.startswith(prefixes)]
        num = sum(float((grads[n] - ref[n]).pow(2).sum()) for n in names) ** 0.5
        den = sum(float(ref[n].pow(2).sum()) for n in names) ** 0.5
        out[group] = num / den if den else float("nan")
    return out


def main(argv=None) -> int:
    from capslib.data.datasets import load_dataset
    from capslib.run.runner import split_for
    from capslib.study.protocols import capsnet_job
    from capslib.tools.routecheck import cell_from_id
    from capslib.train.device import resolve_device
    p = argparse.ArgumentParser(prog="python -m capslib.tools.gradcheck", description=__doc__.splitlines()[0])
    p.add_argument("--cell", default=DEFAULT_CELL)
    p.add_argument("--steps", type=int, default=50, help="Adam steps before the state is taken (default 50)")
    p.add_argument("--routes", default=None, help=f"comma list of {', '.join(ROUTES)} (default: all on CUDA, "
                                                  "plain-fp32 and the CPU routes of stallrate on a CPU)")
    p.add_argument("--profile", default="paper")
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default="results/bench")
    a = p.parse_args(argv)
    try:
        device = resolve_device(a.device)
        routes = a.routes.split(",") if a.routes else (list(ROUTES) if device.type == "cuda"
                                                         else ["plain-fp32", *CPU_ROUTES])
        unknown = [r for r in routes if r not in ROUTES]
        if unknown:
            raise ConfigError(f"unknown route {unknown[0]!r}; choose among {', '.join(ROUTES)}")
        spec = cell_from_id(a.cell, a.profile)
        if spec.protocol != "imbalanced":
            raise ConfigError("the loss plateau is paper A's: choose a cell of protocol imbalanced")
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    data = load_dataset(spec.dataset, a.data_root)
    split = split_for(spec.resolved(), data)
    job = capsnet_job(spec, data, split, device, "fp32")
    model, idx = plateau_state(job, data, a.steps)
    ref, ref_loss, ref_za = reference_gradient(model, job, data, idx)
    report = {"device": device_name(device), "torch": torch.__version__, "commit": git_commit(),
              "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cell": a.cell, "steps": a.steps,
              "reference": {"loss": ref_loss, "mean_za": ref_za}, "routes": {}}
    print(f"state after {a.steps} steps: loss {ref_loss:.4f} (float64), mean |z_a| {ref_za:.4f}", flush=True)
    for route in routes:
        grads, loss, za = route_gradient(route, model, job, data, idx, device)
        d = distances(grads, ref)
        report["routes"][route] = {"loss": loss, "mean_za": za, "relative_l2": d}
        print(f"{route}: loss {loss:.4f}; gradient off float64 by " +
              ", ".join(f"{g} {v:.2%}" for g, v in d.items()), flush=True)
    print(f"wrote {write_report(a.out, f'gradcheck-{device.type}', report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
