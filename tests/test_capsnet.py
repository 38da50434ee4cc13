"""The network: exact values on hand-built tensors, routing invariants, parameter count."""

import pytest
import torch
from hypothesis import given, settings, strategies as st

from capslib.model.capsnet import CapsNet, CapsNetConfig, count_parameters, dynamic_routing, squash


def test_squash_hand_values():
    s = torch.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])
    v = squash(s)
    # |s| = 5: |v| = 25/26, direction (0.6, 0.8)
    assert torch.allclose(v[0], torch.tensor([0.6, 0.8]) * 25 / 26, atol=1e-6)
    assert torch.equal(v[1], torch.zeros(2))          # no NaN at s = 0
    assert torch.allclose(v[2], torch.tensor([0.5, 0.0]), atol=1e-6)   # |s| = 1 -> 1/2


def test_squash_gradient_finite_at_zero():
    s = torch.zeros(3, 8, requires_grad=True)
    squash(s).sum().backward()
    assert torch.isfinite(s.grad).all()


@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 3), N=st.integers(1, 12), K=st.integers(2, 5), scale=st.floats(0.01, 10.0),
       seed=st.integers(0, 10_000))
def test_routing_invariants(B, N, K, scale, seed):
    g = torch.Generator().manual_seed(seed)
    u_hat = scale * torch.randn(B, N, K, 16, generator=g)
    v, c = dynamic_routing(u_hat, 3)
    assert v.shape == (B, K, 16) and c.shape == (B, N, K)
    assert torch.allclose(c.sum(dim=2), torch.ones(B, N), atol=1e-5)   # couplings sum to 1 over classes
    assert (c >= 0).all()
    lengths = v.norm(dim=-1)
    assert (lengths >= 0).all() and (lengths < 1).all()


def test_routing_one_iteration_is_uniform_average():
    u_hat = torch.randn(2, 5, 3, 16)
    v, c = dynamic_routing(u_hat, 1)
    assert torch.allclose(c, torch.full_like(c, 1 / 3))
    assert torch.allclose(v, squash(u_hat.mean(1) * 5 / 3), atol=1e-6)


def test_routing_agreement_raises_coupling():
    # input capsule 0 predicts the same vector as everyone else for class 0, opposite for class 1
    u_hat = torch.zeros(1, 4, 2, 16)
    u_hat[0, :, 0, 0] = 1.0
    u_hat[0, :3, 1, 0] = 1.0
    u_hat[0, 3, 1, 0] = -1.0
    _, c = dynamic_routing(u_hat, 3)
    assert c[0, 3, 0] > 0.5 > c[0, 3, 1]


def test_parameter_count_mnist_k10():
    m = CapsNet(CapsNetConfig(n_classes=10))
    assert count_parameters(m) == 8_215_568
    assert count_parameters(m, include_decoder=False) == 6_804_224


@pytest.mark.parametrize("cfg,n_primary", [(CapsNetConfig(n_classes=2), 1152),
                                           (CapsNetConfig(n_classes=4, in_channels=2, image_size=32), 2048)])
def test_forward_shapes(cfg, n_primary):
    assert cfg.n_primary == n_primary
    m = CapsNet(cfg)
    x = torch.rand(3, cfg.in_channels, cfg.image_size, cfg.image_size)
    out = m(x)
    K = cfg.n_classes
    assert out.capsules.shape == (3, K, 16)
    assert out.lengths.shape == (3, K)
    assert out.reconstruction.shape == x.shape
    assert out.couplings.shape == (3, n_primary, K)
    assert (out.reconstruction >= 0).all() and (out.reconstruction <= 1).all()


def test_decoder_mask_zeroes_other_capsules():
    torch.manual_seed(0)
    m = CapsNet(CapsNetConfig(n_classes=3)).eval()
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        out = m(x)
        longest = out.lengths.argmax(1)
        assert torch.allclose(out.reconstruction, m.decode(out.capsules, longest))
        # the decoder sees only the kept capsule: changing another capsule changes nothing
        other = (longest + 1) % 3
        caps2 = out.capsules.clone()
        caps2[torch.arange(2), other] += 5.0
        assert torch.allclose(m.decode(caps2, longest), out.reconstruction)
        forced = m(x, mask=torch.tensor([2, 2]))
        assert torch.allclose(forced.reconstruction, m.decode(out.capsules, torch.tensor([2, 2])))


def test_training_adam_is_fused_reproducible_and_the_per_parameter_loop_up_to_rounding(monkeypatch):
    """The training loop's Adam runs fused (one kernel over all tensors): two trainings give
    the same weights bit for bit, and they equal those of the per-parameter loop that
    trained the earlier cells up to float32 rounding."""
    import capslib.train.plain as train
    adam = torch.optim.Adam
    made = []

    def trained(**options):
        def make(*a, **k):
            made.append({key: k.get(key) for key in ("fused", "foreach")})
            return adam(*a, **{**{key: v for key, v in k.items() if key not in ("fused", "foreach")}, **options})
        if options:
            monkeypatch.setattr(train.torch.optim, "Adam", make)
        torch.manual_seed(0)
        model = CapsNet(CapsNetConfig(n_classes=2, decoder_hidden=(32, 64)))
        g = torch.Generator().manual_seed(1)
        x, y = torch.rand(24, 1, 28, 28, generator=g), torch.randint(0, 2, (24,), generator=g)
        train.train_capsnet(model, x, y, train.TrainSettings(epochs=2, batch_size=8, lr_decay=0.9),
                            torch.Generator().manual_seed(2))
        monkeypatch.setattr(train.torch.optim, "Adam", adam)
        return [p.detach().clone() for p in model.parameters()]

    fused, again = trained(), trained()
    loop = trained(foreach=False, fused=False)
    assert made == [{"fused": True, "foreach": None}]        # the training loop asks for the fused kernel
    for a, b, c in zip(fused, again, loop):
        assert torch.equal(a, b)
        # 6 steps of lr 1e-3 move a weight by up to 6e-3; rounding differences stay near fp32's epsilon
        assert torch.allclose(a, c, rtol=0, atol=1e-6), (a - c).abs().max()
