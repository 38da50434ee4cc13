"""The plain training and evaluation path: one model at a time, the obvious PyTorch code,
in fp32 or with the primary-capsule convolution and the decoder in bf16 (``precision``;
conv1, squash, routing and the losses stay fp32), checkpointed after every epoch when asked (:mod:`capslib.train.checkpoint`).
(The batched fast path for GPUs is :mod:`capslib.train.stacked`.)"""
from __future__ import annotations

import contextlib
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from capslib.model.capsnet import CapsNet
from capslib.train.checkpoint import Checkpoint, TrainingPaused
from capslib.model.losses import margin_loss, reconstruction_loss
from capslib.model.scores import reconstruction_mse, re_score, routing_gini

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
DECAY_EVERY = 2000   # steps between learning-rate decays (Sabour et al.)


class NonFiniteLoss(RuntimeError):
    """Training diverged (NaN or inf loss); the cell stops, the grid goes on."""


def set_seed(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


PRECISIONS = ("fp32", "bf16")


def native_bf16(device: torch.device) -> bool:
    """Whether the device computes bf16 natively: CUDA with bf16 support, or a CPU with
    AVX512-BF16 or AMX-BF16 (oneDNN uses both); read from /proc/cpuinfo on Linux."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def default_precision(device) -> str:
    """bf16 where the device has it natively, fp32 elsewhere."""
    return "bf16" if native_bf16(device) else "fp32"


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        from capslib.core.errors import ConfigError
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return precision


def precision_context(precision: str, device: torch.device):
    """The autocast of ``precision`` on ``device``: bf16 autocasts the convolutions and
    linear layers (the CapsNet keeps its routing in fp32 itself); fp32 changes nothing."""
    if check_precision(precision) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


@dataclass
class TrainSettings:
    epochs: int
    batch_size: int
    lr: float = 1e-3
    lr_decay: float = 1.0            # factor applied every DECAY_EVERY steps
    standardize: bool = False        # inputs (x − 0.1307)/0.3081 (paper A); targets stay in [0, 1]
    transform: Optional[Callable] = None  # per-batch training transform (smallNORB's random crop)
    precision: str = "fp32"          # "fp32" | "bf16": the autocast of the forward pass


def model_input(x: torch.Tensor, standardize: bool) -> torch.Tensor:
    return (x - MNIST_MEAN) / MNIST_STD if standardize else x


def adam_steps(model: torch.nn.Module, batch_loss: Callable[[torch.Tensor], torch.Tensor], n: int,
               epochs: int, batch_size: int, lr: float, lr_decay: float, generator: torch.Generator,
               device: torch.device, *, weight_decay: float = 0.0,
               progress: Optional[Callable[[dict], None]] = None, name: str = "",
               checkpoint: Optional[Checkpoint] = None) -> dict:
    """The one training loop of the plain path (CapsNets and baselines): minibatch Adam over
    ``n`` training images, a fresh permutation from ``generator`` every epoch, the learning
    rate ×``lr_decay`` every DECAY_EVERY steps. ``batch_loss(idx)`` returns the scalar loss
    of the images ``idx``. A non-finite loss stops training with :class:`NonFiniteLoss`.

    ``checkpoint``: resume from it if it holds a usable state, save it after every epoch
    but the last, and stop with :class:`capslib.train.checkpoint.TrainingPaused` at an epoch
    boundary when its deadline allows no further epoch.
    Returns {'train_seconds', 'final_loss', 'resumed_from_epoch'}; the clock runs
    device-synchronized and adds up over resumed runs."""
    # fused: Adam's update in one kernel over all tensors: a CapsNet's step takes 4 ms on a CPU (14 ms
    # with foreach, 33 ms per parameter); the same arithmetic up to rounding, not bit for bit
    # (tests/test_capsnet.py; the contract is in book/methods.md, "reproducible")
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
    sched = torch.optim.lr_scheduler.StepLR(opt, DECAY_EVERY, gamma=lr_decay)
    start, before, final_loss = 0, 0.0, float("nan")
    state = checkpoint.load() if checkpoint is not None else None
    if state is not None:
        checkpoint.restore(state, model, opt, sched, generator)
        start, before, final_loss = state["epoch"], state["train_seconds"], state["final_loss"]
        if progress is not None:
            progress({"epoch": start, "loss": final_loss, "images": 0, "steps": start * -(-n // batch_size)})
    model.train()
    synchronize(device)
    t0 = time.perf_counter()
    loss = torch.tensor(final_loss)
    for epoch in range(start, epochs):
        t_epoch = time.perf_counter()
        order = torch.randperm(n, generator=generator)
        for start_i in range(0, n, batch_size):
            idx = order[start_i:start_i + batch_size]
            loss = batch_loss(idx)
            if not torch.isfinite(loss):
                raise NonFiniteLoss(f"{name}: loss is {loss.item()} at epoch {epoch + 1}, step {start_i // batch_size}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if progress is not None:
                progress({"epoch": epoch + 1, "loss": loss.item(), "images": len(idx)})
        if checkpoint is not None and epoch + 1 < epochs:
            synchronize(device)
            now = time.perf_counter()
            checkpoint.save(model, opt, sched, generator, epoch + 1, epochs, before + now - t0, float(loss.item()))
            if checkpoint.should_pause(now - t_epoch):
                raise TrainingPaused(name, epoch + 1, epochs)
    synchronize(device)
    return {"train_seconds": before + time.perf_counter() - t0, "final_loss": float(loss.item()),
            "resumed_from_epoch": start}


def train_capsnet(model: CapsNet, images: torch.Tensor, targets: torch.Tensor, settings: TrainSettings,
                  generator: torch.Generator, decoder_mask: Optional[torch.Tensor] = None,
                  recon_mask: Optional[torch.Tensor] = None, progress: Optional[Callable[[dict], None]] = None,
                  name: str = "", checkpoint: Optional[Checkpoint] = None) -> dict:
    """Train with margin loss + reconstruction loss, Adam; returns {'train_seconds', 'final_loss'}.

    images (N, C, H, W) in [0, 1]; targets (N,) class per image (margin loss);
    decoder_mask (N,) the capsule the decoder keeps per image (default: the target);
    recon_mask (N,) 0/1, images that count in the reconstruction loss (default: all).
    The forward pass runs under ``settings.precision``; the losses are fp32.
    """
    device = next(model.parameters()).device
    targets = targets.to(device)
    decoder_mask = targets if decoder_mask is None else decoder_mask.to(device)
    recon_mask = None if recon_mask is None else recon_mask.to(device)

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        x = images[idx.to(images.device)].to(device, non_blocking=True)
        if settings.transform is not None:
            x = settings.transform(x, generator)
        i = idx.to(device)
        with precision_context(settings.precision, device):
            out = model(model_input(x, settings.standardize), mask=decoder_mask[i])
        rmask = None if recon_mask is None else recon_mask[i]
        return margin_loss(out.lengths, targets[i]) + reconstruction_loss(out.reconstruction, x, sample_mask=rmask)

    return adam_steps(model, batch_loss, len(images), settings.epochs, settings.batch_size, settings.lr,
                      settings.lr_decay, generator, device, progress=progress, name=name, checkpoint=checkpoint)


@torch.no_grad()
def evaluate_capsnet(model: CapsNet, images: torch.Tensor, standardize: bool, decoder_capsule: Optional[int] = None,
                     batch_size: int = 256, keep_reconstructions: Optional[np.ndarray] = None,
                     transform: Optional[Callable] = None, precision: str = "fp32") -> dict[str, np.ndarray]:
    """Forward every image; returns per-image arrays: capsule ``lengths`` (N, K), ``r_l``
    (MSE), ``nse`` (−RE), ``gini`` (N, K) of the routing couplings into each capsule, and
    the ``reconstructions`` of the images listed in ``keep_reconstructions``, in that order.

    decoder_capsule: the capsule the decoder keeps for every image (paper A proposed: 0,
    z_n); None keeps the longest one. ``precision``: the forward pass's, as in training.
    """
    device = next(model.parameters()).device
    model.eval()
    out: dict[str, list] = {"lengths": [], "r_l": [], "nse": [], "gini": []}
    keep = [] if keep_reconstructions is None else [int(k) for k in keep_reconstructions]
    wanted, recon = set(keep), {}
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device)
        if transform is not None:
            x = transform(x, None)
        mask = None if decoder_capsule is None else torch.full((len(x),), decoder_capsule, device=device, dtype=torch.long)
        with precision_context(precision, device):
            o = model(model_input(x, standardize), mask=mask)
        out["lengths"].append(o.lengths.float().cpu())
        out["r_l"].append(reconstruction_mse(x, o.reconstruction).float().cpu())
        out["nse"].append(re_score(x, o.reconstruction).float().cpu())
        out["gini"].append(torch.stack([routing_gini(o.couplings, k) for k in range(o.lengths.shape[1])], 1).float().cpu())
        for j in range(len(x)):
            if start + j in wanted:
                recon[start + j] = o.reconstruction[j].float().cpu()
    res = {k: torch.cat(v).numpy() for k, v in out.items()}
    if keep:
        res["reconstructions"] = torch.stack([recon[k] for k in keep]).numpy()   # in the order asked
    model.train()
    return res
