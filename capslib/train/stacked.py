"""The fast path: train M independent CapsNets of one shape as one batched model.

Cells of one table row (same protocol, dataset, K, batch size, epochs) differ only in
their weights, their data and their seeds. Here their parameters are stacked along a
leading model dim M and trained in one step: conv1 and the primary capsules as grouped
convolutions (groups = M), the capsule transform as one batched einsum, routing over the
flattened (M·B) batch (:func:`capslib.model.capsnet.dynamic_routing` itself), the decoder as
batched matmuls. Each model keeps

- its own initial weights and data order: every model comes from
  :func:`capslib.study.protocols.capsnet_job`, exactly as the plain path builds it, and draws its
  batches from its own generator in the plain path's order (a permutation per epoch, then
  smallNORB's crop offsets per batch);
- its own epoch length: models of a group may have different training-set sizes; each
  model's batch is padded to B with zero-weight samples, and a model that has run its
  steps (or whose loss went non-finite) no longer updates;
- its own Adam: Adam is elementwise (no weight decay here), so one Adam over the stacked
  tensors equals M independent ones, provided each model keeps its own step count,
  learning-rate schedule and update mask (:class:`StackedAdam`; tests/test_fast.py checks it
  against ``torch.optim.Adam``).

Evaluation runs the trained group stacked too (:mod:`capslib.train.stacked_eval`), and the plain
path's :func:`capslib.study.protocols.cell_result` turns each model's outputs into its cell, so
a cell's CellResult has the same scores, thresholds and arrays as the plain path's. The
grid side (grouping, writing cells) is :mod:`capslib.run.groups`.
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from capslib.model.capsnet import CapsNet, dynamic_routing, squash
from capslib.core.config import FastOptions
from capslib.model.losses import RECONSTRUCTION_WEIGHT, margin_terms
from capslib.train.plain import DECAY_EVERY, MNIST_MEAN, MNIST_STD, NonFiniteLoss, synchronize

# parameter name in CapsNet -> name of the stacked tensor
PARAM_NAMES = {"conv1.weight": "conv1_w", "conv1.bias": "conv1_b", "primary.weight": "prim_w", "primary.bias": "prim_b",
               "W": "W", "decoder.0.weight": "dec0_w", "decoder.0.bias": "dec0_b", "decoder.2.weight": "dec1_w",
               "decoder.2.bias": "dec1_b", "decoder.4.weight": "dec2_w", "decoder.4.bias": "dec2_b"}


class StackedCapsNet(nn.Module):
    """M CapsNets of one config as stacked parameters; every tensor has a leading M."""

    def __init__(self, models: Sequence[CapsNet]):
        super().__init__()
        self.config = cfg = models[0].config
        assert all(m.config == cfg for m in models), "a group must share one CapsNet config"
        self.M = len(models)
        states = [dict(m.named_parameters()) for m in models]
        for name, stacked in PARAM_NAMES.items():
            self.register_parameter(stacked, nn.Parameter(torch.stack([s[name].detach() for s in states]).clone()))
        self.bf16 = self.channels_last = self.conv1_fp32 = False

    @torch.no_grad()
    def unstack_into(self, models: Sequence[CapsNet]) -> None:
        """Copy model m's trained weights back into ``models[m]``."""
        for m, model in enumerate(models):
            for name, p in model.named_parameters():
                p.copy_(getattr(self, PARAM_NAMES[name])[m].to(p.device))

    def _autocast(self, device: torch.device):
        return torch.autocast(device.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (M, B, C, H, W) network inputs; mask (M, B) the capsule the decoder keeps, a
        negative entry keeping the longest one (test time). Returns lengths (M, B, K),
        reconstructions (M, B, C, H, W) and routing couplings (M, B, 1152, K), in the
        parameters' dtype (fp32 also under bf16 autocast)."""
        cfg, M = self.config, self.M
        _, B, C, H, W = x.shape
        K, T, D = cfg.n_classes, cfg.primary_types, cfg.primary_dim
        xg = x.transpose(0, 1).reshape(B, M * C, H, W)                    # (B, M*C, H, W)
        w1, w2 = self.conv1_w.flatten(0, 1), self.prim_w.flatten(0, 1)     # (M*256, C, 9, 9), (M*256, 256, 9, 9)
        if self.channels_last:
            xg, w1, w2 = (t.contiguous(memory_format=torch.channels_last) for t in (xg, w1, w2))
        with contextlib.nullcontext() if self.conv1_fp32 else self._autocast(x.device):   # the plain path: fp32
            h = F.relu(F.conv2d(xg, w1, self.conv1_b.flatten(), groups=M))             # (B, M*256, 20, 20)
        with self._autocast(x.device):
            u = F.conv2d(h, w2, self.prim_b.flatten(), stride=2, groups=M)             # (B, M*256, 6, 6)
        G = u.shape[-1]
        u = u.to(self.W.dtype).reshape(B, M, T, D, G, G).permute(1, 0, 2, 4, 5, 3).reshape(M, B, T * G * G, D)
        u = squash(u)                                                                  # (M, B, 1152, 8)
        u_hat = torch.einsum("mnkdi,mbni->mbnkd", self.W, u)                          # (M, B, 1152, K, 16)
        N = u_hat.shape[2]
        v, c = dynamic_routing(u_hat.reshape(M * B, N, K, cfg.class_dim), cfg.routing_iters)
        v = v.view(M, B, K, cfg.class_dim)                                             # (M, B, K, 16)
        lengths = v.norm(dim=-1)                                                       # (M, B, K)
        mask = torch.where(mask < 0, lengths.argmax(-1), mask)                         # (M, B)
        keep = F.one_hot(mask, K).to(v.dtype)                                          # (M, B, K)
        z = (v * keep.unsqueeze(-1)).flatten(2)                                        # (M, B, K*16)
        with self._autocast(x.device):
            z = F.relu(torch.baddbmm(self.dec0_b.unsqueeze(1), z, self.dec0_w.transpose(1, 2)))   # (M, B, 512)
            z = F.relu(torch.baddbmm(self.dec1_b.unsqueeze(1), z, self.dec1_w.transpose(1, 2)))   # (M, B, 1024)
            z = torch.baddbmm(self.dec2_b.unsqueeze(1), z, self.dec2_w.transpose(1, 2))           # (M, B, C*H*W)
        recon = torch.sigmoid(z.to(self.W.dtype)).view(M, B, C, H, W)
        return lengths, recon, c.view(M, B, N, K)


def stacked_losses(lengths: torch.Tensor, recon: torch.Tensor, target: torch.Tensor, classes: torch.Tensor,
                   recon_mask: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-model margin + reconstruction loss (capslib.model.losses, batched), fp32: (M,).

    lengths (M, B, K); recon, target (M, B, C, H, W) in [0, 1]; classes (M, B); recon_mask,
    valid (M, B) 0/1. The means run over each model's valid samples only (its real batch).
    """
    margin = margin_terms(lengths, classes)                                             # (M, B)
    sq = ((recon - target) ** 2).flatten(2).sum(-1) * recon_mask                        # (M, B)
    n = valid.sum(1).clamp_min(1.0)                                                     # (M,)
    return (margin * valid).sum(1) / n + RECONSTRUCTION_WEIGHT * (sq * valid).sum(1) / n


class StackedAdam:
    """Adam (torch.optim.Adam's update, no weight decay, no amsgrad) over stacked tensors,
    with a per-model step count, StepLR schedule (``decay`` every ``every`` steps) and an
    update mask: a masked model's parameters and moments stay exactly as they were."""

    def __init__(self, params: Sequence[torch.Tensor], lr: torch.Tensor, decay: torch.Tensor,
                 betas=(0.9, 0.999), eps: float = 1e-8, every: int = 2000):
        self.params = list(params)
        dev = self.params[0].device
        self.lr, self.decay = lr.double().to(dev), decay.double().to(dev)                # (M,)
        self.b1, self.b2, self.eps, self.every = betas[0], betas[1], eps, every
        self.steps = torch.zeros(len(lr), dtype=torch.float64, device=dev)                # (M,) steps taken
        self.m1 = [torch.zeros_like(p) for p in self.params]
        self.m2 = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        """One Adam step for the models where ``active`` (M,) is true; in place, one
        temporary per tensor. A masked model's gradient is zeroed (NaN included), its
        moments are lerped/scaled by weight 0/1 and its step size is 0: nothing moves."""
        lr = self.lr * self.decay ** torch.div(self.steps, self.every, rounding_mode="floor")  # (M,) StepLR
        t = self.steps + 1                                   # >= 1 for every model: no 0/0 when masked
        bc1, bc2_sqrt = 1 - self.b1 ** t, (1 - self.b2 ** t).sqrt()
        neg_step = torch.where(active, -lr / bc1, 0.0)       # (M,)
        for p, m1, m2 in zip(self.params, self.m1, self.m2):
            shape = (-1,) + (1,) * (p.dim() - 1)
            a = active.view(shape)
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            g.masked_fill_(~a, 0.0)
            m1.lerp_(g, (1 - self.b1) * a.to(p.dtype))
            m2.mul_(torch.where(a, self.b2, 1.0).to(p.dtype)).addcmul_(g, g, value=1 - self.b2)
            denom = m2.sqrt().div_(bc2_sqrt.to(p.dtype).view(shape)).add_(self.eps)
            p.addcmul_(torch.div(m1, denom, out=denom), neg_step.to(p.dtype).view(shape))
        self.steps += active.to(self.steps.dtype)


def model_batches(n: int, batch_size: int, epochs: int, generator: torch.Generator,
                  crop: Optional[tuple[int, int]] = None):
    """One model's batches in the plain path's order (train.train_capsnet): a permutation
    per epoch; with ``crop`` = (stored size, crop size), the crop offsets per batch drawn
    as data.norb_crop draws them. Yields (indices (b,), offsets (b, 2) or None)."""
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            offs = None if crop is None else torch.randint(0, crop[0] - crop[1] + 1, (len(idx), 2), generator=generator)
            yield idx, offs


def crop_batch(x: torch.Tensor, offs: torch.Tensor, size: int) -> torch.Tensor:
    """Per-image crops at ``offs``: x (M, B, C, H, W), offs (M, B, 2) → (M, B, C, size, size)."""
    M, B, C = x.shape[:3]
    ar = torch.arange(size, device=x.device)
    rows = (offs[..., 0, None] + ar).reshape(M * B, 1, size, 1)
    cols = (offs[..., 1, None] + ar).reshape(M * B, 1, 1, size)
    flat = x.reshape(M * B, C, *x.shape[3:])
    out = flat[torch.arange(M * B, device=x.device).view(-1, 1, 1, 1), torch.arange(C, device=x.device).view(1, -1, 1, 1), rows, cols]
    return out.view(M, B, C, size, size)


@contextlib.contextmanager
def tf32_enabled(on: bool, exact_bf16_reductions: bool = False):
    """TF32 on or really off for matmuls and cuDNN convolutions (torch allows TF32 convolutions
    by default), and bf16 matmuls with fp32 reductions when asked; restored afterwards."""
    if not torch.cuda.is_available():
        yield
        return
    m = torch.backends.cuda.matmul
    old = m.allow_tf32, torch.backends.cudnn.allow_tf32, m.allow_bf16_reduced_precision_reduction
    m.allow_tf32 = torch.backends.cudnn.allow_tf32 = on
    if exact_bf16_reductions:
        m.allow_bf16_reduced_precision_reduction = False
    try:
        yield
    finally:
        m.allow_tf32, torch.backends.cudnn.allow_tf32, m.allow_bf16_reduced_precision_reduction = old


def train_stacked(jobs: Sequence, images: torch.Tensor, device: torch.device,
                  options: FastOptions = FastOptions(), crop: Optional[int] = None,
                  progress: Optional[Callable[[int, int], None]] = None) -> list:
    """Train the models of ``jobs`` (capslib.train.jobs.CapsNetJob, one shape, one batch
    size) together and copy the trained weights back into each ``job.model``.

    images: (N, C, H, W) in [0, 1], the whole training set the jobs' ``train_idx`` index;
    moved to ``device`` once. Returns per job train_capsnet's dict ({'train_seconds',
    'final_loss'}; train_seconds is the group's time / M), with the loss of each epoch's last
    step ('epoch_end_losses', the last one the final loss), or a NonFiniteLoss.
    progress(steps done, total steps) is called once per chunk.
    """
    M, s0 = len(jobs), jobs[0].settings
    B, standardize = s0.batch_size, s0.standardize
    assert all(j.settings.batch_size == B and j.settings.standardize == standardize for j in jobs)
    net = StackedCapsNet([j.model for j in jobs]).to(device)
    net.bf16, net.channels_last, net.conv1_fp32 = options.bf16, options.channels_last, options.conv1_fp32
    X = images.to(device)                                                   # (N, C, H, W), once
    sizes = [len(j.train_idx) for j in jobs]
    n_max = max(sizes)
    pad = lambda t, fill=0: torch.cat([t, t.new_full((n_max - len(t),), fill)])
    gidx = torch.stack([pad(torch.as_tensor(j.train_idx, dtype=torch.long)) for j in jobs]).to(device)  # (M, n_max)
    cls = torch.stack([pad(j.targets.long()) for j in jobs]).to(device)
    dmask = torch.stack([pad((j.targets if j.decoder_mask is None else j.decoder_mask).long()) for j in jobs]).to(device)
    rmask = torch.stack([pad(torch.ones(n) if j.recon_mask is None else j.recon_mask.float())
                         for j, n in zip(jobs, sizes)]).to(device)                           # (M, n_max)
    steps = [j.settings.epochs * -(-n // B) for j, n in zip(jobs, sizes)]
    per_epoch = [-(-n // B) for n in sizes]
    crop_spec = None if crop is None else (images.shape[-1], crop)
    streams = [model_batches(n, B, j.settings.epochs, j.generator, crop_spec) for j, n in zip(jobs, sizes)]
    opt = StackedAdam(list(net.parameters()), torch.tensor([j.settings.lr for j in jobs]),
                      torch.tensor([j.settings.lr_decay for j in jobs]), every=DECAY_EVERY)

    def loss_fn(li, offs, live):                                            # li (M, B) indices into each set
        x = X[gidx.gather(1, li)]                                           # (M, B, C, H, W) in [0, 1]
        if offs is not None:
            x = crop_batch(x, offs, crop)
        inp = (x - MNIST_MEAN) / MNIST_STD if standardize else x
        lengths, recon, _ = net(inp, dmask.gather(1, li))
        return stacked_losses(lengths, recon, x, cls.gather(1, li), rmask.gather(1, li), live)

    if options.compile or options.cuda_graphs:
        loss_fn = torch.compile(loss_fn, backend=options.compile_backend,
                                mode="reduce-overhead" if options.cuda_graphs else None)
    failed = torch.zeros(M, dtype=torch.bool, device=device)
    fail_step = torch.full((M,), -1, dtype=torch.long, device=device)
    last = torch.full((M,), float("nan"), device=device)
    total = max(steps)
    epochs_of = [j.settings.epochs for j in jobs]
    ends_at: dict[int, list] = {}                       # step -> [(model, its epoch that ends there)]
    for m, pe in enumerate(per_epoch):
        for e in range(epochs_of[m]):
            ends_at.setdefault((e + 1) * pe - 1, []).append((m, e))
    ended: list = []                                    # (model, epoch) pairs and their losses then
    synchronize(device)
    t0 = time.perf_counter()
    with tf32_enabled(options.tf32, options.exact_bf16_reductions):
        for c0 in range(0, total, options.chunk_steps):
            T = min(options.chunk_steps, total - c0)
            li = torch.zeros(T, M, B, dtype=torch.long)
            live = torch.zeros(T, M, B)
            offs = None if crop is None else torch.zeros(T, M, B, 2, dtype=torch.long)
            for t in range(T):                                              # draw in each model's own order
                for m in range(M):
                    if c0 + t < steps[m]:
                        idx, o = next(streams[m])
                        li[t, m, :len(idx)], live[t, m, :len(idx)] = idx, 1.0
                        if o is not None:
                            offs[t, m, :len(idx)] = o
            li, live = li.to(device, non_blocking=True), live.to(device, non_blocking=True)
            offs = None if offs is None else offs.to(device, non_blocking=True)
            for t in range(T):
                loss = loss_fn(li[t], None if offs is None else offs[t], live[t])     # (M,)
                act = (live[t].sum(1) > 0) & ~failed
                bad = act & ~torch.isfinite(loss)
                fail_step = torch.where(bad, c0 + t, fail_step)
                failed |= bad
                act &= ~bad
                torch.where(act, loss, torch.zeros_like(loss)).sum().backward()
                opt.step(act)
                for p in net.parameters():
                    p.grad = None
                last = torch.where(act, loss.detach(), last)
                if c0 + t in ends_at:                                        # once an epoch per model
                    ended.append((ends_at[c0 + t], last[[m for m, _ in ends_at[c0 + t]]]))
            if progress is not None:
                progress(c0 + T, total)
    synchronize(device)
    seconds = time.perf_counter() - t0
    net.unstack_into([j.model for j in jobs])
    ends = [[float("nan")] * n for n in epochs_of]
    for pairs, losses in ended:
        for (m, e), v in zip(pairs, losses.tolist()):
            ends[m][e] = v
    out = []
    for m, j in enumerate(jobs):
        if failed[m]:
            s = int(fail_step[m])
            out.append(NonFiniteLoss(f"{j.name}: loss is not finite at epoch {s // per_epoch[m] + 1}, "
                                     f"step {s % per_epoch[m]} (fast path)"))
        else:
            out.append({"train_seconds": seconds / M, "final_loss": float(last[m]),
                        "epoch_end_losses": ends[m], "group_train_seconds": seconds, "group_size": M})
    return out
