"""Device memory of a stacked group: an estimate from the CapsNet's shapes, so that the GPU
window skips the group sizes that cannot fit before it tries them (:func:`group_memory`).

The estimate counts what :func:`capslib.train.stacked.train_stacked` and
:func:`capslib.train.stacked_eval.evaluate_stacked` hold on the device: the stacked
parameters, their gradients and Adam's two moments; the activations autograd keeps for
the backward pass; the largest temporaries of the backward pass and of evaluation; the
training set. The activation counts are those of the autograd graph (read with
``torch.autograd.graph.saved_tensors_hooks``); tests/test_stacked_memory.py holds the
estimate against the peak torch's profiler measures on a CPU. It is an upper bound
within about a quarter of that peak; a CUDA device adds its context and the convolution
workspaces, which :data:`USABLE_FRACTION` leaves room for.
"""
from __future__ import annotations

from typing import Optional

import torch

from capslib.model.capsnet import CapsNetConfig

FP32 = 4
USABLE_FRACTION = 0.8       # of the device's memory: room for the CUDA context, cuDNN workspaces, fragmentation


def parameter_count(cfg: CapsNetConfig) -> int:
    """One CapsNet's parameters: conv1 C·c1·81 + c1; primary c1·T·D·81 + T·D; W N·K·Dc·D;
    decoder K·Dc·h1 + h1 + h1·h2 + h2 + h2·P + P (P = C·H·W pixels)."""
    c1, td, pix = cfg.conv_channels, cfg.primary_types * cfg.primary_dim, cfg.in_channels * cfg.image_size ** 2
    h1, h2 = cfg.decoder_hidden
    kd = cfg.n_classes * cfg.class_dim
    return (cfg.in_channels * c1 * 81 + c1 + c1 * td * 81 + td + cfg.n_primary * kd * cfg.primary_dim
            + kd * h1 + h1 + h1 * h2 + h2 + h2 * pix + pix)


def saved_per_image(cfg: CapsNetConfig) -> dict[str, int]:
    """Floats autograd keeps per training image (fp32), by stage, with N = n_primary input
    capsules, K classes, D = primary_dim, Dc = class_dim, A1 = c1·(H−8)² conv1 outputs:

    - pixels 3·P: conv1's input in the grouped layout, the sigmoid's output, the
      reconstruction error the squared loss keeps;
    - conv1 A1: the ReLU's output (the primary convolution's input, the same tensor);
    - primary capsules 3·N·D + 4·N: the permuted convolution output, squash's product, the
      squashed capsules in the einsum's layout, and squash's four per-capsule norms;
    - predictions 4·N·K·Dc: routing's einsums keep û twice in the bmm layout in each of
      the last two iterations (the largest term; 1.2 M floats at K = 9);
    - routing 5·N·K: the couplings of three iterations and the logits of two;
    - class capsules 11·K·Dc + 18·K: the routing's squashes, the lengths and the mask;
    - decoder h1 + h2: its hidden layers.
    """
    N, K, D, Dc = cfg.n_primary, cfg.n_classes, cfg.primary_dim, cfg.class_dim
    pix = cfg.in_channels * cfg.image_size ** 2
    return {"pixels": 3 * pix, "conv1": cfg.conv_channels * (cfg.image_size - 8) ** 2,
            "primary": 3 * N * D + 4 * N, "predictions": 4 * N * K * Dc, "routing": 5 * N * K,
            "class_capsules": 11 * K * Dc + 18 * K, "decoder": sum(cfg.decoder_hidden)}


def group_memory(cfg: CapsNetConfig, models: int, batch: int, bf16: bool = False, eval_batch: int = 256,
                 dataset_images: int = 60000) -> dict[str, int]:
    """Bytes on the device for ``models`` stacked CapsNets of ``cfg`` trained at ``batch``
    images per model and evaluated at ``eval_batch`` (the arithmetic, M = models, B = batch):

    - ``parameters``: 4 · P · M, P = :func:`parameter_count`; the same again for the
      gradients and twice for Adam's moments: ``weights_and_adam`` = 16 · P · M;
    - ``activations``: 4 · B · M · Σ :func:`saved_per_image`;
    - ``backward``: the backward pass's temporaries, 4 · (2 · B · M · N·K·Dc + M · N·K·Dc·D):
      the gradient of û beside one of its copies, and W in the einsum's layout;
    - ``bf16``: under bf16 autocast, 2 · P · M for the weights' bf16 copies and
      2 · B · M · A1 for the bf16 copy of conv1's output the primary convolution keeps;
    - ``training`` = weights_and_adam + activations + backward + bf16;
    - ``evaluation`` (no gradient, one chunk of ``eval_batch`` images per model):
      4 · M · (E · max(2 · A1, 3 · N·K·Dc) + 2 · E · P_pix + N·K·Dc·D) + 4 · P · M
      (E = eval_batch: conv1's output and its ReLU, or û with two einsum copies);
    - ``dataset``: the training images (4 · images · P_pix) and four index tensors per
      model (28 · M · images bytes);
    - ``total`` = max(training, evaluation) + dataset.
    """
    M = models
    N, K, D, Dc = cfg.n_primary, cfg.n_classes, cfg.primary_dim, cfg.class_dim
    pix = cfg.in_channels * cfg.image_size ** 2
    a1 = cfg.conv_channels * (cfg.image_size - 8) ** 2
    u_hat, w = N * K * Dc, N * K * Dc * D
    P = parameter_count(cfg)
    out = {"parameters": FP32 * P * M, "weights_and_adam": 4 * FP32 * P * M,
           "activations": FP32 * batch * M * sum(saved_per_image(cfg).values()),
           "backward": FP32 * (2 * batch * M * u_hat + M * w),
           "bf16": (2 * P * M + 2 * batch * M * a1) if bf16 else 0}
    out["training"] = out["weights_and_adam"] + out["activations"] + out["backward"] + out["bf16"]
    out["evaluation"] = FP32 * M * (eval_batch * max(2 * a1, 3 * u_hat) + 2 * eval_batch * pix + w) + FP32 * P * M
    out["dataset"] = FP32 * dataset_images * pix + 28 * M * dataset_images
    out["total"] = max(out["training"], out["evaluation"]) + out["dataset"]
    return out


def device_memory(device: torch.device, default_bytes: Optional[int] = None) -> Optional[int]:
    """The device's memory in bytes: CUDA's total; ``default_bytes`` for any other device."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return default_bytes


def fits(estimate_bytes: int, device_bytes: Optional[int], fraction: float = USABLE_FRACTION) -> bool:
    """Whether an estimate fits in ``fraction`` of the device's memory (unknown memory: yes)."""
    return device_bytes is None or estimate_bytes <= fraction * device_bytes
