"""The book's tables on a hand-built *partial* store: like-with-like means, ± only
with two or more seeds, the reproduction-status counts, and the sentence of an empty section."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from capslib.study import paper_numbers as pn
from capslib.views import report, status
from capslib.core.config import CellSpec
from capslib.run.store.results import ResultsStore
from capslib.run.store.schema import result_rows

PROV = {"commit": "abc123", "device": "cpu (test)", "torch": "x", "finished_utc": "2026-01-02T03:04:05Z"}
LABELS = np.array([0] * 10 + [1] * 10)


def _cell(c, v, seed, right):
    """A cell whose headline decision gets ``right`` of its 20 test images right."""
    spec = CellSpec("imbalanced", "mnist", "capsnet", v, normal_class=c, anomaly_fraction=0.1, seed=seed, epochs=1)
    s = np.where(LABELS == 1, 1.0, -1.0)
    s[: 20 - right] *= -1                    # the first 20 - right images land on the wrong side of 0
    name = report.HEADLINE[v]
    res = SimpleNamespace(test_labels=LABELS, scores={name: s.astype(np.float32)}, thresholds={name: 0.0},
                          train_seconds=60.0)
    return spec, res


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    st = ResultsStore(tmp_path_factory.mktemp("partial"), "t")
    # standard 10%: classes 0, 1 with seeds 0 and 1, class 2 with seed 0 only
    for c, seed, right in [(0, 0, 20), (0, 1, 18), (1, 0, 19), (1, 1, 17), (2, 0, 16)]:
        spec, res = _cell(c, "standard", seed, right)
        st.write_cell(spec, result_rows(spec, res, PROV), {"test_labels": LABELS}, PROV)
    # proposed 10%: classes 0-2, one seed
    for c, right in [(0, 20), (1, 19), (2, 18)]:
        spec, res = _cell(c, "proposed", 0, right)
        st.write_cell(spec, result_rows(spec, res, PROV), {"test_labels": LABELS}, PROV)
    return st


@pytest.fixture(scope="module")
def df(store):
    return report.load_rows(store.root, store.profile)


def test_row_means_only_over_shared_classes(df):
    long = report.accuracy_long(df)
    m = long[(long["variant"] == "standard") & (long["normal_class"] == "mean")].iloc[0]
    # per class: 0 -> (100 + 90) / 2 = 95, 1 -> (95 + 85) / 2 = 90, 2 -> 80; mean over 0-2
    assert m["mean"] == pytest.approx((95 + 90 + 80) / 3)
    paper = pn.PAPER_A_ACCURACY["mnist"][("standard", 0.1)]["classes"]
    assert m["paper"] == pytest.approx(np.mean(paper[:3])) and m["classes"] == "0–2" and not m["complete"]
    # no seed ran all three classes twice: the seeds behind a std are those that ran every class
    assert m["n"] == 1 and np.isnan(m["std"])
    assert m["diff"] == pytest.approx(round((95 + 90 + 80) / 3, 2) - np.mean(paper[:3]))


def test_plus_minus_only_with_two_seeds_and_flags(df):
    tab = report.accuracy_table(df, "mnist")
    ours = tab.loc[("standard 10%", "ours")]
    assert ours["class 0"] == "95.00 ± 7.07" and ours["class 2"] == "80.00"     # ± only where two seeds ran
    assert ours["mean"] == f"{(95 + 90 + 80) / 3:.2f} (classes 0–2)"
    assert list(tab.columns)[:2] == ["mean", "class 0"]       # the mean beside the row's name, in view
    assert tab.loc[("standard 10%", "paper (mnist)"), "mean"] == f"{np.mean(pn.PAPER_A_ACCURACY['mnist'][('standard', 0.1)]['classes'][:3]):.2f} (classes 0–2)"
    assert tab.loc[("proposed 10%", "ours"), "class 0"] == "100.00"
    # class 0 standard: |95 - 97.46| = 2.46 < std 7.07: not marked; class 2 (one seed): |80 - 97.02| > 1.0: marked
    delta = tab.loc[("standard 10%", "Δ")]
    assert not delta["class 0"].endswith("*") and delta["class 2"].endswith("*")
    cap = report.accuracy_caption(df, "mnist")
    assert "1 to 2 seeds per number" in cap and "seeds 0, 1" in cap


def test_status_counts_match(store):
    cells = [CellSpec("imbalanced", "mnist", "capsnet", v, normal_class=c, anomaly_fraction=0.1, seed=s, epochs=1)
             for v in ("standard", "proposed") for c in range(4) for s in (0, 1)]
    cells += [CellSpec("novelty", "mnist", "capsnet", held_out=(0, 3, 5), seed=0, epochs=1)]
    st = status.grid_status(cells, store).set_index(["group", "row", "seed"])
    assert st.loc[("MNIST", "standard 10%", 0), ["done", "total"]].tolist() == [3, 4]
    assert st.loc[("MNIST", "standard 10%", 1), ["done", "total"]].tolist() == [2, 4]
    assert st.loc[("MNIST", "proposed 10%", 0), ["done", "total"]].tolist() == [3, 4]
    assert st.loc[("MNIST", "proposed 10%", 1), ["done", "total"]].tolist() == [0, 4]
    assert st.loc[("MNIST {0, 3, 5}", "capsnet", 0), ["done", "total"]].tolist() == [0, 1]
    lines = status.summary_lines(st.reset_index(), store)
    assert lines[0].startswith("**Paper A**: 8 of 16 cells finished (50.0%; seed 0: 6/8; seed 1: 2/8)")
    assert lines[1].startswith("**Paper B**: 0 of 1 cells")
    assert "Newest cell finished 2026-01-02 03:04:05 UTC" in lines[2] and "8 cells" in lines[2]
    assert f"{8 * 60 / 3600:.1f} h" in lines[2]
    fig = status.status_figure(st.reset_index())
    assert len(fig.axes) == 2


def test_empty_sections_say_so(tmp_path, capsys):
    empty = report.load_or_run("paper", tmp_path, protocol="novelty", train=False)
    note = report.empty_note(empty, "the AUROC tables")
    assert note.startswith("*Nothing to show for the AUROC tables yet: none of the 315 novelty cells asked for")
    assert "`python -m capslib run --profile paper --protocol novelty`" in note
    assert report.say_if_empty(empty, "the AUROC tables") is True
    cases = report.case_studies(empty)       # the paper's case studies stay listed, visibly not trained
    assert list(cases["held-out"]) == ["2", "9", "0+3+5"] and set(cases["ours PP"]) == {"not trained yet"}
    assert report.provenance(empty).empty
    assert report.say_if_empty(report.load_rows("results", "quick"), "x") is False


def test_a_case_study_in_flight_says_its_epoch_and_the_time_left(tmp_path):
    import json
    from capslib.core.cache import cache_root, store_key
    store = report.open_store(tmp_path, "paper")
    d = cache_root() / "checkpoints" / store_key(store.dir)
    d.mkdir(parents=True)
    cid = "novelty-mnist-capsnet-h2-s0-e20-b100"
    (d / f"{cid}.json").write_text(json.dumps({"cell_id": cid, "epoch": 3, "epochs": 20, "train_seconds": 3600.0,
                                               "precision": "bf16", "updated_utc": "2026-12-04T16:00:00Z"}))
    (d / f"{cid}.pt").write_bytes(b"")
    empty = report.load_or_run("paper", tmp_path, protocol="novelty", train=False)
    cases = report.case_studies(empty, store).set_index("held-out")
    assert cases.loc["2", "ours PP"] == "in flight: epoch 3/20, about 5.7 h of training left"
    assert cases.loc["9", "ours PP"] == "not trained yet"
