"""Paper A's threshold rules measured on every stored cell, from the stored scores alone.

Paper A fits "a logistic regressor to find the optimal threshold" on the training anomaly
scores AS (eq. 1) and leaves open how the regression weighs the two classes. The rules of
:data:`capslib.model.scores.THRESHOLD_RULES` are applied here to each *proposed* cell of protocol
imbalanced: the two logistic fits on the cell's stored training scores
(``train_anomaly_score``, ``train_labels``) and the oracle on its test scores, each
threshold then deciding "anomaly iff AS > threshold" on the stored test scores. Nothing is
retrained. The oracle looks at the test labels: it bounds what any rule could reach with
these scores and is never a result. The *standard* rows use no fitted threshold (anomaly iff
‖z_a‖ > ‖z_n‖), so they have no place here.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from capslib.study import paper_numbers as pn
from capslib.views import report
from capslib.views.report import ROW_LABEL, class_span, fmt, like_mean
from capslib.model.scores import THRESHOLD_RULES, accuracy_at
from capslib.run.store.results import ResultsStore

SCORE = "anomaly_score"
MAIN_RULE = "plain logistic"     # the rule behind the main accuracy table (book/methods.md)
ORACLE = "oracle (best on test)"
NEEDED = (f"score_{SCORE}", "test_labels", "train_anomaly_score", "train_labels")   # the arrays a cell's rules read


def cell_thresholds(arrays: dict) -> dict | None:
    """{rule: (threshold, test accuracy in [0, 1])} for one cell's arrays, or None when the
    cell stored no training scores (then only the oracle could be computed, and is not)."""
    if "train_anomaly_score" not in arrays or "train_labels" not in arrays:
        return None
    test_s, test_y = arrays[f"score_{SCORE}"].astype(np.float64), arrays["test_labels"]
    seen = {"train": (arrays["train_anomaly_score"].astype(np.float64), arrays["train_labels"]),
            "test": (test_s, test_y)}
    out = {}
    for rule, (fit, on) in THRESHOLD_RULES.items():
        t = fit(*seen[on])
        out[rule] = (t, accuracy_at(test_s, test_y, t))
    return out


def _proposed_cells(df: pd.DataFrame) -> pd.DataFrame:
    sel = df[(df["protocol"] == "imbalanced") & (df["method"] == "capsnet") & (df["variant"] == "proposed")
             & (df["score"] == SCORE)]
    return sel.drop_duplicates("cell_id")


def rule_long(store: ResultsStore, df: pd.DataFrame) -> pd.DataFrame:
    """One row per (proposed cell, rule): dataset, anomaly_fraction, normal_class, seed,
    cell_id, rule, threshold, accuracy (%), paper (%). ``attrs["lacking"]`` lists the cells
    without stored training scores."""
    rows, lacking = [], []
    for r in _proposed_cells(df).itertuples():
        got = cell_thresholds(store.load_arrays(r.cell_id, only=lambda k: k in NEEDED))
        if got is None:
            lacking.append(r.cell_id)
            continue
        paper = pn.paper_a_accuracy(r.dataset, "proposed", r.anomaly_fraction, r.normal_class)
        for rule, (t, acc) in got.items():
            rows.append({"dataset": r.dataset, "anomaly_fraction": r.anomaly_fraction, "normal_class": int(r.normal_class),
                         "seed": int(r.seed), "cell_id": r.cell_id, "rule": rule, "threshold": t,
                         "accuracy": 100 * acc, "paper": paper})
    out = pd.DataFrame(rows, columns=["dataset", "anomaly_fraction", "normal_class", "seed", "cell_id", "rule",
                                      "threshold", "accuracy", "paper"])
    out.attrs["lacking"] = sorted(lacking)
    return out


def _paper_row(dataset: str, fraction: float) -> dict:
    return {c: pn.paper_a_accuracy(dataset, "proposed", fraction, c) for c in range(10)}


def rule_means(long: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, fraction) row: the classes shared with the paper, seeds, each rule's
    mean over those classes and the paper's mean over the same classes (see
    :func:`capslib.views.report.like_mean`)."""
    out = []
    for (ds, f), g in long.groupby(["dataset", "anomaly_fraction"], sort=False):
        paper = _paper_row(ds, f)
        rec = {"dataset": ds, "row": ROW_LABEL.format(variant="proposed", fraction=f), "anomaly_fraction": f}
        for rule in THRESHOLD_RULES:
            m = like_mean(g[g["rule"] == rule].rename(columns={"accuracy": "value"}), paper)
            rec[rule] = m["mean"]
            rec[f"{rule} std"] = m["std"]
        rec.update(classes=class_span(m["classes"]), n_classes=len(m["classes"]), seeds=g["seed"].nunique(),
                   paper=m["paper"], paper_printed=pn.PAPER_A_ACCURACY.get(pn.REFERENCE_DATASET.get(ds), {})
                   .get(("proposed", round(float(f), 6)), {}).get("mean", np.nan))
        out.append(rec)
    cols = ["dataset", "row", "anomaly_fraction", "classes", "n_classes", "seeds", *THRESHOLD_RULES, "paper"]
    res = pd.DataFrame(out, columns=cols + [f"{r} std" for r in THRESHOLD_RULES] + ["paper_printed"])
    return res.sort_values(["dataset", "anomaly_fraction"], ascending=[True, False]).reset_index(drop=True)


def rule_table(long: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Accuracy % of the proposed rows under each rule beside paper A's: rows (row, rule or
    paper), columns the mean over the classes both have, then the normal classes that ran.
    Values are the mean over seeds (± the std with two or more seeds)."""
    d = long[long["dataset"] == dataset]
    if d.empty:
        return pd.DataFrame()
    ref = pn.REFERENCE_DATASET.get(dataset, dataset)
    records, classes_all = {}, sorted(d["normal_class"].unique())
    for f in sorted(d["anomaly_fraction"].unique(), reverse=True):
        g, paper = d[d["anomaly_fraction"] == f], _paper_row(dataset, f)
        label = ROW_LABEL.format(variant="proposed", fraction=f)
        for rule in THRESHOLD_RULES:
            gr = g[g["rule"] == rule]
            per = gr.groupby("normal_class")["accuracy"].agg(["mean", "std", "count"])
            m = like_mean(gr.rename(columns={"accuracy": "value"}), paper)
            rec = {c: fmt(per.at[c, "mean"], per.at[c, "std"], per.at[c, "count"]) if c in per.index else "–"
                   for c in classes_all}
            rec["mean"] = _mean_text(fmt(m["mean"], m["std"], m["n"]), m)
            name = f"{rule}: upper bound, not a result" if rule == ORACLE else rule
            records[(label, name)] = rec
        rec = {c: fmt(paper[c]) if c in set(g["normal_class"]) and paper[c] is not None else "–" for c in classes_all}
        rec["mean"] = _mean_text(fmt(m["paper"]), m)
        records[(label, f"paper A ({ref})")] = rec
    out = pd.DataFrame.from_dict(records, orient="index")
    out.index = pd.MultiIndex.from_tuples(out.index, names=["row", "threshold rule"])
    out.columns = [f"class {c}" for c in classes_all] + ["mean"]
    return out[["mean"] + [f"class {c}" for c in classes_all]]   # the mean beside the row's name, in view


def _mean_text(text: str, m: dict) -> str:
    """A row mean's cell: the number, and which classes it covers when not all ten."""
    return text if m["complete"] or text == "–" else f"{text} (classes {class_span(m['classes'])})"


def lacking_note(long: pd.DataFrame) -> str:
    """One sentence on the cells whose training scores were not stored ('' when none)."""
    lack = long.attrs.get("lacking", [])
    if not lack:
        return ""
    return (f"{len(lack)} proposed cell(s) stored no training scores (run before they were kept), so no rule can "
            f"be refitted on them: {', '.join(lack)}.")


def rule_summary(long: pd.DataFrame) -> str:
    """Markdown: per row, the mean accuracy under each rule beside the paper's mean over the
    same classes (the numbers the methods chapter's note on the rule points to)."""
    means = rule_means(long)
    if means.empty:
        return ("No *proposed* cell of protocol imbalanced has stored training scores yet, so no threshold rule "
                "can be compared; `python -m capslib run --profile <profile> --protocol imbalanced` fills them in.")
    lines = []
    for r in means.itertuples(index=False):
        rec = dict(zip(means.columns, r))
        rules = "; ".join(f"{rule} {fmt(rec[rule], rec[f'{rule} std'], rec['seeds'])}" for rule in THRESHOLD_RULES)
        seeds = f"{rec['seeds']} seed{'s' if rec['seeds'] != 1 else ''}"
        paper = (f"paper A over the same classes {fmt(rec['paper'])}"
                 + ("" if rec["n_classes"] == 10 else f" (its printed mean over 0–9: {fmt(rec['paper_printed'])})"))
        lines.append(f"- **{rec['dataset']}, {rec['row']}** (classes {rec['classes']}, {seeds}): {rules} "
                     f"(the oracle is an upper bound, not a result); {paper}.")
    return "\n".join(lines)


def headline_rows(df: pd.DataFrame, first: pd.DataFrame, rules: pd.DataFrame) -> pd.DataFrame:
    """Paper A's rows as the study reports them, one line per (dataset, variant, fraction): the
    cells and how many of their headline records (last attempt of the stall rule) stalled; the
    row mean under the plain rule (the table's) and, for *proposed*, the class-balanced rule,
    each ± its std over seeds; paper A over the same classes; Δ of each; and the mean over every
    cell's *first* training beside them, with its stall count. ``df`` holds the headline records
    (:func:`capslib.views.report.load_rows`), ``first`` every cell's first training, ``rules``
    the threshold rules on ``df``'s proposed cells (:func:`rule_long`)."""
    imb = lambda d: d[(d["protocol"] == "imbalanced") & (d["method"] == "capsnet")]
    h, f = report.headline(imb(df)), report.headline(imb(first))
    balanced = rules[rules["rule"] == "balanced logistic"]
    out = []
    for (ds, v, frac), g in h.groupby(["dataset", "variant", "anomaly_fraction"]):
        paper = {c: pn.paper_a_accuracy(ds, v, frac, c) for c in range(10)}
        plain = like_mean(g.assign(value=100 * g["accuracy"]), paper)
        g1 = f[(f["dataset"] == ds) & (f["variant"] == v) & (f["anomaly_fraction"] == frac)]
        firsts = like_mean(g1.assign(value=100 * g1["accuracy"]), paper) if len(g1) else {"mean": np.nan}
        n_stalled, n_first = int((g["stalled"] == "yes").sum()), int((g1["stalled"] == "yes").sum())
        seeds = g["seed"].nunique()
        rec = {"dataset": ds, "row": ROW_LABEL.format(variant=v, fraction=frac),
               "cells": f"{len(g)} ({seeds} seed{'s' if seeds > 1 else ''})",
               "stalled": f"{n_stalled} ({n_first} at first, {int((g['attempts'] > 1).sum())} retrained)",
               "plain rule": fmt(plain["mean"], plain["std"], plain["n"]), "balanced rule": "–",
               "paper A": fmt(plain["paper"]), "Δ plain": _delta(plain), "Δ balanced": "–",
               "first trainings": fmt(firsts["mean"])}
        if v == "proposed":
            b = balanced[(balanced["dataset"] == ds) & (balanced["anomaly_fraction"] == frac)]
            if len(b):
                bal = like_mean(b.rename(columns={"accuracy": "value"}), paper)
                rec.update({"balanced rule": fmt(bal["mean"], bal["std"], bal["n"]), "Δ balanced": _delta(bal)})
        rec["classes"] = class_span(plain["classes"])
        out.append(rec)
    cols = ["dataset", "row", "classes", "cells", "stalled", "plain rule", "balanced rule", "paper A", "Δ plain",
            "Δ balanced", "first trainings"]
    res = pd.DataFrame(out, columns=cols)
    order = {"standard 10%": 0, "proposed 10%": 1, "standard 1%": 2, "proposed 1%": 3}
    res = res.sort_values(["dataset", "row"], key=lambda s: s.map(order).fillna(s) if s.name == "row" else s)
    return res.set_index(["dataset", "row"])


def _delta(m: dict) -> str:
    d = m["mean"] - m["paper"]
    return "–" if pd.isna(d) else f"{d:+.2f}"
