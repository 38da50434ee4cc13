"""Paper A's threshold rules on a hand-built store (capslib.views.thresholds)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from capslib.study import paper_numbers as pn
from capslib.views import report, thresholds as T
from capslib.core.config import CellSpec
from capslib.model.scores import accuracy_at, logistic_threshold
from capslib.run.store.results import ResultsStore
from capslib.run.store.schema import result_rows

PROV = {"commit": "abc123", "device": "cpu (test)", "torch": "x", "finished_utc": "2026-01-01T00:00:00Z"}
# test set: 4 normals then 4 anomalies, sorted -0.5 N, -0.2 N, 0.1 N, 0.3 A, 0.6 N, 0.7 A, 0.8 A, 0.9 A:
# 7 of 8 right between 0.1 and 0.3 and between 0.6 and 0.7, no score near the rules' thresholds
TEST_S = np.array([-0.5, -0.2, 0.1, 0.6, 0.3, 0.7, 0.8, 0.9], dtype=np.float32)
TEST_Y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
# training: the binary set of test_scores (plain threshold ln 40 / ln 16 ≈ 1.33, balanced 0.5)
TRAIN_S = np.r_[np.zeros(80), np.ones(20), np.zeros(2), np.ones(8)].astype(np.float32)
TRAIN_Y = np.r_[np.zeros(100), np.ones(10)].astype(np.int64)


def _write(store, c, seed, shift=0.0, with_train=True):
    spec = CellSpec("imbalanced", "mnist", "capsnet", "proposed", normal_class=c, anomaly_fraction=0.1, seed=seed, epochs=1)
    s = TEST_S + np.float32(shift)
    thr = logistic_threshold(TRAIN_S, TRAIN_Y)
    res = SimpleNamespace(test_labels=TEST_Y, scores={"anomaly_score": s}, thresholds={"anomaly_score": thr},
                          train_seconds=1.0)
    arrays = {"test_labels": TEST_Y, "score_anomaly_score": s}
    if with_train:
        arrays.update(train_anomaly_score=TRAIN_S, train_labels=TRAIN_Y)
    store.write_cell(spec, result_rows(spec, res, PROV), arrays, PROV)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    st = ResultsStore(tmp_path_factory.mktemp("thr"), "t")
    _write(st, 0, 0)
    _write(st, 0, 1, shift=0.25)   # moves the anomaly 0.3 over the balanced threshold 0.5
    _write(st, 1, 0)
    _write(st, 2, 0, with_train=False)
    return st


@pytest.fixture(scope="module")
def long(store):
    return T.rule_long(store, report.load_rows(store.root, store.profile))


def test_rule_long_per_cell(long):
    assert set(long["cell_id"].str.contains("-n2-")) == {False}        # the cell without training scores
    assert long.attrs["lacking"] == ["imbalanced-mnist-capsnet-proposed-n2-f0.1-s0-e1-b32"]
    assert "1 proposed cell(s) stored no training scores" in T.lacking_note(long)
    c0 = long[(long["normal_class"] == 0) & (long["seed"] == 0)].set_index("rule")
    # plain ≈ 1.33: everything normal, 4 of 8; balanced 0.5: 0.6 N and 0.3 A wrong, 6 of 8; oracle: the
    # lower of the two best gaps, 0.2, 7 of 8
    assert c0.loc["plain logistic", "threshold"] == pytest.approx(1.3305, abs=5e-3)
    assert c0.loc["plain logistic", "accuracy"] == pytest.approx(50.0)
    assert c0.loc["balanced logistic", "threshold"] == pytest.approx(0.5, abs=1e-3)
    assert c0.loc["balanced logistic", "accuracy"] == pytest.approx(75.0)
    assert c0.loc[T.ORACLE, "threshold"] == pytest.approx(0.2) and c0.loc[T.ORACLE, "accuracy"] == 87.5
    s1 = long[(long["normal_class"] == 0) & (long["seed"] == 1)].set_index("rule")
    shifted = TEST_S + np.float32(0.25)
    assert s1.loc["balanced logistic", "accuracy"] == pytest.approx(100 * accuracy_at(shifted, TEST_Y, 0.5), abs=1e-3)
    assert s1.loc["balanced logistic", "accuracy"] == pytest.approx(87.5)   # only the normal 0.85 is over 0.5
    assert c0.loc["plain logistic", "paper"] == pn.PAPER_A_ACCURACY["mnist"][("proposed", 0.1)]["classes"][0]


def test_rule_means_like_with_like(long):
    m = T.rule_means(long).iloc[0]
    paper = pn.PAPER_A_ACCURACY["mnist"][("proposed", 0.1)]["classes"]
    assert m["classes"] == "0, 1" and m["n_classes"] == 2 and m["seeds"] == 2
    # class 0: seeds 75 and 87.5 -> 81.25; class 1: 75; the mean over classes 0 and 1
    assert m["balanced logistic"] == pytest.approx((81.25 + 75) / 2)
    assert np.isnan(m["balanced logistic std"])      # only seed 0 ran both classes: no ±
    assert m["paper"] == pytest.approx((paper[0] + paper[1]) / 2)
    assert m["paper_printed"] == 98.84


def test_rule_table_text(long):
    tab = T.rule_table(long, "mnist")
    assert list(tab.columns) == ["mean", "class 0", "class 1"]
    assert tab.index.get_level_values(1).tolist() == ["plain logistic", "balanced logistic",
                                                       f"{T.ORACLE}: upper bound, not a result", "paper A (mnist)"]
    assert tab.loc[("proposed 10%", "balanced logistic"), "class 0"] == "81.25 ± 8.84"
    assert tab.loc[("proposed 10%", "balanced logistic"), "mean"] == f"{(81.25 + 75) / 2:.2f} (classes 0, 1)"
    assert tab.loc[("proposed 10%", "paper A (mnist)"), "class 1"] == "99.27"
    assert T.rule_table(long, "fashion").empty


def test_like_mean_uses_shared_classes_and_complete_seeds():
    import pandas as pd
    v = pd.DataFrame({"normal_class": [0, 1, 2, 0, 1], "seed": [0, 0, 0, 1, 1], "value": [90, 80, 70, 94, 84.0]})
    m = report.like_mean(v, {0: 99.0, 1: 98.0, 2: None})       # the paper has no class 2
    assert m["classes"] == [0, 1] and m["mean"] == pytest.approx((92 + 82) / 2)
    assert m["n"] == 2 and m["std"] == pytest.approx(np.std([85, 89], ddof=1)) and m["paper"] == 98.5
    assert not m["complete"]
    m = report.like_mean(v, {c: None for c in range(10)})     # no paper numbers: all our classes
    assert m["classes"] == [0, 1, 2] and np.isnan(m["paper"]) and m["n"] == 1 and np.isnan(m["std"])
    assert report.class_span([3, 0, 1, 2]) == "0–3" and report.class_span([0, 1]) == "0, 1"


def test_widget_rule_menu_moves_the_slider(store):
    from capslib.views import widgets
    df = report.load_rows(store.root, store.profile)
    w = widgets.threshold_explorer(store, df, cell_id="imbalanced-mnist-capsnet-proposed-n0-f0.1-s0-e1-b32")
    pick, slider, rule = w.children[1], w.children[2], w.children[3]
    assert list(rule.options) == [widgets.STORED, "plain logistic", "balanced logistic", T.ORACLE]
    assert "balanced logistic: threshold 0.500" in w.children[4].value
    rule.value = "balanced logistic"
    assert slider.value == pytest.approx(0.5, abs=1e-3)
    rule.value = T.ORACLE
    assert slider.value == pytest.approx(0.2)
    pick.value = "imbalanced-mnist-capsnet-proposed-n2-f0.1-s0-e1-b32"     # stored no training scores
    assert list(rule.options) == [widgets.STORED] and rule.value == widgets.STORED
    assert "no training scores" in w.children[4].value


def test_headline_rows_put_both_rules_beside_the_paper_with_stall_counts(store, long):
    """One line per row: the plain rule is the stored decision, the balanced rule the refit one,
    both as like-with-like means over the seeds; every cell here converged (no final loss: not
    counted stalled) and had one training."""
    df = report.load_rows(store.root, store.profile)
    first = report.load_rows(store.root, store.profile, attempts="first")
    t = T.headline_rows(df, first, long)
    assert list(t.index) == [("mnist", "proposed 10%")]
    row = t.iloc[0]
    paper = {c: pn.paper_a_accuracy("mnist", "proposed", 0.1, c) for c in range(10)}
    plain = report.like_mean(df[df["score"] == "anomaly_score"].assign(value=lambda d: 100 * d["accuracy"]), paper)
    bal = report.like_mean(long[long["rule"] == "balanced logistic"].rename(columns={"accuracy": "value"}), paper)
    assert row["plain rule"] == report.fmt(plain["mean"], plain["std"], plain["n"])
    assert row["balanced rule"] == report.fmt(bal["mean"], bal["std"], bal["n"])
    assert row["Δ balanced"] == f"{bal['mean'] - bal['paper']:+.2f}"
    assert row["stalled"] == "0 (0 at first, 0 retrained)" and row["cells"] == "4 (2 seeds)"
    assert row["first trainings"] == report.fmt(plain["mean"])
