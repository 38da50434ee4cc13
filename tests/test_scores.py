"""Losses, scores and metrics against hand-computed values."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from capslib.losses import margin_loss, reconstruction_loss
from capslib import scores as S


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
