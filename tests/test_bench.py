"""The benchmark's harness: interleaved timers, and the peer loaded from a clone that the
user gives (here a stand-in folder with the peer's two files and its interface)."""
from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from capslib.tools.bench.peer import PeerNotFound, load_peer, time_peer
from capslib.tools.bench.timers import time_interleaved

# the peer's interface (CapsuleNet(input_size, classes, routings), caps_loss), its module-level
# torchvision import and its .cuda() call in the layers, on a network small enough for a test
LAYERS = """
    import torch
    import torch.nn as nn

    class DenseCapsule(nn.Module):
        def __init__(self, n_in, classes):
            super().__init__()
            self.weight = nn.Parameter(0.01 * torch.randn(n_in, classes * 4))

        def forward(self, x):
            b = torch.zeros(x.size(0), 1).cuda()          # as the peer's routing logits
            return (x.flatten(1) @ self.weight + b).view(x.size(0), -1, 4)
"""
NET = """
    import torch
    from torch import nn
    from torchvision import transforms, datasets
    from capsulelayers import DenseCapsule

    class CapsuleNet(nn.Module):
        def __init__(self, input_size, classes, routings):
            super().__init__()
            self.input_size, self.classes = input_size, classes
            self.digitcaps = DenseCapsule(input_size[1] * input_size[2], classes)
            self.decoder = nn.Sequential(nn.Linear(4 * classes, input_size[1] * input_size[2]), nn.Sigmoid())

        def forward(self, x, y=None):
            v = self.digitcaps(x)
            length = v.norm(dim=-1)
            return length, self.decoder((v * y[:, :, None]).flatten(1)).view(-1, *self.input_size)

    def caps_loss(y_true, y_pred, x, x_recon, lam_recon):
        L = y_true * torch.clamp(0.9 - y_pred, min=0.) ** 2 + 0.5 * (1 - y_true) * torch.clamp(y_pred - 0.1, min=0.) ** 2
        return L.sum(dim=1).mean() + lam_recon * nn.MSELoss()(x_recon, x)
"""


@pytest.fixture
def peer_clone(tmp_path):
    (tmp_path / "capsulelayers.py").write_text(textwrap.dedent(LAYERS))
    (tmp_path / "capsulenet.py").write_text(textwrap.dedent(NET))
    return tmp_path


def test_the_peer_trains_on_a_cpu_and_leaves_torch_as_it_was(peer_clone):
    cuda, had_torchvision = torch.Tensor.cuda, "torchvision" in sys.modules
    peer = load_peer(peer_clone)
    r = time_peer(peer, K=3, batch=4, steps=2, warmup=1, device="cpu")
    assert r["images"] == 8 and r["seconds"] > 0 and r["images_per_s"] == pytest.approx(8 / r["seconds"])
    assert r["precision"] == "fp32"
    assert torch.Tensor.cuda is cuda                         # the CPU shim is undone
    assert ("torchvision" in sys.modules) == had_torchvision   # so is the stand-in, where one was needed
    with pytest.raises(Exception):
        torch.zeros(1).cuda()                                # a CPU build still refuses CUDA


def test_a_folder_without_the_peer_is_refused_in_one_line(tmp_path):
    (tmp_path / "capsulenet.py").write_text("")
    with pytest.raises(PeerNotFound) as e:
        load_peer(tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "capsulelayers.py" in msg and "XifengGuo/CapsNet-Pytorch" in msg


def test_timers_run_interleaved_and_keep_the_best_the_median_and_every_try():
    calls, speeds = [], {"a": iter([10.0, 30.0, 20.0]), "b": iter([5.0, 1.0, 3.0])}

    def timer(name):
        def run():
            calls.append(name)
            return {"images_per_s": next(speeds[name]), "try": len(calls)}
        return run

    r = time_interleaved({"a": timer("a"), "b": timer("b")}, repeats=3)
    assert calls == ["a", "b", "a", "b", "a", "b"]
    assert r["a"]["images_per_s"] == 30.0 and r["a"]["try"] == 3 and r["a"]["median_images_per_s"] == 20.0
    assert r["b"]["images_per_s"] == 5.0 and r["b"]["median_images_per_s"] == 3.0
    assert r["a"]["tries_images_per_s"] == [10.0, 30.0, 20.0]


def test_routing_is_timed_in_both_precisions():
    from capslib.tools.bench.timers import time_routing
    r = time_routing(K=2, batch=2, device="cpu", reps=1)
    assert set(r) == {"fp32_ms", "bf16_ms"} and all(v > 0 for v in r.values())


def test_a_timed_call_keeps_the_fastest_of_the_timed_calls_after_the_untimed_ones(monkeypatch):
    from capslib.tools.bench import timers
    clock, calls = iter([0.0, 5.0, 10.0, 12.0, 20.0, 23.0]), []     # timed calls take 5, 2, 3 s
    monkeypatch.setattr(timers.time, "perf_counter", lambda: next(clock))
    best = timers._best_seconds(lambda: calls.append(1), torch.device("cpu"), reps=3, untimed=2)
    assert best == 2.0 and len(calls) == 5


def test_adam_is_timed_in_its_three_forms():
    from capslib.tools.bench.timers import time_adam
    r = time_adam(K=2, device=torch.device("cpu"), reps=1)
    assert set(r) == {"loop_ms", "foreach_ms", "fused_ms"} and all(v > 0 for v in r.values())
