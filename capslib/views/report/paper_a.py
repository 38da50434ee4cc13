"""Paper A's tables: headline accuracies beside the paper's, and any metric per row."""
from __future__ import annotations

import pandas as pd

from capslib.study import paper_numbers as pn

from capslib.views.report.load import HEADLINE, ROW_LABEL
from capslib.views.report.fmt import _agg, class_span, fmt, like_mean


def headline(df: pd.DataFrame) -> pd.DataFrame:
    """Paper A's decision per variant: one row per imbalanced CapsNet cell."""
    imb = df[(df["protocol"] == "imbalanced") & (df["method"] == "capsnet")]
    return imb[imb["score"] == imb["variant"].map(HEADLINE)]


#: with one seed, a class or mean of ours is marked when it differs from the paper's by more
#: than this many percentage points (with two or more seeds: by more than their std)
MARGIN_PP = 1.0


def accuracy_long(df: pd.DataFrame) -> pd.DataFrame:
    """Ours (mean, std, n over seeds, %) beside paper A per class, plus each row's mean over
    the classes both have (:func:`like_mean`); ``diff`` = ours − paper, ``flag`` where |diff|
    exceeds the std over seeds (two or more seeds) or :data:`MARGIN_PP` (one seed)."""
    h = headline(df)
    keys = ["dataset", "variant", "anomaly_fraction"]
    per = _agg(h, keys + ["normal_class"], "accuracy", 100.0)
    per["normal_class"] = per["normal_class"].astype(object)
    per["paper"] = [pn.paper_a_accuracy(r.dataset, r.variant, r.anomaly_fraction, r.normal_class)
                    for r in per.itertuples()]
    means = []
    for (ds, v, f), g in h.groupby(keys):
        paper = {c: pn.paper_a_accuracy(ds, v, f, c) for c in range(10)}
        m = like_mean(g.assign(value=100.0 * g["accuracy"]), paper)
        means.append({"dataset": ds, "variant": v, "anomaly_fraction": f, "normal_class": "mean", "mean": m["mean"],
                      "std": m["std"], "n": m["n"], "paper": m["paper"], "classes": class_span(m["classes"]),
                      "complete": m["complete"]})
    out = pd.concat([per, pd.DataFrame(means)], ignore_index=True) if means else per
    out["paper"] = pd.to_numeric(out["paper"], errors="coerce")
    out["diff"] = out["mean"].round(2) - out["paper"]   # from the printed (2-decimal) numbers, so Δ adds up
    out["flag"] = [bool(abs(d) > (s if n >= 2 and not pd.isna(s) else MARGIN_PP)) if not pd.isna(d) else False
                   for d, s, n in zip(out["diff"], out["std"], out["n"])]
    out["reference"] = out["dataset"].map(lambda d: pn.REFERENCE_DATASET.get(d, ""))
    out["row"] = [ROW_LABEL.format(variant=r.variant, fraction=r.anomaly_fraction) for r in out.itertuples()]
    return out


def accuracy_table(df: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Paper A's table layout for one dataset: rows (variant f, ours/paper/Δ), columns the
    mean over the classes both have, then the normal classes (the classes named in the cell
    when not all ten). A Δ marked ``*`` exceeds the spread (see :func:`accuracy_caption`).
    For a dataset that is not the paper's (the embedded digits) the paper's line is a
    reference only and no Δ is printed: it would compare different data."""
    long = accuracy_long(df)
    long = long[long["dataset"] == dataset]
    if long.empty:
        return pd.DataFrame()
    ref = pn.REFERENCE_DATASET.get(dataset, "")
    same_data = ref == dataset
    # the mean first, beside the row's name: a wide table scrolls, and the mean stays in view
    cols = ["mean"] + sorted(c for c in long["normal_class"].unique() if c != "mean")
    records = {}
    for (variant, f), g in row_groups(long):
        label = ROW_LABEL.format(variant=variant, fraction=f)
        g = g.set_index("normal_class").reindex(cols)
        span = "" if g.at["mean", "complete"] == True else f" (classes {g.at['mean', 'classes']})"
        ours = {c: fmt(g.at[c, "mean"], g.at[c, "std"], g.at[c, "n"]) for c in cols}
        paper = {c: fmt(g.at[c, "paper"]) for c in cols}
        ours["mean"] += span if ours["mean"] != "–" else ""
        paper["mean"] += span if paper["mean"] != "–" else ""
        records[(label, "ours")] = ours
        records[(label, f"paper ({ref})" if same_data else f"paper ({ref}, reference only)")] = paper
        if same_data:
            records[(label, "Δ")] = {c: _signed(g.at[c, "diff"]) + ("*" if g.at[c, "flag"] == True else "")  # noqa: E712
                                       for c in cols}   # (== True: the flag is NaN in an empty cell)
    out = pd.DataFrame.from_dict(records, orient="index")
    out.index = pd.MultiIndex.from_tuples(out.index, names=["row", ""])
    out.columns = [f"class {c}" if c != "mean" else "mean" for c in cols]
    return out


def accuracy_caption(df: pd.DataFrame, dataset: str) -> str:
    """Markdown above a dataset's accuracy table: how many seeds stand behind its numbers,
    what ± and the mean column are, and what a ``*`` on Δ means."""
    h = headline(df)
    h = h[h["dataset"] == dataset]
    if h.empty:
        return ""
    seeds = sorted(int(x) for x in h["seed"].unique())
    per_class = h.groupby(["variant", "anomaly_fraction", "normal_class"])["seed"].nunique()
    n_lo, n_hi = int(per_class.min()), int(per_class.max())
    n_txt = f"{n_lo}" if n_lo == n_hi else f"{n_lo} to {n_hi}"
    one = n_hi == 1
    text = (f"**{n_txt} seed{'s' if n_hi > 1 else ''} per number** (seed{'s' if len(seeds) > 1 else ''} "
            f"{', '.join(map(str, seeds))}); paper A reports one run per number. "
            + ("With one seed there is no spread: no ± is printed. " if one else
               "± is the std over seeds, printed only where two or more seeds ran. ")
            + "The mean column is over the classes both we and the paper have, named in the cell when fewer than ten.")
    if pn.REFERENCE_DATASET.get(dataset) == dataset:
        text += (f" A `*` marks a Δ larger than {'the stated margin of ' + f'{MARGIN_PP:.1f}' + ' points (one seed)' if one else 'the std over seeds (or, with one seed, ' + f'{MARGIN_PP:.1f} points)'}.")
    return text


def row_groups(long: pd.DataFrame):
    order = {"standard": 0, "proposed": 1}
    keys = sorted(long.groupby(["variant", "anomaly_fraction"]).groups,
                  key=lambda k: (-k[1], order.get(k[0], 2), k[0]))
    for k in keys:
        yield k, long[(long["variant"] == k[0]) & (long["anomaly_fraction"] == k[1])]


def _signed(x) -> str:
    return "–" if pd.isna(x) else f"{x:+.2f}"


def metric_table(df: pd.DataFrame, dataset: str, metric: str = "auroc") -> pd.DataFrame:
    """Protocol imbalanced: ``metric`` (auroc, auprc or accuracy) of every score, rows
    (variant f, score), columns the normal classes' mean, then the classes (per seed, then over seeds)."""
    imb = df[(df["protocol"] == "imbalanced") & (df["dataset"] == dataset)].copy()
    if imb.empty:
        return pd.DataFrame()
    imb["row"] = [ROW_LABEL.format(variant=v if m == "capsnet" else m, fraction=f)
                  for m, v, f in zip(imb["method"], imb["variant"], imb["anomaly_fraction"])]
    imb["_f"] = [(-f, {"standard": 0, "proposed": 1}.get(v, 2)) for f, v in zip(imb["anomaly_fraction"], imb["variant"])]
    keys = ["_f", "row", "score"]
    per = _agg(imb, keys + ["normal_class"], metric)
    seed_means = imb.groupby(keys + ["seed"])[metric].mean().reset_index()
    means = _agg(seed_means, keys, metric).assign(normal_class="mean")
    both = pd.concat([per, means], ignore_index=True)
    both["text"] = [fmt(r.mean, r.std, r.n, 3) for r in both.itertuples()]
    wide = both.pivot(index=keys, columns="normal_class", values="text")
    cols = ["mean"] + sorted(c for c in wide.columns if c != "mean")   # the mean beside the row's name
    wide = wide[cols].droplevel(0)
    wide.columns = [f"class {c}" if c != "mean" else "mean" for c in cols]
    return wide.fillna("–")
