"""What a CapsNet training step computes (multiply-accumulates per layer, FLOP per image) and what
a device can: its measured matmul rate and nominal peaks."""
from __future__ import annotations

import time

import torch

from capslib.model.capsnet import CapsNetConfig
from capslib.train.plain import synchronize


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
