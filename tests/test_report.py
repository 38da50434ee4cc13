"""report / figures / widgets / paper_numbers on a hand-built results store.

The store is written with ``ResultsStore.write_cell`` from synthetic per-image scores; the
rows are computed by the library's own ``result_rows`` (so accuracy, AUROC, AUPRC come from
the scores), and the tests check the tables' maths against plain numpy on those rows.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from capslib.views import figures, report, widgets
from capslib.study import paper_numbers as pn
from capslib.core.config import CellSpec
from capslib.study.methods import METHODS
from capslib.model.scores import accuracy_at
from capslib.run.store.results import ResultsStore
from capslib.run.store.schema import result_rows

IMB_SCORES = {"length_difference": 0.0, "r_l": 0.05, "anomaly_score": 0.1, "pp": None, "re": None}
BASELINE = next(m for m in METHODS["novelty"] if m != "capsnet")
PROV = {"commit": "abc123", "device": "cpu (test)", "torch": "x", "finished_utc": "2026-01-01T00:00:00Z"}


def _write(store, spec, scores, thresholds, rng, n=60, novelty=False, seconds=1.5):
    labels = (np.arange(n) % 2).astype(np.int64)
    arr = {name: (rng.normal(size=n) + sep * labels).astype(np.float32) for name, sep in scores.items()}
    res = SimpleNamespace(test_labels=labels, scores=arr, thresholds=thresholds, train_seconds=seconds)
    arrays = {"test_labels": labels, **{f"score_{k}": v for k, v in arr.items()},
              "gallery_positions": np.concatenate([np.arange(0, 16, 2), np.arange(1, 17, 2)]),
              "gallery_images": rng.integers(0, 255, (16, 1, 28, 28), dtype=np.uint8),
              "gallery_reconstructions": rng.integers(0, 255, (16, 1, 28, 28), dtype=np.uint8)}
    if novelty:
        arrays["test_classes"] = labels.copy()
    store.write_cell(spec, result_rows(spec, res, PROV), arrays, PROV)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    st = ResultsStore(tmp_path_factory.mktemp("res"), "t")
    rng = np.random.default_rng(0)
    for c in (0, 1):
        for v in ("standard", "proposed"):
            for s in (0, 1, 2):
                spec = CellSpec("imbalanced", "digits", "capsnet", v, normal_class=c, anomaly_fraction=0.1, seed=s, epochs=1)
                _write(st, spec, {k: 1.0 + c + s for k in IMB_SCORES}, IMB_SCORES, rng)
    for h in ((2,), (9,), (0, 3, 5)):
        for s in (0, 1):
            _write(st, CellSpec("novelty", "digits", "capsnet", held_out=h, seed=s, epochs=1),
                   {"pp": 2.0, "re": 1.0}, {"pp": None, "re": None}, rng, novelty=True)
            _write(st, CellSpec("novelty", "digits", BASELINE, held_out=h, seed=s, epochs=1),
                   {"recon": 0.5}, {"recon": None}, rng, novelty=True, seconds=0.5)
    return st


@pytest.fixture(scope="module")
def df(store):
    return report.load_rows(store.root, store.profile)


def test_paper_numbers_rows_match_printed_means():
    for ds, rows in pn.PAPER_A_ACCURACY.items():
        assert set(rows) == {(v, f) for v in ("standard", "proposed") for f in (0.1, 0.01)}
        for row in rows.values():
            assert len(row["classes"]) == 10
            assert abs(np.mean(row["classes"]) - row["mean"]) < 0.015
    assert pn.paper_a_accuracy("digits", "proposed", 0.01, 3) == 95.48    # digits -> MNIST reference
    assert pn.paper_a_accuracy("fashion", "proposed", 0.01, 2) == 84.98
    assert pn.paper_a_accuracy("smallnorb", "proposed", 0.1, 0) is None
    assert pn.paper_b_case_study("2")["pp"] == 0.9841


def test_accuracy_long_mean_std_diff(df):
    long = report.accuracy_long(df)
    head = df[(df["protocol"] == "imbalanced") & (df["score"] == df["variant"].map(report.HEADLINE))]
    for (v, c), g in head.groupby(["variant", "normal_class"]):
        row = long[(long["variant"] == v) & (long["normal_class"] == c)].iloc[0]
        acc = 100 * g.sort_values("seed")["accuracy"].to_numpy()
        assert row["n"] == 3
        assert row["mean"] == pytest.approx(acc.mean())
        assert row["std"] == pytest.approx(acc.std(ddof=1))
        assert row["paper"] == pn.PAPER_A_ACCURACY["mnist"][(v, 0.1)]["classes"][c]
        assert row["diff"] == pytest.approx(round(acc.mean(), 2) - row["paper"])   # from the printed numbers
    for v in ("standard", "proposed"):   # row mean: per seed over classes, then over seeds
        per_seed = 100 * head[head["variant"] == v].groupby("seed")["accuracy"].mean()
        m = long[(long["variant"] == v) & (long["normal_class"] == "mean")].iloc[0]
        assert m["mean"] == pytest.approx(per_seed.mean()) and m["std"] == pytest.approx(per_seed.std(ddof=1))
        assert m["paper"] == pytest.approx(np.mean(pn.PAPER_A_ACCURACY["mnist"][(v, 0.1)]["classes"][:2]))


def test_headline_uses_paper_a_decisions(df):
    h = report.headline(df)
    assert set(zip(h["variant"], h["score"])) == {("standard", "length_difference"), ("proposed", "anomaly_score")}
    assert len(h) == h["cell_id"].nunique() == 12


def test_table_shapes(df):
    acc = report.accuracy_table(df, "digits")
    # the digits are not the paper's data: its MNIST line is a reference, and no Δ is printed
    assert acc.shape == (4, 3) and list(acc.columns) == ["mean", "class 0", "class 1"]
    assert list(acc.index.get_level_values(1)[:2]) == ["ours", "paper (mnist, reference only)"]
    assert acc.index.get_level_values(0)[0] == "standard 10%" and "±" in acc.iloc[0, 0]
    assert acc.iloc[0, 0].endswith("(classes 0, 1)")
    auroc = report.metric_table(df, "digits", "auroc")
    assert auroc.shape == (2 * len(IMB_SCORES), 3)
    nov = report.novelty_table(df, "digits", "auprc")
    assert list(nov.index) == ["2", "9", "0+3+5"]
    assert list(nov.columns) == [("capsnet", "pp"), ("capsnet", "re"), (BASELINE, "recon")]
    cs = report.case_studies(df)
    assert list(cs["held-out"]) == ["2", "9", "0+3+5"] and cs.loc[0, "paper PP"] == "0.9841"
    sel = df[(df["protocol"] == "novelty") & (df["held_out"] == "9") & (df["method"] == "capsnet")]
    piv = sel.pivot_table(index="seed", columns="score", values="auroc")
    assert cs.loc[1, "ours PP − RE"] == report.fmt((piv["pp"] - piv["re"]).mean(), (piv["pp"] - piv["re"]).std(), 2, 4)
    two = df[(df["protocol"] == "novelty") & (df["held_out"] == "2") & (df["method"] == "capsnet")]
    for score, paper, col in (("pp", 0.9841, "PP − paper"), ("re", 0.9699, "RE − paper")):
        diff = two.loc[two["score"] == score, "auroc"].mean() - paper
        assert cs.loc[0, col] == f"{diff:+.4f}".replace("-", "−")
    assert cs.loc[1, "PP − paper"] == cs.loc[2, "RE − paper"] == "–"     # the paper prints no number there
    shown = report.case_study_table(cs)                                    # one column per case, for reading
    assert list(shown.columns) == ["digits · held out 2", "digits · held out 9", "digits · held out 0+3+5"]
    assert list(shown.index) == [c for c in cs.columns if c not in ("dataset", "held-out")]
    base = df[(df["protocol"] == "novelty") & (df["method"] == BASELINE)]
    recon = base.loc[base["held_out"] == "2", "auroc"].mean()
    assert shown.loc[f"AUROC of {BASELINE}:recon", "digits · held out 2"] == cs.loc[0, f"AUROC of {BASELINE}:recon"]
    assert cs.loc[0, f"AUROC of {BASELINE}:recon"] == f"{recon:.4f}"
    assert shown.loc["paper PP", "digits · held out 2"] == "0.9841"
    assert shown.loc["ours PP − RE", "digits · held out 9"] == cs.loc[1, "ours PP − RE"]
    assert report.case_study_table(cs.iloc[:0]).empty
    # a reference detector with two scores is listed score by score, never averaged across them
    two_scores = pd.concat([df, base.assign(score="mse", auroc=base["auroc"] / 2)], ignore_index=True)
    refs = report.case_studies(two_scores).filter(like="AUROC of").loc[0]
    assert refs.to_dict() == {f"AUROC of {BASELINE}:mse": f"{recon / 2:.4f}", f"AUROC of {BASELINE}:recon": f"{recon:.4f}"}
    assert report.accuracy_table(df, "fashion").empty and report.novelty_table(df, "kmnist").empty


def test_cost_and_provenance(df):
    cells = report.cost_table(df)
    assert len(cells) == df["cell_id"].nunique() == 24
    tot = report.cost_totals(df)
    assert tot.iloc[-1]["cells"] == 24
    assert tot.iloc[-1]["train_seconds"] == pytest.approx(12 * 1.5 + 6 * 1.5 + 6 * 0.5)
    prov = report.provenance(df)
    assert list(prov["commit"]) == ["abc123"] and prov.loc[0, "seeds"] == "0, 1, 2"
    slow = report.slowest_cells(df, n=5)          # a chapter's cost table: the longest trainings, longest first
    assert len(slow) == 5 and list(slow.columns) == ["cell_id", "train_seconds", "device", "finished_utc"]
    per_cell = cells.set_index("cell_id")["train_seconds"]
    assert list(slow["train_seconds"]) == sorted(per_cell, reverse=True)[:5]
    assert all(per_cell[c] == t for c, t in zip(slow["cell_id"], slow["train_seconds"]))
    assert len(report.slowest_cells(df)) == min(report.SLOWEST, 24)
    assert report.slowest_cells(df.iloc[:0]).empty


def test_load_or_run_without_training_lists_missing(tmp_path):
    out = report.load_or_run("quick", tmp_path, protocol="imbalanced", classes=[0], fractions=[0.1],
                             methods=["capsnet"], epochs=1, train=False)
    assert out.empty and len(out.attrs["run"]["missing"]) == 2
    assert "missing" in report.run_summary(out)


def _visible_sets(fig, menu=0):
    return [np.flatnonzero(b.args[0]["visible"]) for b in fig.layout.updatemenus[menu].buttons]


def test_roc_at_grid_is_the_best_tpr_up_to_each_fpr():
    from capslib.views.figures.chooser import roc_at_grid
    fpr, tpr = np.array([0.0, 0.0, 0.25, 0.5, 1.0]), np.array([0.0, 0.5, 0.5, 0.75, 1.0])
    got = roc_at_grid(fpr, tpr, np.array([0.0, 0.1, 0.25, 0.3, 0.5, 0.99, 1.0]))
    assert got.tolist() == [0.5, 0.5, 0.5, 0.5, 0.75, 0.75, 1.0]


def test_roc_chooser_covers_every_cell_and_seed(store, df):
    from sklearn.metrics import roc_curve
    from capslib.views.figures.chooser import FPR_GRID
    ch = figures.roc_figure(store, df, "digits", "imbalanced")
    assert ch.payload["seeds"] == [0, 1, 2] and len(ch.choices()) == 3 * 2    # seeds x classes (one fraction)
    assert {c[3] for c in ch.payload["cells"]} == set(df[df["protocol"] == "imbalanced"]["cell_id"])
    assert len(ch.payload["items"]) == 3 * 2 * 2 * 3      # seeds x classes x variants x the three paper-A measures
    fig = ch.figure()
    assert len(fig.data) == 2 * 3 + 2                     # the first choice: two panels of three curves, chance lines
    # every curve is sklearn's ROC read at the grid's false-positive rates (to the payload's 1/65535)
    for seed, group in ch.choices():
        for tr in ch.traces(seed, group)[:-2]:
            cid = tr["hovertemplate"].split("<extra>")[1].split("<")[0]
            a = store.load_arrays(cid)
            key = {figures.label(f"capsnet:{s}"): s for s in ("length_difference", "r_l", "anomaly_score")}[tr["name"]]
            fpr, tpr, _ = roc_curve(a["test_labels"], a[f"score_{key}"])
            idx = np.searchsorted(fpr, FPR_GRID, side="right") - 1
            assert np.allclose(tr["y"], np.maximum.accumulate(tpr)[idx], atol=1e-4)
    assert ch.traces(*ch.choices()[0])[0]["y"] != ch.traces(*ch.choices()[-1])[0]["y"]
    nov = figures.roc_figure(store, df, "digits", "novelty")
    assert len(nov.choices()) == 2 * 3 and len(nov.figure().data) == 3 + 1   # PP, RE, the baseline's score; chance


def test_chooser_html_carries_the_payload_and_its_script(store, df):
    import json
    ch = figures.roc_figure(store, df, "digits", "imbalanced")
    page = ch.html()
    doc = json.loads(page.split('-data">', 1)[1].split("</script>", 1)[0])
    assert doc["payload"] == json.loads(json.dumps(ch.payload)) and doc["kind"] == "roc"
    assert "window.capslibChooser" in page and "</" not in page.split('-data">', 1)[1].split("</script>", 1)[0]
    bundle = ch._repr_mimebundle_()
    assert set(bundle) == {"text/html", "application/vnd.plotly.v1+json"}   # JupyterLab draws the first choice
    assert len(repr(ch)) < 100                           # the notebook's text/plain does not repeat the payload


def test_distribution_chooser_histograms_and_threshold(store, df):
    ch = figures.distribution_figure(store, df, "digits", "imbalanced")
    assert ch.scores()[0] == "capsnet:anomaly_score" and len(ch.choices()) == 6
    first = ch.figure()
    bars = [t for t in first.data if t.type == "bar"]
    assert len(bars) == 2 * 2                            # two panels, normal and anomalous
    for b in bars:                                       # shares of one label's images: they sum to 1 (8-bit bars)
        assert sum(b.y) == pytest.approx(1.0, abs=len(b.y) * max(b.y) / 255)
    thr = {t.x[0] for t in first.data if t.name == "threshold"}
    assert thr == {0.1}                                  # the cells' stored AS threshold
    other = ch.figure(score="capsnet:length_difference")
    assert [t.x for t in other.data if t.type == "bar"] != [t.x for t in bars]
    # a histogram counts every test image of its label once
    it = ch.items()[0]
    from capslib.views.figures.chooser import decode
    assert decode(it["hN"], "u1").max() == 255 and decode(it["hA"], "u1").max() == 255


def test_bars_and_accuracy_figures(df):
    fig = figures.bars_figure(df, "digits", "novelty")
    assert len(fig.data) == 3 and [b.label for b in fig.layout.updatemenus[0].buttons] == ["AUROC", "AUPRC"]
    long = report.novelty_long(df, "auprc")
    want = long[(long["column"] == "capsnet:pp")].set_index("held_out").loc[["2", "9", "0+3+5"], "mean"]
    assert fig.layout.updatemenus[0].buttons[1].args[0]["y"][0] == list(want.round(4))
    imb = figures.bars_figure(df, "digits", "imbalanced")
    assert len(imb.layout.updatemenus) == 2 and len(_visible_sets(imb)) == 2
    acc = figures.accuracy_figure(df, "digits")
    paper = [t for t in acc.data if t.name.startswith("paper")]
    assert list(paper[0].y[:2]) == pn.PAPER_A_ACCURACY["mnist"][("standard", 0.1)]["classes"][:2]
    assert [t.visible for t in acc.data] == [True, True, False, False]


def test_bars_leave_a_marked_gap_for_each_held_out_class_asked_for_without_a_cell(df):
    """Paper B's bars: a held-out class the chapter asked for but the store lacks keeps its
    place on the axis, empty and labelled, so that what is missing shows."""
    part = df[(df["protocol"] == "novelty") & (df["held_out"] == "2")].copy()
    part.attrs["cells"] = ["novelty-digits-capsnet-h2-s0-e5-b32", "novelty-digits-capsnet-h9-s0-e5-b32",
                           "novelty-digits-cnn_ocsvm-h035-s0-e5-b32", "novelty-mnist-capsnet-h4-s0-e20-b100"]
    fig = figures.bars_figure(part, "digits", "novelty")
    assert list(fig.data[0].x) == ["2", "9", "0+3+5"] and fig.layout.xaxis.type == "category"
    ys = fig.data[0].y
    assert ys[0] == round(part[part["method"] + ":" + part["score"] == "capsnet:pp"]["auroc"].mean(), 4)
    assert all(y is None or y != y for y in ys[1:])                                   # no bar
    assert sorted((a.x, a.text) for a in fig.layout.annotations) == [("0+3+5", "no cell yet"), ("9", "no cell yet")]


def test_galleries(store, df, tmp_path, monkeypatch):
    from PIL import Image
    monkeypatch.chdir(tmp_path)
    ids, titles = figures.gallery_cells(df, "imbalanced", "digits", variant="proposed", fraction=0.1)
    assert len(ids) == 2 and all("proposed" in i for i in ids)
    strip = figures.gallery_strip(store.load_arrays(ids[0]))
    assert strip.shape == (56, 16 * 28)
    panel = figures.gallery_panel(store, ids, titles)
    page = panel._repr_html_()
    assert page.count("<img") == 2 and 'src="galleries/' in page
    png = np.asarray(Image.open(tmp_path / "galleries" / f"{ids[0]}.png"))
    assert png.shape == strip.shape and np.abs(png.astype(int) - strip).max() <= 8   # 16 grey levels
    ch = figures.gallery_chooser(store, df, "imbalanced", "digits")
    assert len(ch.choices()) == 3 * 2 * 2                # seeds x classes x variants
    srcs = [it["src"] for it in ch.payload["items"]]
    assert all((tmp_path / s).is_file() for s in srcs) and len(set(srcs)) == len(srcs)
    assert ch.html().count("<img") == 1                  # only the first strip loads with the page
    empty = figures.gallery_chooser(store, df, "novelty", "mnist")
    assert not empty.choices() and "No finished cell" in empty.html() and "<script" not in empty.html()


def test_widgets_threshold_and_browser(store, df):
    from capslib.views import widgets
    w = widgets.threshold_explorer(store, df, score="anomaly_score")
    slider = w.children[2]
    cid = w.children[1].value
    a = store.load_arrays(cid)
    assert slider.value == pytest.approx(0.1)
    cm = widgets.confusion(a["score_anomaly_score"], a["test_labels"], slider.value)
    assert cm.to_numpy().sum() == len(a["test_labels"])
    acc = (cm.iloc[0, 0] + cm.iloc[1, 1]) / cm.to_numpy().sum()
    assert acc == pytest.approx(accuracy_at(a["score_anomaly_score"], a["test_labels"], slider.value))
    b = widgets.gallery_browser(store, df)
    b.children[1].children[0].value = 9
    assert "anomalous" in b.children[2].children[2].value


def test_plateau_table_counts_stalled_trainings_per_route_and_fraction():
    from capslib.run.store.schema import PLATEAU_LOSS
    from capslib.views.report import plateau_table

    def doc(fraction, loss, fast, method="capsnet", protocol="imbalanced"):
        info = {"final_loss": loss, **({"fast_path": {"group_size": 8}} if fast else {})}
        return {"resolved": {"protocol": protocol, "method": method, "anomaly_fraction": fraction},
                "info": info, "provenance": {"device": "gpu" if fast else "cpu", "precision": "bf16"}}

    docs = {"a": doc(0.01, 0.41, True), "b": doc(0.01, 0.01, True), "c": doc(0.1, 0.012, True),
            "d": doc(0.01, PLATEAU_LOSS + 1e-6, False), "e": doc(0.01, PLATEAU_LOSS, False),
            "f": doc(0.01, 0.9, False, method="cnn"), "g": doc(None, 0.9, False, protocol="novelty")}

    class Store:
        finished_ids = staticmethod(lambda: sorted(docs))
        load_cell = staticmethod(lambda cid: docs[cid])

    t = plateau_table(Store())
    got = {(r["route"], r["anomaly fraction"]): (r["on plateau"], r["cells"]) for _, r in t.iterrows()}
    assert got == {("fast path", 0.1): (0, 1), ("fast path", 0.01): (1, 2), ("plain path", 0.01): (1, 2)}


def test_gallery_browser_leaves_out_cells_without_galleries(tmp_path):
    """A reference detector stores no gallery: the browser offers only CapsNet cells."""
    st = ResultsStore(tmp_path, "t")
    spec = CellSpec("novelty", "digits", BASELINE, held_out=(2,), epochs=1)
    labels = (np.arange(20) % 2).astype(np.int64)
    res = SimpleNamespace(test_labels=labels, scores={"recon": labels + 0.5}, thresholds={"recon": None},
                          train_seconds=0.1)
    st.write_cell(spec, result_rows(spec, res, PROV), {"test_labels": labels, "score_recon": labels + 0.5}, PROV)
    df = report.load_rows(st.root, st.profile)
    assert "No cells" in widgets.gallery_browser(st, df).value


def test_ocsvm_gamma_figure_draws_the_recorded_sweep_and_names_cells_without_one(tmp_path):
    """The kernel-width figure reads each CNN+OCSVM cell's recorded sweep: one AUROC curve and
    one rejection curve per cell, the rule's γ starred with the cell's headline AUROC; a cell
    recorded without a sweep is counted in the title, not drawn."""
    st = ResultsStore(tmp_path, "t")
    rng = np.random.default_rng(3)
    steps = list(range(-6, 7))
    auroc = [0.3 + 0.05 * (k + 6) for k in steps]
    rejection = [0.09 + 0.07 * max(k, 0) for k in steps]
    info = {"gamma0": 0.5, "gamma": 0.5, "gamma_grid": [0.5 * 2.0 ** k for k in steps], "heldout_rejection": rejection,
            "rejection_tolerance": 0.12, "oracle_auroc_by_gamma": auroc}
    labels = (np.arange(40) % 2).astype(np.int64)
    res = SimpleNamespace(test_labels=labels, scores={"ocsvm": rng.normal(size=40) + labels},
                          thresholds={"ocsvm": 0.0}, train_seconds=1.0)
    for h, cell_info in (((2,), info), ((9,), {})):
        spec = CellSpec("novelty", "digits", "cnn_ocsvm", held_out=h, seed=0, epochs=1)
        st.write_cell(spec, result_rows(spec, res, PROV), {"test_labels": labels, "score_ocsvm": res.scores["ocsvm"]},
                      PROV, info=cell_info)
    df = report.load_rows(st.root, st.profile)
    sweeps, without = figures.ocsvm_sweeps(st, df, "digits")
    assert without == [CellSpec("novelty", "digits", "cnn_ocsvm", held_out=(9,), seed=0, epochs=1).cell_id]
    assert list(sweeps["log2_gamma_ratio"]) == steps and list(sweeps["oracle_auroc"]) == auroc
    assert sweeps["chosen"].sum() == 1 and sweeps.loc[sweeps["chosen"], "log2_gamma_ratio"].item() == 0
    fig = figures.ocsvm_gamma_figure(st, df, "digits")
    assert len(fig.data) == 4 and list(fig.data[0].y) == auroc and list(fig.data[2].y) == rejection
    headline = df[df["held_out"] == "2"]["auroc"].item()
    assert fig.data[1].y[0] == headline and fig.data[1].x[0] == 0
    assert "1 earlier cell(s) recorded no sweep" in fig.layout.title.text
    assert "no results" in figures.ocsvm_gamma_figure(st, df, "mnist").layout.title.text


def test_taken_for_maps_capsules_back_to_the_original_classes():
    """Capsule i is the i-th normal class in order: with class 1 held out, capsules (0, 1, 2) are
    classes (0, 2, 3); only anomalous images count, and the held-out class has no share."""
    lengths = np.array([[0.9, 0.1, 0.1],     # normal image: not counted
                        [0.1, 0.2, 0.8],     # anomaly taken for class 3
                        [0.7, 0.2, 0.1],     # ... for class 0
                        [0.1, 0.3, 0.6]])    # ... for class 3
    share = figures.taken_for(lengths, np.array([0, 1, 1, 1]), (1,))
    assert np.isnan(share[1]) and np.allclose(share[[0, 2, 3]], [1 / 3, 0.0, 2 / 3])
    three = figures.taken_for(np.eye(7)[[6, 6, 0]], np.array([1, 1, 1]), (0, 3, 5))
    assert np.isnan(three[[0, 3, 5]]).all() and np.allclose(three[[1, 9]], [1 / 3, 2 / 3])


def test_assignment_figure_one_row_per_held_out_case_averaged_over_seeds(tmp_path):
    """The heatmap reads each CapsNet cell's capsule lengths: one row per held-out case in the
    order 2, 9, 0+3+5, the seeds averaged; a cell without lengths is left out."""
    st = ResultsStore(tmp_path, "t")
    labels = np.array([0, 1, 1, 1, 1])
    res = SimpleNamespace(test_labels=labels, scores={"pp": np.arange(5.0)}, thresholds={"pp": None}, train_seconds=1.0)
    def put(held, seed, capsule, lengths=True):
        spec = CellSpec("novelty", "digits", "capsnet", held_out=held, seed=seed, epochs=1)
        arrays = {"test_labels": labels, "score_pp": res.scores["pp"]}
        if lengths:
            arrays["test_lengths"] = np.eye(10 - len(held))[capsule]
        st.write_cell(spec, result_rows(spec, res, PROV), arrays, PROV)
    put((9,), 0, [0, 4, 4, 4, 4])                # every 9 taken for class 4
    put((9,), 1, [0, 4, 4, 7, 7])                # half for 4, half for 7
    put((0, 3, 5), 0, [0, 0, 0, 1, 1])           # capsule 0 is class 1, capsule 1 class 2
    put((2,), 0, [0, 0, 0, 0, 0], lengths=False)
    df = report.load_rows(st.root, st.profile)
    table = figures.assignment_table(st, df, "digits")
    assert list(table.index) == ["9", "0+3+5"]
    assert np.allclose(table.loc["9", [4, 7]], [0.75, 0.25]) and np.isnan(table.loc["9", 9])
    assert np.allclose(table.loc["0+3+5", [1, 2]], [0.5, 0.5])
    fig = figures.assignment_figure(st, df, "digits")
    assert list(fig.data[0].y) == ["9", "0+3+5"] and fig.data[0].text[0][4] == "75%"


def test_show_displays_every_text_in_full(monkeypatch):
    """A table's long texts (a paper's claim, the case in flight) are shown whole, not cut at
    pandas' 50 characters."""
    import IPython.display
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj._repr_html_()))
    text = "PP beats RE by about 0.12 AUROC (the 9s are reconstructed as 4s), as the paper says"
    report.show(pd.DataFrame({"paper says": [text]}), pd.DataFrame())
    assert text in shown[0]
    assert pd.get_option("display.max_colwidth") == 50          # only while showing


def test_load_or_run_trains_only_what_is_missing_or_damaged(tmp_path, monkeypatch):
    """Every cell asked for finished: the store is read, and the training code (torch with it) is
    not even imported; a damaged cell among them sends them to the run, which trains it again."""
    import shutil
    import capslib.run.runner as runner
    from pathlib import Path
    cells = ["imbalanced-digits-capsnet-standard-n1-f0.1-s0-e5-b32", "imbalanced-digits-capsnet-proposed-n1-f0.1-s0-e5-b32"]
    for cid in cells:
        shutil.copytree(Path(__file__).resolve().parents[1] / "results" / "quick" / "cells" / cid,
                        tmp_path / "quick" / "cells" / cid)
    calls = []
    monkeypatch.setattr(runner, "run_grid", lambda cells, *a, **k: calls.append([c.cell_id for c in cells]) or
                        {"ran": [], "skipped": [], "failed": {}})
    ask = dict(protocol="imbalanced", classes=[1], fractions=[0.1], methods=["capsnet"], seeds=[0])
    df = report.load_or_run("quick", tmp_path, **ask)
    assert calls == [] and sorted(df["cell_id"].unique()) == sorted(cells)
    assert report.run_summary(df) == "2 cells asked for; 0 trained now; 2 read from the store."
    (tmp_path / "quick" / "cells" / cells[0] / "arrays.npz").write_bytes(b"damaged")
    report.load_or_run("quick", tmp_path, **ask)
    assert len(calls) == 1 and sorted(calls[0]) == sorted(cells)
