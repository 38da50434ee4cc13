"""The fast path (capslib.train.stacked, capslib.run.groups) against the plain path: same losses and
gradients, Adam on stacked tensors = independent Adams, same training, same evaluation,
same cells."""
import numpy as np
import pytest
import torch

from capslib.model.capsnet import CapsNet, CapsNetConfig
from capslib.core.config import CellSpec
from capslib.data.datasets import Dataset, norb_crop
from capslib.train.stacked import (PARAM_NAMES, FastOptions, StackedAdam, StackedCapsNet, crop_batch,
    model_batches, stacked_losses, train_stacked)
from capslib.train.stacked_eval import evaluate_stacked
from capslib.run.groups import plan_groups, train_group
from capslib.model.losses import margin_loss, reconstruction_loss
from capslib.study.protocols import RunContext, run_imbalanced_capsnet, run_novelty_capsnet
from capslib.train.jobs import CapsNetJob, EvalRequest
from capslib.run.runner import run_grid, split_for
from capslib.run.store.results import ResultsStore
from capslib.train.plain import TrainSettings, evaluate_capsnet
from stacked_helpers import assert_stacked_trains_as_alone


def _plain_grads(model, x, y, rmask):
    model.zero_grad(set_to_none=True)
    out = model(x, mask=y)
    loss = margin_loss(out.lengths, y) + reconstruction_loss(out.reconstruction, x, sample_mask=rmask)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("K,B", [(2, 4), (9, 2)])
def test_losses_and_gradients_match_plain(K, B):
    torch.manual_seed(K)
    M = 3
    models = [CapsNet(CapsNetConfig(n_classes=K)) for _ in range(M)]
    net = StackedCapsNet(models)
    x = torch.rand(M, B, 1, 28, 28)
    y = torch.randint(0, K, (M, B))
    rmask = (torch.rand(M, B) > 0.3).float()
    valid = torch.ones(M, B)
    valid[2, B - 1] = 0                                 # model 2's batch is one image short (ragged epoch)
    losses = stacked_losses(*net(x, y)[:2], x, y, rmask, valid)
    losses.sum().backward()
    for m, model in enumerate(models):
        n = int(valid[m].sum())
        loss, grads = _plain_grads(model, x[m, :n], y[m, :n], rmask[m, :n])
        assert torch.allclose(losses[m], loss, rtol=1e-5, atol=1e-7)
        for name, g in grads.items():
            fast_g = getattr(net, PARAM_NAMES[name]).grad[m]
            assert torch.allclose(fast_g, g, rtol=1e-4, atol=1e-5 * g.abs().max().item()), name


def test_stacked_adam_matches_independent_adams():
    torch.manual_seed(0)
    M, every = 3, 2
    lrs, decays = [1e-3, 2e-3, 1e-3], [1.0, 0.5, 0.96]
    shapes = [(5, 4), (7,)]
    stacked = [torch.randn(M, *s, requires_grad=True) for s in shapes]
    singles = [[p[m].detach().clone().requires_grad_(True) for p in stacked] for m in range(M)]
    opts = [torch.optim.Adam(ps, lr=lrs[m]) for m, ps in enumerate(singles)]
    scheds = [torch.optim.lr_scheduler.StepLR(o, every, gamma=decays[m]) for m, o in enumerate(opts)]
    adam = StackedAdam(stacked, torch.tensor(lrs), torch.tensor(decays), every=every)
    for step in range(7):
        active = torch.tensor([True, step < 4, step % 2 == 0])    # model 1 finishes early, model 2 skips
        grads = [torch.randn(M, *s) for s in shapes]
        for p, g in zip(stacked, grads):
            p.grad = g.clone()
        adam.step(active)
        for m in range(M):
            if active[m]:
                for p, g in zip(singles[m], grads):
                    p.grad = g[m].clone()
                opts[m].step()
                scheds[m].step()
    for m in range(M):
        for p, q in zip(stacked, singles[m]):
            assert torch.allclose(p[m], q, rtol=1e-6, atol=1e-7)


def test_batches_follow_plain_order_and_crop_matches_norb_crop():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    batches = list(model_batches(10, 4, 2, g1, crop=(48, 32)))
    assert [len(i) for i, _ in batches] == [4, 4, 2, 4, 4, 2]
    x = torch.rand(10, 2, 48, 48)
    for epoch in range(2):                                         # train_capsnet's draws, in its order
        order = torch.randperm(10, generator=g2)
        for b, start in enumerate(range(0, 10, 4)):
            idx, offs = batches[epoch * 3 + b]
            assert torch.equal(idx, order[start:start + 4])
            want = norb_crop(x[idx], 32, g2)
            assert torch.equal(crop_batch(x[idx].unsqueeze(0), offs.unsqueeze(0), 32)[0], want)


@pytest.mark.parametrize("K", [2, 9])
def test_stacked_evaluation_matches_evaluate_capsnet(digits, K):
    """Ragged image sets (several chunks, padding), the longest capsule or a fixed one per
    model, and gallery positions asked out of order: per model, evaluate_capsnet's dict."""
    torch.manual_seed(K)
    models = [CapsNet(CapsNetConfig(n_classes=K)).double() for _ in range(3)]
    x = digits.x_test[:23].double()
    sets = [x[:23], x[3:8], x[10:21]]
    decoders = [None, 0, K - 1]
    keeps = [np.array([20, 1, 7]), None, np.array([9, 0])]
    reqs = [EvalRequest(s, True, d, keep_reconstructions=k) for s, d, k in zip(sets, decoders, keeps)]
    outs = evaluate_stacked(StackedCapsNet(models), reqs, batch_size=4)
    for model, q, out in zip(models, reqs, outs):
        ref = evaluate_capsnet(model, q.images, True, q.decoder_capsule, batch_size=6,
                               keep_reconstructions=q.keep_reconstructions)
        assert out.keys() == ref.keys()
        for k, v in ref.items():
            assert out[k].shape == v.shape, k
            np.testing.assert_allclose(out[k], v, rtol=1e-9, atol=1e-12, err_msg=k)
    # the reconstructions come in the order asked: position 20 first
    only20 = evaluate_capsnet(models[0], sets[0], True, keep_reconstructions=np.array([20]))["reconstructions"]
    np.testing.assert_allclose(outs[0]["reconstructions"][:1], only20, rtol=1e-9, atol=1e-12)


def _tiny_job(seed, n, x, y, recon_mask, epochs=2, batch=2):
    torch.manual_seed(seed)
    model = CapsNet(CapsNetConfig(n_classes=2)).double()   # float64: Adam would amplify fp32 rounding
    idx = np.arange(n) * 3 % len(x)
    return CapsNetJob(model, idx, y[idx], TrainSettings(epochs, batch, standardize=True, lr_decay=0.5),
                      torch.Generator().manual_seed(seed), decoder_mask=torch.zeros(n, dtype=torch.long),
                      recon_mask=None if recon_mask is None else recon_mask[idx], name=f"m{seed}")


@pytest.mark.slow
def test_training_matches_plain_with_ragged_epochs(digits, monkeypatch):
    monkeypatch.setattr("capslib.train.stacked.DECAY_EVERY", 3)            # exercise the per-model lr decay
    monkeypatch.setattr("capslib.train.plain.DECAY_EVERY", 3)
    x, y = digits.x_train[:20].double(), (digits.y_train[:20] == 3).long()
    sizes = (3, 1, 2)                                              # 2, 1 and 1 steps per epoch of 2
    jobs = [_tiny_job(s, n, x, y, (y == 0).float() if s else None) for s, n in enumerate(sizes)]
    ref = [_tiny_job(s, n, x, y, (y == 0).float() if s else None) for s, n in enumerate(sizes)]
    assert_stacked_trains_as_alone(jobs, ref, x)


def _small_digits(digits, n_train):
    """A few real digits, so both paths train and score in seconds."""
    return Dataset("digits", digits.x_train[:n_train], digits.y_train[:n_train], digits.x_test[:40], digits.y_test[:40])


@pytest.mark.parametrize("protocol", ["imbalanced", "novelty"])
def test_group_results_match_plain_cells(digits, protocol):
    if protocol == "imbalanced":                                  # two training-set sizes: ragged
        data = _small_digits(digits, 100)
        specs = [CellSpec("imbalanced", "digits", variant=v, normal_class=1, anomaly_fraction=f, seed=s,
                          epochs=1, batch_size=8) for v, f, s in [("standard", 0.1, 0), ("proposed", 0.2, 1)]]
        plain_fn = run_imbalanced_capsnet
    else:
        data = _small_digits(digits, 24)
        specs = [CellSpec("novelty", "digits", held_out=(h,), seed=0, epochs=1, batch_size=8) for h in (2, 9)]
        plain_fn = run_novelty_capsnet
    assert len(plan_groups(specs, 8)) == 1
    splits = [split_for(s.resolved(), data) for s in specs]
    fast = train_group(specs, data, splits, torch.device("cpu"))
    for spec, split, res in zip(specs, splits, fast):
        ref = plain_fn(spec.resolved(), data, split, RunContext(torch.device("cpu")))
        assert res.scores.keys() == ref.scores.keys() and res.thresholds.keys() == ref.thresholds.keys()
        assert set(ref.info) <= set(res.info) and res.info["fast_path"]["group_size"] == len(specs)
        np.testing.assert_array_equal(res.test_labels, ref.test_labels)
        for k, v in ref.scores.items():
            np.testing.assert_allclose(res.scores[k], v, rtol=1e-3, atol=1e-4, err_msg=k)
        for k, v in ref.thresholds.items():
            assert (v is None) == (res.thresholds[k] is None)
        assert res.arrays.keys() == ref.arrays.keys()
        for k, v in ref.arrays.items():
            assert res.arrays[k].shape == v.shape and res.arrays[k].dtype == v.dtype, k
            if v.dtype == np.uint8:                                # images: rounding may flip a level
                assert np.abs(res.arrays[k].astype(int) - v.astype(int)).max() <= 1, k
            else:
                np.testing.assert_allclose(res.arrays[k], v, rtol=1e-3, atol=1e-4, err_msg=k)


@pytest.mark.slow
def test_run_grid_fast_writes_same_cells_as_plain(tmp_path, tiny_splits):
    """run_grid on the real digits, fast vs plain; the splits are cut short (both paths)
    to keep the test quick."""
    cells = [CellSpec("imbalanced", "digits", variant=v, normal_class=1, anomaly_fraction=0.1, seed=0, epochs=1)
             for v in ("standard", "proposed")]
    stores = {}
    for fast in (False, True):
        stores[fast] = ResultsStore(tmp_path / str(fast), "t")
        rep = run_grid(cells, stores[fast], device="cpu", show_progress=False, fast=fast, precision="fp32")
        assert sorted(rep["ran"]) == sorted(c.cell_id for c in cells) and not rep["failed"]
    assert stores[True].finished_ids() == stores[False].finished_ids()
    rows = {f: sorted((r["cell_id"], r["score"]) for r in s.rows()) for f, s in stores.items()}
    assert rows[True] == rows[False]
    for c in cells:
        a, b = stores[True].load_arrays(c), stores[False].load_arrays(c)
        assert a.keys() == b.keys()
        np.testing.assert_allclose(a["score_anomaly_score"], b["score_anomaly_score"], rtol=1e-3, atol=1e-4)
    assert (stores[True].cell_dir(cells[0]) / "cell.json").exists()
    rerun = run_grid(cells, stores[True], device="cpu", show_progress=False, fast=True)
    assert rerun["ran"] == [] and len(rerun["skipped"]) == 2


def _two_short_trainings(options: FastOptions = FastOptions()) -> list[dict]:
    """Two CapsNets stacked, one epoch of 64 random images in batches of 16, with ``options``."""
    x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    jobs = [CapsNetJob(CapsNet(CapsNetConfig(n_classes=2)).requires_grad_(), np.arange(64), torch.arange(64) % 2,
                       TrainSettings(1, 16, standardize=True), torch.Generator().manual_seed(m)) for m in range(2)]
    return train_stacked(jobs, x, torch.device("cpu"), options)


@pytest.fixture(scope="module")
def plain_fp32_trainings():
    """:func:`_two_short_trainings` in plain fp32, once for the tests of the GPU switches."""
    torch.manual_seed(0)
    return _two_short_trainings()


@pytest.mark.slow
@pytest.mark.parametrize("options,rel", [(FastOptions(bf16=True, channels_last=True), 2e-2),
                                         (FastOptions(compile=True, compile_backend="aot_eager"), 1e-5)])
def test_gpu_options_run_on_cpu_and_keep_the_losses(options, rel, monkeypatch, plain_fp32_trainings):
    """The GPU switches (bf16 autocast, channels-last, torch.compile) run through the same
    code on a CPU: the final losses of two short trainings stay those of plain fp32 (bf16
    to its ~3 significant digits). torch.compile traces and differentiates the step as on a
    GPU; the code it then generates is the device's own (Triton there, C++ here), so the
    CPU's generator is left out (backend aot_eager: seconds instead of a minute on a cold
    cache) and the GPU's is what the window's pick times and checks on the device."""
    backends, compile_ = [], torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: backends.append(kw["backend"]) or compile_(fn, **kw))
    torch.manual_seed(0)
    got = _two_short_trainings(options)
    for a, b in zip(got, plain_fp32_trainings):
        assert np.isfinite(a["final_loss"]) and a["final_loss"] == pytest.approx(b["final_loss"], rel=rel)
    assert backends == (["aot_eager"] if options.compile else [])


def test_fastcheck_verdict_compares_the_difference_with_the_seed_spread():
    from capslib.tools.fastcheck import compare
    row = lambda cid, seed, score, auroc: {"cell_id": cid, "seed": seed, "score": score, "auroc": auroc}
    plain = [row("a-s0-e1", 0, "pp", 0.80), row("a-s1-e1", 1, "pp", 0.90),
             row("a-s0-e1", 0, "re", 0.70), row("a-s1-e1", 1, "re", 0.70)]
    fast = [row("a-s0-e1", 0, "pp", 0.81), row("a-s1-e1", 1, "pp", 0.90),
            row("a-s0-e1", 0, "re", 0.75), row("a-s1-e1", 1, "re", 0.70)]
    table, verdict = compare({"fast": fast, "plain": plain})
    assert table["diff"].round(6).tolist() == [0.01, 0.05, 0.0, 0.0]
    v = verdict.set_index("score")
    assert v.at["pp", "seed_std"] == pytest.approx(0.1 / 2 ** 0.5) and bool(v.at["pp", "agrees"])
    assert v.at["re", "seed_std"] == 0 and not bool(v.at["re", "agrees"])    # no spread: any difference counts


def test_groups_keep_the_priority_order():
    """A fast-path group stands where its first cell is: on the paper profile, paper B's MNIST
    case studies first, and Fashion-MNIST seed 0 before MNIST seed 1 (each group fills with the
    next cells of its key)."""
    from capslib.study.profiles import prioritized, profile_grid, stage_of
    cells = [c for c in prioritized(profile_grid("paper").cells(), "paper") if c.resolved().method == "capsnet"]
    groups = plan_groups(cells, 8)
    assert sorted(c.cell_id for g in groups for c in g) == sorted(c.cell_id for c in cells)
    assert all(len(g) <= 8 and len({c.resolved().dataset for c in g}) == 1 for g in groups)
    stages = [stage_of(g[0], "paper") for g in groups]
    assert stages == sorted(stages)
    firsts = [(g[0].resolved().dataset, g[0].seed, g[0].protocol) for g in groups]
    assert firsts.index(("fashion", 0, "imbalanced")) < firsts.index(("mnist", 1, "imbalanced"))
    assert groups[0][0].protocol == "novelty" and groups[0][0].held_out == (2,)
    a = next(i for i, g in enumerate(groups) if g[0].protocol == "imbalanced")
    mnist0 = [c for c in cells if c.protocol == "imbalanced" and c.dataset == "mnist" and c.seed == 0]
    assert groups[a:a + 5] == [mnist0[i:i + 8] for i in range(0, 40, 8)]   # MNIST seed 0: 40 CapsNets in 5 groups


def test_fast_plan_places_references_among_the_groups(digits, tmp_path):
    """With ``fast``, the CNN / Deep SAD cells of a class are trained where the priority puts
    them, not after every CapsNet of the grid."""
    from capslib.run.runner import GroupUnit, plan
    from capslib.study.profiles import prioritized, profile_grid
    cells = prioritized(profile_grid("quick").cells(), "quick")
    units = plan(cells, ResultsStore(tmp_path, "quick"), {"digits": digits}, "fp32", fast=True)
    order = [u.specs[0] if isinstance(u, GroupUnit) else u.spec for u in units]
    position = {c.cell_id: i for i, c in enumerate(cells)}
    assert [position[s.cell_id] for s in order] == sorted(position[s.cell_id] for s in order)
    kinds = [("group" if isinstance(u, GroupUnit) else s.resolved().method, s.protocol) for u, s in zip(units, order)]
    assert kinds[:2] == [("group", "imbalanced")] * 2                        # paper A's 12 CapsNets: 8 + 4
    assert kinds.index(("cnn", "imbalanced")) < kinds.index(("group", "novelty"))   # its references before paper B


def test_conv1_fp32_gives_the_fast_path_the_plain_paths_conv1_precision():
    """Under bf16 the plain path keeps conv1 in fp32; the fast path's ``conv1_fp32`` does the same,
    and brings its conv1 gradient from bf16 rounding to the plain path's distance from fp32."""
    from capslib.model.capsnet import CapsNet, CapsNetConfig
    from capslib.train.stacked import stacked_losses
    torch.manual_seed(0)
    model = CapsNet(CapsNetConfig(n_classes=2))
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 2, (16,))
    ones = torch.ones(1, 16)

    def fast_grad(bf16: bool, conv1_fp32: bool) -> torch.Tensor:
        net = StackedCapsNet([model])
        net.bf16, net.conv1_fp32 = bf16, conv1_fp32
        lengths, recon, _ = net(x.unsqueeze(0), y.unsqueeze(0))
        stacked_losses(lengths, recon, x.unsqueeze(0), y.unsqueeze(0), ones, ones).sum().backward()
        return net.conv1_w.grad[0]

    def plain_grad() -> torch.Tensor:
        m = CapsNet(CapsNetConfig(n_classes=2))
        m.load_state_dict(model.state_dict())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            _, lengths, recon, _ = m(x, y)
        fast_like = stacked_losses(lengths.unsqueeze(0).float(), recon.unsqueeze(0).float(), x.unsqueeze(0),
                                   y.unsqueeze(0), ones, ones)
        fast_like.sum().backward()
        return m.conv1.weight.grad

    ref = fast_grad(False, False)
    off = lambda g: ((g - ref).norm() / ref.norm()).item()
    bf16, fp32_conv1, plain = off(fast_grad(True, False)), off(fast_grad(True, True)), off(plain_grad())
    assert fp32_conv1 < bf16
    assert fp32_conv1 == pytest.approx(plain, rel=0.5, abs=1e-4)
