"""Large stacked groups (the GPU window's 16 and 32 models) on shrunken CapsNets: every model of
the group computes the losses and gradients it computes alone, for paper A (K = 2) and
paper B (K = 9); the per-protocol group sizes reach the plan and the command line."""
import numpy as np
import pytest
import torch

from capslib.model.capsnet import CapsNet, CapsNetConfig
from capslib.model.losses import margin_loss, reconstruction_loss
from capslib.train.jobs import CapsNetJob
from capslib.train.plain import TrainSettings, model_input
from capslib.train.stacked import PARAM_NAMES, StackedAdam, StackedCapsNet, stacked_losses
from stacked_helpers import TINY, assert_stacked_trains_as_alone

# float32 tolerances: a model's loss to 1e-6 relative (a few ulps; measured <= 8e-8), each
# gradient tensor to 5e-6 of its largest entry (measured <= 1e-6): the group sums in another
# order (one grouped convolution, batched matmuls) than the model alone
LOSS_RTOL, GRAD_TOL = 1e-6, 5e-6


pytestmark = pytest.mark.usefixtures("one_thread")     # tensors this small: one thread (tests/conftest.py)


def _batch(K: int, G: int, B: int, gen: torch.Generator):
    """Per model its own images and classes; paper A's odd models are *proposed* (decoder
    from capsule 0, reconstruction of normal images only); two models with short batches."""
    x = torch.rand(G, B, 1, 20, 20, generator=gen)
    y = torch.randint(0, K, (G, B), generator=gen)
    if K == 2:
        proposed = (torch.arange(G) % 2 == 1).view(-1, 1)
        dmask = torch.where(proposed, torch.zeros_like(y), y)
        rmask = torch.where(proposed, (y == 0).float(), torch.ones(G, B))
    else:
        dmask, rmask = y, torch.ones(G, B)
    valid = torch.ones(G, B)
    valid[1, 1:] = 0                                   # a model with one image left in its epoch
    valid[G - 1, B - 2:] = 0                           # and one two images short
    return x, y, dmask, rmask, valid


@pytest.mark.parametrize("K,G", [(2, 16), (2, 32), (9, 16), (9, 32)])
def test_each_model_of_a_large_group_computes_what_it_computes_alone(K, G):
    """Two steps (a StackedAdam step between them, the weights copied back to the lone
    models): per model the stacked loss and the gradient of every parameter equal the lone
    CapsNet's plain loss (margin + reconstruction) and gradients."""
    torch.manual_seed(K * G)
    gen = torch.Generator().manual_seed(1)
    standardize = K == 2                               # paper A standardizes its inputs, paper B does not
    models = [CapsNet(CapsNetConfig(n_classes=K, **TINY)) for _ in range(G)]
    net = StackedCapsNet(models)
    opt = StackedAdam(list(net.parameters()), torch.full((G,), 1e-3), torch.ones(G))
    for step in range(2):
        x, y, dmask, rmask, valid = _batch(K, G, 6, gen)
        lengths, recon, _ = net(model_input(x, standardize), dmask)
        losses = stacked_losses(lengths, recon, x, y, rmask, valid)
        losses.sum().backward()
        for m, model in enumerate(models):
            n = int(valid[m].sum())
            model.zero_grad(set_to_none=True)
            out = model(model_input(x[m, :n], standardize), mask=dmask[m, :n])
            alone = margin_loss(out.lengths, y[m, :n]) + reconstruction_loss(out.reconstruction, x[m, :n],
                                                                             sample_mask=rmask[m, :n])
            alone.backward()
            assert losses[m].item() == pytest.approx(alone.item(), rel=LOSS_RTOL), (step, m)
            for name, p in model.named_parameters():
                g = getattr(net, PARAM_NAMES[name]).grad[m]
                assert (g - p.grad).abs().max() <= GRAD_TOL * p.grad.abs().max(), (step, m, name)
        opt.step(torch.ones(G, dtype=torch.bool))
        for p in net.parameters():
            p.grad = None
        net.unstack_into(models)


def _jobs(K: int, G: int, x: torch.Tensor, y: torch.Tensor):
    """G float64 jobs of ragged training sets (5..8 images, batch 4), paper A's odd ones proposed."""
    jobs = []
    for m in range(G):
        torch.manual_seed(m)
        model = CapsNet(CapsNetConfig(n_classes=K, **TINY)).double()
        idx = (np.arange(5 + m % 4) * (m + 1)) % len(x)
        t = y[idx] % K
        proposed = K == 2 and m % 2 == 1
        jobs.append(CapsNetJob(model, idx, t, TrainSettings(2, 4, standardize=K == 2, lr_decay=0.5),
                               torch.Generator().manual_seed(m),
                               decoder_mask=torch.zeros_like(t) if proposed else None,
                               recon_mask=(t == 0).double() if proposed else None))
    return jobs


@pytest.mark.parametrize("K,G", [(2, 32), (9, 16)])
def test_training_a_large_group_equals_training_each_model_alone(K, G, monkeypatch):
    """train_stacked on G models against train_capsnet on each (float64: Adam would amplify
    float32 rounding): the same last loss and the same weights, model by model. One Adam step
    moves a weight by about lr = 1e-3, so a wrong batch, mask, step count or learning rate
    shows far above the tolerances (measured differences: 1e-8 relative on the loss)."""
    monkeypatch.setattr("capslib.train.stacked.DECAY_EVERY", 2)            # the per-model lr decay acts
    monkeypatch.setattr("capslib.train.plain.DECAY_EVERY", 2)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(40, 1, 20, 20, generator=gen).double(), torch.randint(0, 9, (40,), generator=gen)
    assert_stacked_trains_as_alone(_jobs(K, G, x, y), _jobs(K, G, x, y), x)


def test_group_sizes_per_protocol_keep_the_priority_order():
    """The paper profile's CapsNets with paper A's groups of 32 and paper B's of 16: paper B's
    cells are grouped too (K = 9 and the K = 7 case study apart), no group passes its
    protocol's size, and the groups keep the priority's order."""
    from capslib.run.groups import group_key, plan_groups
    from capslib.study.profiles import prioritized, profile_grid, stage_of
    cells = [c for c in prioritized(profile_grid("paper").cells(), "paper") if c.resolved().method == "capsnet"]
    groups = plan_groups(cells, {"imbalanced": 32, "novelty": 16})
    assert sorted(c.cell_id for g in groups for c in g) == sorted(c.cell_id for c in cells)
    for g in groups:
        assert len({group_key(c) for c in g}) == 1
        assert len(g) <= (32 if g[0].protocol == "imbalanced" else 16)
    stages = [stage_of(g[0], "paper") for g in groups]
    assert stages == sorted(stages)
    first = groups[0]
    assert [c.held_out for c in first[:2]] == [(2,), (9,)] and group_key(first[0])[2] == 9   # paper B first
    assert len(first) == 16 and all(c.resolved().batch_size == 100 for c in first)
    assert any(group_key(g[0])[2] == 7 for g in groups)                                   # held out {0, 3, 5}
    assert max(len(g) for g in groups if g[0].protocol == "imbalanced") == 32
    default_a = [g for g in plan_groups(cells, {"novelty": 16}) if g[0].protocol == "imbalanced"]
    assert max(map(len, default_a)) == 8                                  # a protocol left out: groups of 8


def test_group_size_option():
    import argparse
    from capslib.cli.grid import group_size_arg
    from capslib.cli.main import build_parser
    assert build_parser().parse_args(["run", "--group-size", "imbalanced=32,novelty=16"]).group_size == \
        {"imbalanced": 32, "novelty": 16}
    assert build_parser().parse_args(["run", "--group-size", "16"]).group_size == 16
    assert build_parser().parse_args(["run"]).group_size == 8
    for bad, why in [("imbalanced=0", "must be >= 1"), ("papera=8", "unknown protocol 'papera'"),
                     ("eight", "neither a whole number")]:
        with pytest.raises(argparse.ArgumentTypeError, match=why):
            group_size_arg(bad)
