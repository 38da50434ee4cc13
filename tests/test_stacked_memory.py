"""The stacked group's memory estimate (capslib.train.stacked_memory) against what torch holds
on a CPU: the activations autograd keeps, and the peak of a training step and of an
evaluation as torch's profiler measures them."""
import gc

import pytest
import torch

from capslib.model.capsnet import CapsNet, CapsNetConfig, count_parameters
from capslib.train.jobs import EvalRequest
from capslib.train.plain import model_input
from capslib.train.stacked import StackedAdam, StackedCapsNet, stacked_losses
from capslib.train.stacked_eval import evaluate_stacked
from capslib.train.stacked_memory import (device_memory, fits, group_memory, parameter_count,
                                          saved_per_image)
from stacked_helpers import TINY

GIB = 2 ** 30


pytestmark = pytest.mark.usefixtures("one_thread")     # tensors this small: one thread (tests/conftest.py)


def _group(K: int, M: int, B: int):
    torch.manual_seed(0)
    cfg = CapsNetConfig(n_classes=K, **TINY)
    models = [CapsNet(cfg) for _ in range(M)]
    x, y = torch.rand(M, B, 1, 20, 20), torch.randint(0, K, (M, B))
    return cfg, models, x, y


def _peak(prof) -> int:
    """The highest sum of the allocations the profiler saw, in time order."""
    now = peak = 0
    for e in sorted(prof.events(), key=lambda e: e.time_range.start):
        now += e.self_cpu_memory_usage
        peak = max(peak, now)
    return peak


@pytest.mark.parametrize("cfg", [CapsNetConfig(n_classes=2), CapsNetConfig(n_classes=9),
                                 CapsNetConfig(n_classes=9, **TINY)])
def test_parameter_count_is_the_networks(cfg):
    assert parameter_count(cfg) == count_parameters(CapsNet(cfg))


@pytest.mark.parametrize("K", [2, 9])
def test_saved_activations_per_image_are_what_autograd_keeps(K):
    """Every tensor autograd saves for the backward pass (parameters aside), counted once:
    the per-image count of saved_per_image, to within 1%."""
    M, B = 16, 8
    cfg, models, x, y = _group(K, M, B)
    net = StackedCapsNet(models)
    params = {p.untyped_storage().data_ptr() for p in net.parameters()}
    saved = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            saved[s.data_ptr()] = s.nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        lengths, recon, _ = net(model_input(x, True), y)
        stacked_losses(lengths, recon, x, y, torch.ones(M, B), torch.ones(M, B))
    estimate = group_memory(cfg, M, B)["activations"]
    assert 0.99 * estimate <= sum(saved.values()) <= estimate


@pytest.mark.parametrize("K", [2, 9])
def test_estimate_bounds_the_measured_peak_of_training_and_evaluation(K):
    """Two training steps (forward, backward, StackedAdam) and one evaluation chunk under
    torch's profiler: each estimate is at least the measured peak and at most 1.3 times it."""
    from torch.profiler import ProfilerActivity, profile
    M, B = 16, 16
    cfg, models, x, y = _group(K, M, B)
    ones = torch.ones(M, B)
    gc.collect()                                   # nothing made before the window is freed inside it
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        net = StackedCapsNet(models)
        opt = StackedAdam(list(net.parameters()), torch.full((M,), 1e-3), torch.ones(M))
        for _ in range(2):
            lengths, recon, _ = net(model_input(x, True), y)
            stacked_losses(lengths, recon, x, y, ones, ones).sum().backward()
            opt.step(torch.ones(M, dtype=torch.bool))
            for p in net.parameters():
                p.grad = None
    del net, opt, lengths, recon
    gc.collect()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof_eval:
        net = StackedCapsNet(models)
        evaluate_stacked(net, [EvalRequest(x[0], True)] * M, batch_size=B)
    est = group_memory(cfg, M, B, eval_batch=B, dataset_images=0)
    train, evaluation = _peak(prof), _peak(prof_eval)
    assert train <= est["training"] <= 1.3 * train
    assert evaluation <= est["evaluation"] <= 1.3 * evaluation


def test_paper_settings_by_hand():
    """Paper A (K = 2, batch 32) and paper B (K = 9, batch 100) at full size, worked by hand:
    N = 32·6·6 = 1152 primary capsules, A1 = 256·20·20 = 102,400 conv1 outputs."""
    a, b = CapsNetConfig(n_classes=2), CapsNetConfig(n_classes=9)
    # conv1 20,992 + primary 5,308,672 + W 1152·2·16·8 = 294,912 + decoder 16,896 + 525,312 + 803,600
    assert parameter_count(a) == 20_992 + 5_308_672 + 294_912 + 16_896 + 525_312 + 803_600 == 6_970_384
    # 3·784 + 102,400 + 3·9,216 + 4·1,152 + 4·36,864 + 5·2,304 + 11·32 + 18·2 + 1,536
    assert sum(saved_per_image(a).values()) == 297_908
    assert sum(saved_per_image(b).values()) == 2_352 + 102_400 + 32_256 + 4 * 165_888 + 51_840 + 1_746 + 1_536
    e = group_memory(a, 8, 32)
    assert e["weights_and_adam"] == 16 * 6_970_384 * 8
    assert e["activations"] == 4 * 32 * 8 * 297_908
    assert e["backward"] == 4 * (2 * 32 * 8 * 36_864 + 8 * 294_912)
    assert e["evaluation"] == 4 * 8 * (256 * 2 * 102_400 + 2 * 256 * 784 + 294_912) + 4 * 6_970_384 * 8
    assert e["total"] == e["evaluation"] + 4 * 60_000 * 784 + 28 * 8 * 60_000
    big = group_memory(b, 64, 100, bf16=True)["total"]
    assert 38 * GIB < big < 39.5 * GIB                   # paper B, 64 models: fits an H200, not a 40 GiB card
    assert fits(big, 139 * GIB) and not fits(big, 40 * GIB) and fits(big, None)
    assert device_memory(torch.device("cpu"), 5 * GIB) == 5 * GIB and device_memory("cpu") is None
