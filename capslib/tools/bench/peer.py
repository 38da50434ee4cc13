"""A public CapsNet to time ours against: Xifeng Guo's PyTorch CapsNet
(https://github.com/XifengGuo/CapsNet-Pytorch, MIT licence), run from the user's own clone
(``--peer DIR``), never copied into this project.

Its training step as its ``train()`` writes it: ``CapsuleNet(input_size, classes, routings=3)``,
one-hot targets, ``caps_loss`` with ``lam_recon = 0.0005 * 784``, ``torch.optim.Adam`` with
its defaults, in fp32. Two shims let it run here and change none of its arithmetic: its
module-level ``from torchvision import ...`` (unused by the model) gets an empty stand-in
when torchvision cannot be imported, and its routing's one ``.cuda()`` call (the logits
``b``) returns the tensor itself on a CPU.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import time
import types
from pathlib import Path

import torch

from capslib.train.plain import synchronize

LAM_RECON = 0.0005 * 784          # the peer's default --lam_recon
PEER_URL = "https://github.com/XifengGuo/CapsNet-Pytorch"


class PeerNotFound(FileNotFoundError):
    """The folder given is not a clone of the peer."""


def _import_file(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _torchvision_stand_in():
    """An empty ``torchvision`` (with ``transforms`` and ``datasets``) while the peer's
    modules import, where the real one is missing or cannot be imported next to this torch."""
    try:
        importlib.import_module("torchvision")
        yield
        return
    except Exception:     # absent, or built for another torch
        pass
    saved = {k: sys.modules.get(k) for k in ("torchvision", "torchvision.transforms", "torchvision.datasets")}
    tv = types.ModuleType("torchvision")
    tv.transforms, tv.datasets = types.ModuleType("torchvision.transforms"), types.ModuleType("torchvision.datasets")
    sys.modules.update({"torchvision": tv, "torchvision.transforms": tv.transforms, "torchvision.datasets": tv.datasets})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def load_peer(peer_dir: str | Path) -> types.SimpleNamespace:
    """The peer's ``CapsuleNet`` and ``caps_loss`` from a clone at ``peer_dir``."""
    root = Path(peer_dir).expanduser()
    missing = [f for f in ("capsulelayers.py", "capsulenet.py") if not (root / f).is_file()]
    if missing:
        raise PeerNotFound(f"{root} is not a clone of {PEER_URL}: no {', '.join(missing)}")
    with _torchvision_stand_in():
        # capsulenet.py imports its layers as the top-level module ``capsulelayers``
        _import_file("capsulelayers", root / "capsulelayers.py")
        net = _import_file("capsulenet_peer", root / "capsulenet.py")
    return types.SimpleNamespace(CapsuleNet=net.CapsuleNet, caps_loss=net.caps_loss, root=str(root))


@contextlib.contextmanager
def _cuda_call_stays_on(device: torch.device):
    """``Tensor.cuda()`` returns the tensor itself while the peer trains on a CPU."""
    if device.type == "cuda":
        yield
        return
    original = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self
    try:
        yield
    finally:
        torch.Tensor.cuda = original


def time_peer(peer: types.SimpleNamespace, K: int, batch: int, steps: int, warmup: int, device) -> dict:
    """The peer's training steps in fp32: images/s over ``steps`` steps after ``warmup``,
    timed as :func:`capslib.tools.bench.timers.time_plain` times ours (device-synchronized)."""
    device = torch.device(device)
    torch.manual_seed(0)
    model = peer.CapsuleNet(input_size=[1, 28, 28], classes=K, routings=3).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    images = torch.rand((warmup + steps) * batch, 1, 28, 28, generator=g)
    labels = torch.randint(0, K, (len(images),), generator=g)
    model.train()

    def step(i: int) -> None:
        x = images[i * batch:(i + 1) * batch].to(device)
        y = torch.zeros(len(x), K).scatter_(1, labels[i * batch:(i + 1) * batch].view(-1, 1), 1.0).to(device)
        opt.zero_grad()
        y_pred, x_recon = model(x, y)
        loss = peer.caps_loss(y, y_pred, x, x_recon, LAM_RECON)
        loss.backward()
        opt.step()

    with _cuda_call_stays_on(device):
        for i in range(warmup):
            step(i)
        synchronize(device)
        t0 = time.perf_counter()
        for i in range(warmup, warmup + steps):
            step(i)
        synchronize(device)
        seconds = time.perf_counter() - t0
    n = steps * batch
    return {"images": n, "seconds": seconds, "images_per_s": n / seconds, "precision": "fp32"}
