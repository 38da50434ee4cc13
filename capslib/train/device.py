"""The device a command trains on, as its user names it, checked before any work starts."""
from __future__ import annotations

import torch

from capslib.train.plain import default_device


def resolve_device(name=None) -> torch.device:
    """The device a user names (``cpu``, ``cuda``, ``cuda:1``; None: :func:`default_device`),
    checked before any work: an unknown name or a CUDA device that is not here is one line."""
    from capslib.core.errors import ConfigError
    if name is None:
        return default_device()
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device {name!r}: use cpu or cuda") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {name!r}: use cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {str(name)!r}: no CUDA device here; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {str(name)!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device
