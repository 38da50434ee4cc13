"""CapsNet of Sabour, Frosst & Hinton (2017), shared by both papers (STUDY.md §1).

Read top to bottom: ``squash`` → ``dynamic_routing`` → ``CapsNet``. The network
returns tensors only; the scores and the metrics live in :mod:`capslib.model.scores`.

Shapes use B = batch, N = input (primary) capsules, K = class capsules.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

SQUASH_EPS = 1e-8


@dataclass(frozen=True)
class CapsNetConfig:
    n_classes: int = 10          # K class capsules
    in_channels: int = 1         # 1 for the MNIST family, 2 for smallNORB
    image_size: int = 28         # 28 (MNIST family) or 32 (smallNORB crop)
    conv_channels: int = 256     # conv1 kernels
    primary_types: int = 32      # capsule types in the primary layer
    primary_dim: int = 8
    class_dim: int = 16
    routing_iters: int = 3
    decoder_hidden: tuple[int, int] = (512, 1024)

    @property
    def primary_grid(self) -> int:
        conv1 = self.image_size - 8           # 9x9, stride 1
        return (conv1 - 9) // 2 + 1           # 9x9, stride 2

    @property
    def n_primary(self) -> int:
        return self.primary_types * self.primary_grid ** 2   # 1152 for 28x28, 2048 for 32x32


class CapsNetOutput(NamedTuple):
    capsules: torch.Tensor        # (B, K, 16) class capsules v_j
    lengths: torch.Tensor         # (B, K)     ||v_j||, in [0, 1)
    reconstruction: torch.Tensor  # (B, C, H, W) in [0, 1]
    couplings: torch.Tensor       # (B, N, K)  routing coefficients c_ij of the last iteration


def squash(s: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Squash non-linearity, Sabour et al. eq. 1: v = |s|^2/(1+|s|^2) * s/|s|."""
    sq = (s * s).sum(dim=dim, keepdim=True)
    return sq / (1.0 + sq) * s / torch.sqrt(sq + SQUASH_EPS)


def dynamic_routing(u_hat: torch.Tensor, iterations: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Routing by agreement, Sabour et al. Procedure 1.

    u_hat: (B, N, K, D) predictions of every input capsule for every class capsule.
    Returns the class capsules v (B, K, D) and the couplings c (B, N, K); c is a
    softmax over the K classes for each input capsule, and b starts at 0 per sample.
    """
    B, N, K, _ = u_hat.shape
    b = u_hat.new_zeros(B, N, K)
    for it in range(iterations):
        c = torch.softmax(b, dim=2)                        # (B, N, K)
        s = torch.einsum("bnk,bnkd->bkd", c, u_hat)        # (B, K, D)
        v = squash(s)                                      # (B, K, D)
        if it < iterations - 1:
            b = b + torch.einsum("bnkd,bkd->bnk", u_hat, v)  # agreement u_hat . v
    return v, c


def fp32_region(device: torch.device):
    """A region that computes in fp32 whatever autocast surrounds it: conv1, the capsule
    transform, squash and routing keep full precision (the training loop's ``precision``
    autocasts the primary convolution and the decoder)."""
    return torch.autocast(device.type, enabled=False)


class CapsNet(nn.Module):
    """conv1 → primary capsules → class capsules (routing) → masked decoder."""

    def __init__(self, config: CapsNetConfig = CapsNetConfig()):
        super().__init__()
        self.config = cfg = config
        self.conv1 = nn.Conv2d(cfg.in_channels, cfg.conv_channels, 9, stride=1)
        self.primary = nn.Conv2d(cfg.conv_channels, cfg.primary_types * cfg.primary_dim, 9, stride=2)
        # one class_dim x primary_dim matrix per (input capsule, class); no bias (Sabour et al.)
        self.W = nn.Parameter(0.01 * torch.randn(cfg.n_primary, cfg.n_classes, cfg.class_dim, cfg.primary_dim))
        h1, h2 = cfg.decoder_hidden
        n_pixels = cfg.in_channels * cfg.image_size ** 2
        self.decoder = nn.Sequential(
            nn.Linear(cfg.n_classes * cfg.class_dim, h1), nn.ReLU(inplace=True),
            nn.Linear(h1, h2), nn.ReLU(inplace=True),
            nn.Linear(h2, n_pixels),                       # the sigmoid is in decode(), in fp32
        )

    def primary_capsules(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        # conv1 stays fp32 under a bf16 autocast: it is 4% of the FLOPs, and on a CPU (oneDNN) its
        # one-input-channel backward in bf16, and the primary convolution's backward from a bf16
        # input, ran so slowly that bf16 training gained 1.1x instead of 1.7x (capslib.tools.bench)
        with fp32_region(x.device):
            h = F.relu(self.conv1(x.to(self.W.dtype)))     # (B, 256, 20, 20)
        u = self.primary(h).to(self.W.dtype)               # (B, 256, 6, 6); fp32 even under bf16 autocast
        B, _, G, _ = u.shape
        u = u.view(B, cfg.primary_types, cfg.primary_dim, G, G)
        u = u.permute(0, 1, 3, 4, 2).reshape(B, cfg.n_primary, cfg.primary_dim)  # (B, 1152, 8)
        return squash(u)

    def decode(self, capsules: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Rebuild the image from the capsule ``mask`` (B,) names; the others are zeroed."""
        cfg = self.config
        keep = F.one_hot(mask, cfg.n_classes).to(capsules.dtype)        # (B, K)
        flat = (capsules * keep.unsqueeze(-1)).flatten(1)              # (B, K*16)
        out = torch.sigmoid(self.decoder(flat).to(self.W.dtype))       # (B, C*H*W), sigmoid in fp32
        return out.view(-1, cfg.in_channels, cfg.image_size, cfg.image_size)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> CapsNetOutput:
        """``mask``: the class capsule the decoder keeps (B,) — the true class in
        training; ``None`` keeps the longest capsule (test time)."""
        u = self.primary_capsules(x)                                    # (B, N, 8)
        with fp32_region(u.device):   # under a bf16 autocast only the primary conv and the decoder drop to bf16
            u_hat = torch.einsum("nkdi,bni->bnkd", self.W, u)           # (B, N, K, 16)
            v, c = dynamic_routing(u_hat, self.config.routing_iters)    # (B, K, 16), (B, N, K)
        lengths = v.norm(dim=-1)                                        # (B, K)
        if mask is None:
            mask = lengths.argmax(dim=1)
        return CapsNetOutput(v, lengths, self.decode(v, mask), c)


def count_parameters(module: nn.Module, include_decoder: bool = True) -> int:
    return sum(p.numel() for name, p in module.named_parameters()
               if include_decoder or not name.startswith("decoder."))
