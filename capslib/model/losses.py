"""Training losses of CapsNet (Sabour et al. 2017, eq. 4 and §4.1); STUDY.md §1."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

M_PLUS, M_MINUS, LAMBDA = 0.9, 0.1, 0.5
RECONSTRUCTION_WEIGHT = 0.0005


def margin_terms(lengths: torch.Tensor, targets: torch.Tensor,
                 m_plus: float = M_PLUS, m_minus: float = M_MINUS, lam: float = LAMBDA) -> torch.Tensor:
    """Sabour et al. eq. 4 per image, summed over the classes: lengths (..., K), targets (...)
    class indices → (...)."""
    t = F.one_hot(targets, lengths.shape[-1]).to(lengths.dtype)          # (..., K)
    present = t * F.relu(m_plus - lengths) ** 2
    absent = lam * (1.0 - t) * F.relu(lengths - m_minus) ** 2
    return (present + absent).sum(dim=-1)


def margin_loss(lengths: torch.Tensor, targets: torch.Tensor,
                m_plus: float = M_PLUS, m_minus: float = M_MINUS, lam: float = LAMBDA) -> torch.Tensor:
    """Margin loss, Sabour et al. eq. 4; summed over the K classes, averaged over the batch.

    lengths: (B, K) capsule lengths; targets: (B,) class indices.
    """
    return margin_terms(lengths, targets, m_plus, m_minus, lam).mean()


def reconstruction_loss(reconstruction: torch.Tensor, target: torch.Tensor,
                        weight: float = RECONSTRUCTION_WEIGHT,
                        sample_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Sabour et al. §4.1: ``weight`` x sum of squared pixel errors, averaged over the batch.

    ``sample_mask`` (B,) of 0/1 drops images from the sum (paper A's proposed variant
    trains the decoder on normal images only); the mean is still over the whole batch.
    """
    per_image = ((reconstruction - target) ** 2).flatten(1).sum(dim=1)   # (B,)
    if sample_mask is not None:
        per_image = per_image * sample_mask.to(per_image.dtype)
    return weight * per_image.mean()
