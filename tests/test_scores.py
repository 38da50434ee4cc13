"""Losses, scores and metrics against hand-computed values."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from capslib.model.losses import margin_loss, reconstruction_loss
from capslib.model import scores as S


def test_margin_loss_hand_values():
    lengths = torch.tensor([[0.95, 0.05], [0.5, 0.3]])
    targets = torch.tensor([0, 1])
    # image 0: present 0 (0.95 > 0.9), absent 0 (0.05 < 0.1)
    # image 1: present (0.9-0.3)^2 = 0.36 ; absent 0.5*(0.5-0.1)^2 = 0.08
    assert margin_loss(lengths, targets).item() == pytest.approx((0.0 + 0.44) / 2)


def test_reconstruction_loss_hand_values():
    x = torch.zeros(2, 1, 2, 2)
    r = torch.full_like(x, 0.5)          # squared error 0.25 per pixel, 4 pixels -> 1.0 per image
    assert reconstruction_loss(r, x).item() == pytest.approx(0.0005)
    mask = torch.tensor([1.0, 0.0])      # only image 0 counts, mean over the whole batch
    assert reconstruction_loss(r, x, sample_mask=mask).item() == pytest.approx(0.0005 / 2)


def test_paper_a_scores_hand_values():
    lengths = torch.tensor([[0.9, 0.2], [0.1, 0.8]])
    x = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]], [[[1.0, 1.0], [1.0, 1.0]]]])
    r = torch.tensor([[[[0.5, 0.0], [0.0, 0.0]]], [[[1.0, 1.0], [1.0, 0.0]]]])
    assert torch.allclose(S.length_difference(lengths), torch.tensor([-0.7, 0.7]))
    assert torch.allclose(S.reconstruction_mse(x, r), torch.tensor([0.0625, 0.25]))
    assert torch.allclose(S.anomaly_score(lengths, x, r), torch.tensor([-0.6375, 0.95]))


def test_paper_b_scores_hand_values_and_sign():
    lengths = torch.tensor([[0.2, 0.9, 0.1], [0.3, 0.3, 0.4]])
    assert torch.allclose(S.normality_pp(lengths), torch.tensor([0.9, 0.4]))
    assert torch.allclose(S.pp_score(lengths), -torch.tensor([0.9, 0.4]))
    x = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])      # ||x||^2 = 2
    r = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])      # ||x - r||^2 = 2
    assert S.normality_re(x, r).item() == pytest.approx(-1.0)
    assert S.re_score(x, r).item() == pytest.approx(1.0)


def test_gini_hand_values():
    assert S.gini_coefficient(torch.ones(1, 4)).item() == pytest.approx(0.0)
    assert S.gini_coefficient(torch.tensor([[0.0, 0.0, 0.0, 1.0]])).item() == pytest.approx(0.75)
    # x = (1, 2, 3): sum_i (2i - 4) x_i = -2 + 0 + 6 = 4 ; / (3 * 6)
    assert S.gini_coefficient(torch.tensor([[3.0, 1.0, 2.0]])).item() == pytest.approx(4 / 18)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0.0, 10.0), min_size=2, max_size=30))
def test_gini_in_range_and_scale_invariant(vals):
    x = torch.tensor([vals], dtype=torch.float64)
    if x.sum() == 0:
        return
    g = S.gini_coefficient(x).item()
    n = x.shape[1]
    assert -1e-9 <= g <= (n - 1) / n + 1e-9
    assert S.gini_coefficient(3 * x).item() == pytest.approx(g, abs=1e-9)


def test_logistic_threshold_separable_midpoint():
    scores = np.array([-0.9, -0.8, -0.7, 0.7, 0.8, 0.9])
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert S.logistic_threshold(scores, labels) == pytest.approx(0.0, abs=0.05)
    with pytest.raises(ValueError):
        S.logistic_threshold(scores, np.zeros(6))


def test_logistic_threshold_matches_probability_half():
    rng = np.random.default_rng(0)
    s = np.concatenate([rng.normal(-0.5, 0.3, 200), rng.normal(0.6, 0.3, 50)])
    y = np.r_[np.zeros(200), np.ones(50)]
    t = S.logistic_threshold(s, y)
    from sklearn.linear_model import LogisticRegression
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(s.reshape(-1, 1), y)
    assert lr.predict_proba([[t]])[0, 1] == pytest.approx(0.5, abs=1e-6)


def test_metrics_hand_values():
    s = np.array([0.1, 0.4, 0.35, 0.8])
    y = np.array([0, 0, 1, 1])
    assert S.auroc(s, y) == pytest.approx(0.75)
    assert S.accuracy_at(s, y, 0.3) == pytest.approx(0.75)
    assert S.auprc(s, y) == pytest.approx((1.0 + 2 / 3) / 2)
    m = S.score_metrics(s, y, None)
    assert math.isnan(m["accuracy"]) and m["auroc"] == pytest.approx(0.75)


def test_orient():
    assert S.orient(np.array([0.1, 0.2, 0.9]), np.array([0, 0, 1])) == 1.0
    assert S.orient(np.array([0.9, 0.8, 0.1]), np.array([0, 0, 1])) == -1.0


# ---- paper A's threshold rules ---------------------------------------------------

def _binary_training_set():
    """Scores 0 or 1: normals 80 × 0 and 20 × 1, anomalies 2 × 0 and 8 × 1 (110 images)."""
    s = np.r_[np.zeros(80), np.ones(20), np.zeros(2), np.ones(8)]
    y = np.r_[np.zeros(100), np.ones(10)]
    return s, y


def test_plain_logistic_on_binary_scores_carries_the_prior():
    # a logistic fit on a binary score reproduces the empirical rates: p(x=0) = 2/82, p(x=1) = 8/28,
    # so the logit is ln(2/80) + (ln(8/20) − ln(2/80)) x and crosses 0 at ln 40 / ln 16 > 1
    s, y = _binary_training_set()
    # (within 5e-3: scikit-learn's lbfgs stops at its default tol 1e-4, here 1.3322; tol 1e-8 gives 1.33048)
    assert S.logistic_threshold(s, y) == pytest.approx(math.log(40) / math.log(16), abs=5e-3)
    assert S.accuracy_at(s, y, S.logistic_threshold(s, y)) == pytest.approx(100 / 110)   # all said normal


def test_balanced_logistic_on_binary_scores():
    # weights 110/200 per normal, 110/20 per anomaly: weighted rates 11/55 = 0.2 at x=0 and 44/55 = 0.8
    # at x=1, logit −ln 4 + 2 ln 4 · x, which crosses 0 at x = 0.5
    s, y = _binary_training_set()
    assert S.balanced_logistic_threshold(s, y) == pytest.approx(0.5, abs=1e-3)
    assert S.accuracy_at(s, y, 0.5) == pytest.approx(88 / 110)
    with pytest.raises(ValueError):
        S.balanced_logistic_threshold(s, np.zeros_like(y))


def test_balanced_threshold_between_class_means_on_separable_data():
    normals = np.linspace(-1.0, 0.2, 990)
    anomalies = np.array([0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5])
    s, y = np.r_[normals, anomalies], np.r_[np.zeros(990), np.ones(10)]
    t = S.balanced_logistic_threshold(s, y)
    assert normals.mean() < t < anomalies.mean()
    assert 0.2 < t < 0.6 and S.accuracy_at(s, y, t) == 1.0


def test_oracle_threshold_hand_values():
    s, y = np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])
    # sorted: 0.1 N, 0.35 A, 0.4 N, 0.8 A; 3 of 4 right between 0.1 and 0.35 and between 0.4 and 0.8:
    # the lowest of the tied best, at the midpoint
    assert S.oracle_threshold(s, y) == pytest.approx(0.225)
    assert S.oracle_threshold(np.array([1.0, 2.0]), np.array([1, 1])) == pytest.approx(0.0)   # all anomalous
    assert S.oracle_threshold(np.array([1.0, 2.0]), np.array([0, 0])) == pytest.approx(2.0)   # all normal
    # tied scores move together: 0.5 holds one normal and one anomaly, 0.2 a normal, 0.9 an anomaly
    assert S.oracle_threshold(np.array([0.5, 0.5, 0.2, 0.9]), np.array([0, 1, 0, 1])) == pytest.approx(0.35)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 12), st.booleans()), min_size=2, max_size=40))
def test_oracle_beats_every_rule_and_every_threshold(pairs):
    s = np.array([v / 4 for v, _ in pairs])
    y = np.array([int(b) for _, b in pairs])
    best = S.accuracy_at(s, y, S.oracle_threshold(s, y))
    candidates = np.r_[np.unique(s), np.unique(s) - 0.1, s.min() - 1]
    assert best == pytest.approx(max(S.accuracy_at(s, y, t) for t in candidates))
    if 0 < y.sum() < len(y):
        for name, (fit, _) in S.THRESHOLD_RULES.items():
            assert best >= S.accuracy_at(s, y, fit(s, y)) - 1e-12, name


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.one_of(st.integers(-3, 3).map(float),
                                                        st.floats(-1e3, 1e3, allow_nan=False))),
                min_size=2, max_size=80))
def test_auroc_and_auprc_are_scikit_learns_with_ties(pairs):
    """The rank formula of AUROC, the step sum of average precision and the ROC curve's points
    give scikit-learn's numbers on any scores, ties included (small integers make many)."""
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve
    y = np.array([p[0] for p in pairs])
    x = np.array([p[1] for p in pairs], dtype=np.float32)
    if y.min() == y.max():        # one class: scikit-learn's answer (nan, with its warning) either way
        with pytest.warns(Warning):
            assert math.isnan(S.auroc(x, y))
        return
    assert S.auroc(x, y) == pytest.approx(roc_auc_score(y, x.astype(np.float64)), abs=1e-12)
    assert S.auprc(x, y) == pytest.approx(average_precision_score(y, x.astype(np.float64)), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, x.astype(np.float64), drop_intermediate=False)
    ours = S.roc_points(x, y)
    assert ours[0].shape == fpr.shape and np.allclose(ours[0], fpr, rtol=0, atol=1e-12)
    assert np.allclose(ours[1], tpr, rtol=0, atol=1e-12)


def test_auroc_on_a_hand_built_ranking():
    # anomalies at 0.9, 0.4; normals at 0.5, 0.4, 0.1: of the 6 pairs 4 won, 1 tied (½), 1 lost → 4.5 / 6
    x, y = np.array([0.9, 0.4, 0.5, 0.4, 0.1]), np.array([1, 1, 0, 0, 0])
    assert S.auroc(x, y) == pytest.approx(4.5 / 6)
    # thresholds 0.9 (P 1, R ½), 0.5 (P ½, R ½), 0.4 (P 2/4, R 1), 0.1: AP = ½·1 + 0·½ + ½·½ = 0.75
    assert S.auprc(x, y) == pytest.approx(0.75)
    # from the top: 0.9 (TP 1), 0.5 (FP 1), 0.4 (TP 2, FP 2), 0.1 (FP 3), after (0, 0)
    fpr, tpr = S.roc_points(x, y)
    assert fpr.tolist() == [0, 0, 1 / 3, 2 / 3, 1] and tpr.tolist() == [0, 0.5, 0.5, 1, 1]
    with pytest.raises(ValueError):
        S.auroc(np.array([np.nan, 1.0]), np.array([0, 1]))
