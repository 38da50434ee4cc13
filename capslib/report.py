"""Results as pandas tables for the book: ours (mean ± std over seeds) beside the papers.

Every number here is read from a results store (:class:`capslib.store.ResultsStore`);
the papers' numbers come from :mod:`capslib.paper_numbers`. No plotting.

Conventions: accuracies are shown in % like paper A; AUROC/AUPRC as fractions; the std is
the sample std over seeds (ddof = 1), left out when there is one seed; "Δ" is ours − paper.
The headline accuracy of paper A's rows is score ``length_difference`` at threshold 0 for
variant *standard* (anomaly iff ‖z_a‖ > ‖z_n‖) and ``anomaly_score`` at the logistic
threshold for variant *proposed*.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pandas as pd

from . import paper_numbers as pn
from .store import ResultsStore

HEADLINE = {"standard": "length_difference", "proposed": "anomaly_score"}
ROW_LABEL = "{variant} {fraction:.0%}"


def open_store(results_root="results", profile: str = "quick") -> ResultsStore:
    return ResultsStore(results_root, profile)


def to_frame(rows: list[dict]) -> pd.DataFrame:
    """One row per (cell, score) with tidy dtypes (held_out a string like "0+3+5")."""
    df = pd.DataFrame(rows)
    if df.empty:
        from .store import CSV_COLUMNS
        return pd.DataFrame(columns=CSV_COLUMNS)
    df["normal_class"] = pd.to_numeric(df["normal_class"], errors="coerce").astype("Int64")
    df["anomaly_fraction"] = pd.to_numeric(df["anomaly_fraction"], errors="coerce")
    df["held_out"] = df["held_out"].fillna("").astype(str)
    df["variant"] = df["variant"].fillna("").astype(str)
    for c in ("accuracy", "auroc", "auprc", "threshold", "train_seconds"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def load_rows(results_root="results", profile: str = "quick") -> pd.DataFrame:
    """Every finished cell of a store, one row per (cell, score)."""
    return to_frame(open_store(results_root, profile).rows())


def load_or_run(profile: str = "quick", results_root="results", protocol: Optional[str] = None,
                datasets: Optional[Sequence[str]] = None, classes: Optional[Sequence[int]] = None,
                fractions: Optional[Sequence[float]] = None, seeds: Optional[Sequence[int]] = None,
                epochs: Optional[int] = None, methods: Optional[Sequence[str]] = None,
                extra_held_outs: Optional[Sequence[Sequence[int]]] = None, data_root=None,
                train: bool = True, device=None, show_progress: bool = False) -> pd.DataFrame:
    """The rows of the profile's grid, narrowed like the CLI; trains the missing cells first.

    ``extra_held_outs`` (novelty case studies, e.g. ``[[0, 3, 5]]``) replaces the grid's for
    every novelty dataset; ``None`` keeps the profile's (``classes`` drops them, as in the CLI).
    With ``train=False`` missing cells are listed, not trained. The run report is in
    ``df.attrs["run"]`` and the cells asked for in ``df.attrs["cells"]``.
    """
    from dataclasses import replace

    from .runner import narrow, profile_grid, run_grid

    grid = narrow(profile_grid(profile), protocol=protocol, datasets=datasets, classes=classes,
                  fractions=fractions, seeds=seeds, epochs=epochs, methods=methods)
    if extra_held_outs is not None:
        grid = replace(grid, extra_held_outs={ds: [tuple(h) for h in extra_held_outs]
                                              for ds in grid.novelty_datasets})
    cells = grid.cells()
    store = open_store(results_root, profile)
    if train:
        rep = run_grid(cells, store, data_root, device, show_progress=show_progress)
    else:
        rep = {"ran": [], "skipped": [c.cell_id for c in cells if store.is_done(c)],
               "missing": [c.cell_id for c in cells if not store.is_done(c)], "failed": {}}
    ids = {c.cell_id for c in cells}
    df = to_frame([r for r in store.rows() if r["cell_id"] in ids])
    df.attrs.update(run=rep, cells=sorted(ids), profile=profile, results_root=str(results_root))
    return df


SHOWN_IDS = 8   # cell ids a run summary names before "and N more"


def run_summary(df: pd.DataFrame) -> str:
    """One line: how many cells were asked for, trained now, reused, failed or missing."""
    rep = df.attrs.get("run", {})
    parts = [f"{len(df.attrs.get('cells', []))} cells asked for", f"{len(rep.get('ran', []))} trained now",
             f"{len(rep.get('skipped', []))} read from the store"]
    for key in ("failed", "missing"):
        if rep.get(key):
            ids = sorted(rep[key])
            more = f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else ""
            parts.append(f"{len(ids)} {key}: {', '.join(ids[:SHOWN_IDS])}{more}")
    return "; ".join(parts) + "."


# ---- aggregation -------------------------------------------------------------------------

def _agg(df: pd.DataFrame, keys: list[str], value: str, scale: float = 1.0) -> pd.DataFrame:
    """mean, std (ddof 1) and n over seeds of ``value`` for each group of ``keys``."""
    if df.empty:
        return pd.DataFrame(columns=keys + ["mean", "std", "n"])
    g = df.assign(_v=df[value] * scale).groupby(keys, dropna=False)["_v"]
    return g.agg(mean="mean", std="std", n="count").reset_index()


def fmt(mean, std=np.nan, n=1, digits: int = 2) -> str:
    """"m ± s" (± only with two or more seeds); "–" for a missing value."""
    if mean is None or pd.isna(mean):
        return "–"
    if n and n > 1 and not pd.isna(std):
        return f"{mean:.{digits}f} ± {std:.{digits}f}"
    return f"{mean:.{digits}f}"


def class_span(classes) -> str:
    """"0–3" for a run of consecutive classes, "0, 2, 5" otherwise."""
    cs = sorted(int(c) for c in classes)
    if len(cs) > 2 and cs == list(range(cs[0], cs[-1] + 1)):
        return f"{cs[0]}–{cs[-1]}"
    return ", ".join(map(str, cs))


def like_mean(values: pd.DataFrame, paper: dict) -> dict:
    """A row mean set beside the paper's over the *same* classes only.

    ``values``: columns ``normal_class``, ``seed``, ``value`` (ours, one row of a table);
    ``paper``: normal class -> the paper's number (None where it has none). The classes
    compared are those both have (all of ours when the paper has none). Ours is the mean
    over those classes of the per-class mean over seeds; its std (ddof 1) is that of the
    per-seed means over the seeds that ran *every* one of those classes, given only when at
    least two did. Returns classes, mean, std, n (seeds behind the std), paper (its mean
    over the same classes; NaN when it has none) and complete (all ten classes).
    """
    have = sorted(int(c) for c in values["normal_class"].dropna().unique())
    shared = [c for c in have if paper.get(c) is not None]
    classes = shared or have
    sel = values[values["normal_class"].isin(classes)]
    per_class = sel.groupby("normal_class")["value"].mean()
    full = [g for _, g in sel.groupby("seed") if set(g["normal_class"]) >= set(classes)]
    seed_means = [g.groupby("normal_class")["value"].mean().mean() for g in full]
    return {"classes": classes, "mean": float(per_class.mean()) if len(per_class) else np.nan,
            "std": float(np.std(seed_means, ddof=1)) if len(seed_means) >= 2 else np.nan, "n": len(seed_means),
            "paper": float(np.mean([paper[c] for c in shared])) if shared else np.nan,
            "complete": len(classes) == 10}


def held_out_order(labels) -> list[str]:
    """Held-out labels sorted: single classes by number, then the multi-class sets."""
    return sorted(set(labels), key=lambda h: (h.count("+"), [int(x) for x in h.split("+") if x != ""]))


def datasets(df: pd.DataFrame, protocol: str) -> list[str]:
    return sorted(df.loc[df["protocol"] == protocol, "dataset"].unique()) if len(df) else []


# ---- paper A -----------------------------------------------------------------------------

def headline(df: pd.DataFrame) -> pd.DataFrame:
    """Paper A's decision per variant: one row per imbalanced CapsNet cell."""
    imb = df[(df["protocol"] == "imbalanced") & (df["method"] == "capsnet")]
    return imb[imb["score"] == imb["variant"].map(HEADLINE)]


def accuracy_long(df: pd.DataFrame) -> pd.DataFrame:
    """Ours (mean, std, n over seeds, %) beside paper A per class, plus each row's mean over
    the classes we ran (per seed, then over seeds); ``diff`` = ours − paper."""
    h = headline(df)
    keys = ["dataset", "variant", "anomaly_fraction"]
    per = _agg(h, keys + ["normal_class"], "accuracy", 100.0)
    per["normal_class"] = per["normal_class"].astype(object)
    per["paper"] = [pn.paper_a_accuracy(r.dataset, r.variant, r.anomaly_fraction, r.normal_class)
                    for r in per.itertuples()]
    seed_means = h.groupby(keys + ["seed"])["accuracy"].mean().reset_index()
    means = _agg(seed_means, keys, "accuracy", 100.0).assign(normal_class="mean")
    means["paper"] = [_paper_mean(per, r) for r in means.itertuples()]
    out = pd.concat([per, means], ignore_index=True)
    out["paper"] = pd.to_numeric(out["paper"], errors="coerce")
    out["diff"] = out["mean"] - out["paper"]
    out["reference"] = out["dataset"].map(lambda d: pn.REFERENCE_DATASET.get(d, ""))
    out["row"] = [ROW_LABEL.format(variant=r.variant, fraction=r.anomaly_fraction) for r in out.itertuples()]
    return out


def _paper_mean(per: pd.DataFrame, r) -> float:
    """Paper A's mean over the same classes as ours (its printed mean when all 10 ran)."""
    sel = per[(per["dataset"] == r.dataset) & (per["variant"] == r.variant)
              & (per["anomaly_fraction"] == r.anomaly_fraction)]["paper"]
    return float(np.mean(sel)) if len(sel) and sel.notna().all() else np.nan


def accuracy_table(df: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Paper A's table layout for one dataset: rows (variant f, ours/paper/Δ), columns the
    normal classes and the mean."""
    long = accuracy_long(df)
    long = long[long["dataset"] == dataset]
    if long.empty:
        return pd.DataFrame()
    ref = pn.REFERENCE_DATASET.get(dataset, "")
    cols = sorted(c for c in long["normal_class"].unique() if c != "mean") + ["mean"]
    records = {}
    for (variant, f), g in _row_groups(long):
        label = ROW_LABEL.format(variant=variant, fraction=f)
        g = g.set_index("normal_class").reindex(cols)
        records[(label, "ours")] = {c: fmt(g.at[c, "mean"], g.at[c, "std"], g.at[c, "n"]) for c in cols}
        records[(label, f"paper ({ref})")] = {c: fmt(g.at[c, "paper"]) for c in cols}
        records[(label, "Δ")] = {c: _signed(g.at[c, "diff"]) for c in cols}
    out = pd.DataFrame.from_dict(records, orient="index")
    out.index = pd.MultiIndex.from_tuples(out.index, names=["row", ""])
    out.columns = [f"class {c}" if c != "mean" else "mean" for c in cols]
    return out


def _row_groups(long: pd.DataFrame):
    order = {"standard": 0, "proposed": 1}
    keys = sorted(long.groupby(["variant", "anomaly_fraction"]).groups,
                  key=lambda k: (-k[1], order.get(k[0], 2), k[0]))
    for k in keys:
        yield k, long[(long["variant"] == k[0]) & (long["anomaly_fraction"] == k[1])]


def _signed(x) -> str:
    return "–" if pd.isna(x) else f"{x:+.2f}"


def metric_table(df: pd.DataFrame, dataset: str, metric: str = "auroc") -> pd.DataFrame:
    """Protocol imbalanced: ``metric`` (auroc, auprc or accuracy) of every score, rows
    (variant f, score), columns the normal classes and their mean (per seed, then over seeds)."""
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
    cols = sorted(c for c in wide.columns if c != "mean") + ["mean"]
    wide = wide[cols].droplevel(0)
    wide.columns = [f"class {c}" if c != "mean" else "mean" for c in cols]
    return wide.fillna("–")


# ---- paper B -----------------------------------------------------------------------------

def novelty_long(df: pd.DataFrame, metric: str = "auroc") -> pd.DataFrame:
    """Protocol novelty: mean, std, n over seeds per (dataset, held_out, method:score)."""
    nov = df[df["protocol"] == "novelty"]
    nov = nov.assign(column=nov["method"] + ":" + nov["score"])
    return _agg(nov, ["dataset", "held_out", "column"], metric)


def novelty_table(df: pd.DataFrame, dataset: str, metric: str = "auroc") -> pd.DataFrame:
    """Paper B Figs. 5–7 as a table: rows the held-out class(es), columns every
    ``method:score`` present, values mean ± std over seeds."""
    long = novelty_long(df, metric)
    long = long[long["dataset"] == dataset]
    if long.empty:
        return pd.DataFrame()
    long = long.assign(text=[fmt(r.mean, r.std, r.n, 3) for r in long.itertuples()])
    wide = long.pivot(index="held_out", columns="column", values="text")
    cols = sorted(wide.columns, key=lambda c: (not c.startswith("capsnet:"), c))
    wide = wide.loc[held_out_order(wide.index), cols].fillna("–")
    wide.index.name = "held-out class(es)"
    return wide


def case_studies(df: pd.DataFrame) -> pd.DataFrame:
    """Paper B §3.1 case studies (held-out 2, 9, {0,3,5}) on every dataset whose reference is
    MNIST: our CapsNet PP and RE AUROC beside the paper's numbers and claims; PP − RE is
    computed per seed, then averaged."""
    out = []
    for dataset in [d for d in datasets(df, "novelty") if pn.REFERENCE_DATASET.get(d) == "mnist"]:
        out += _case_rows(df[(df["protocol"] == "novelty") & (df["dataset"] == dataset) & (df["method"] == "capsnet")],
                          dataset)
    return pd.DataFrame(out)


def _case_rows(nov: pd.DataFrame, dataset: str) -> list[dict]:
    out = []
    for case in pn.PAPER_B_CASE_STUDIES:
        sel = nov[nov["held_out"] == case["held_out"]]
        if sel.empty:
            continue
        piv = sel.pivot_table(index="seed", columns="score", values="auroc")
        if not {"pp", "re"} <= set(piv.columns):
            continue
        d = piv["pp"] - piv["re"]
        n = len(piv)
        out.append({"dataset": dataset, "held-out": case["held_out"], "ours PP": fmt(piv["pp"].mean(), piv["pp"].std(), n, 4),
                    "ours RE": fmt(piv["re"].mean(), piv["re"].std(), n, 4),
                    "ours PP − RE": fmt(d.mean(), d.std(), n, 4),
                    "paper PP": fmt(case["pp"], digits=4), "paper RE": fmt(case["re"], digits=4),
                    "paper PP − RE": fmt(case["pp_minus_re"], digits=2), "paper says": case["claim"],
                    "source": case["source"], "seeds": n})
    return out


def dataset_note(dataset: str, protocol: str = "imbalanced") -> str:
    """A sentence (Markdown) saying which published numbers stand beside a dataset's."""
    ref = pn.REFERENCE_DATASET.get(dataset)
    if protocol == "imbalanced":
        src = pn.PAPER_A_SOURCE.get(ref)
        if src is None:
            return f"**{dataset}**: paper A reports no numbers for this dataset."
        if ref != dataset:
            return (f"**{dataset}** is scikit-learn's embedded 8×8 digits, upsampled: *not* the paper's data. "
                    f"Paper A's {ref.upper()} numbers ({src}) stand beside ours as a reference only.")
        return f"**{dataset}**: paper A's numbers are from its {src}."
    fig, claim = pn.PAPER_B_CLAIMS.get(ref, (None, None))
    if fig is None:
        return f"**{dataset}**: paper B reports no results for this dataset."
    lead = (f"**{dataset}** is scikit-learn's embedded digits, *not* MNIST; paper B's MNIST statements are a reference only. "
            if ref != dataset else f"**{dataset}**: ")
    return lead + f"Paper B ({fig}, bar charts without printed numbers) says: {claim}"


# ---- cost and provenance -------------------------------------------------------------------

CELL_COLUMNS = ["cell_id", "protocol", "dataset", "method", "variant", "normal_class", "held_out",
                "anomaly_fraction", "seed", "epochs", "train_seconds", "device", "torch", "commit", "finished_utc"]


def cells(df: pd.DataFrame) -> pd.DataFrame:
    """One row per cell (the score rows collapsed)."""
    return df.drop_duplicates("cell_id")[[c for c in CELL_COLUMNS if c in df.columns]].reset_index(drop=True)


def cost_table(df: pd.DataFrame) -> pd.DataFrame:
    """Training time, device and commit per cell."""
    return cells(df).sort_values(["protocol", "dataset", "method", "cell_id"]).reset_index(drop=True)


def cost_totals(df: pd.DataFrame) -> pd.DataFrame:
    """Cells and training seconds per (protocol, dataset, method, device), with a total row."""
    c = cells(df)
    if c.empty:
        return pd.DataFrame(columns=["protocol", "dataset", "method", "device", "cells", "train_seconds"])
    t = c.groupby(["protocol", "dataset", "method", "device"]).agg(
        cells=("cell_id", "count"), train_seconds=("train_seconds", "sum")).reset_index()
    total = {"protocol": "all", "dataset": "", "method": "", "device": "",
             "cells": int(t["cells"].sum()), "train_seconds": float(t["train_seconds"].sum())}
    return pd.concat([t, pd.DataFrame([total])], ignore_index=True).round({"train_seconds": 1})


def provenance(df: pd.DataFrame) -> pd.DataFrame:
    """Where the shown numbers came from: per (commit, device, torch) the cells, seeds,
    epochs and the first and last finishing time (UTC)."""
    c = cells(df)
    if c.empty:
        return pd.DataFrame(columns=["commit", "device", "torch", "cells", "seeds", "epochs", "first", "last"])
    join = lambda s: ", ".join(str(v) for v in sorted(set(s)))
    return c.groupby(["commit", "device", "torch"]).agg(
        cells=("cell_id", "count"), seeds=("seed", join), epochs=("epochs", join),
        first=("finished_utc", "min"), last=("finished_utc", "max")).reset_index()
