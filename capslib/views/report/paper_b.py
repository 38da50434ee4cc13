"""Paper B's tables: AUROC per held-out class beside the paper's, and the case studies."""
from __future__ import annotations

import pandas as pd
from capslib.study import paper_numbers as pn

from capslib.views.report.fmt import _agg, datasets, fmt, held_out_order


def novelty_long(df: pd.DataFrame, metric: str = "auroc") -> pd.DataFrame:
    """Protocol novelty: mean, std, n over seeds per (dataset, held_out, method:score)."""
    nov = df[df["protocol"] == "novelty"]
    nov = nov.assign(column=nov["method"] + ":" + nov["score"])
    return _agg(nov, ["dataset", "held_out", "column"], metric)


def novelty_table(df: pd.DataFrame, dataset: str, metric: str = "auroc") -> pd.DataFrame:
    """Paper B Figs. 5–7 as a table: rows the held-out class(es), columns every
    ``method:score`` present as two header rows (the method over its scores, so the columns are
    as narrow as their numbers), values mean ± std over seeds."""
    long = novelty_long(df, metric)
    long = long[long["dataset"] == dataset]
    if long.empty:
        return pd.DataFrame()
    long = long.assign(text=[fmt(r.mean, r.std, r.n, 3) for r in long.itertuples()])
    wide = long.pivot(index="held_out", columns="column", values="text")
    cols = sorted(wide.columns, key=lambda c: (not c.startswith("capsnet:"), c))
    wide = wide.loc[held_out_order(wide.index), cols].fillna("–")
    wide.columns = pd.MultiIndex.from_tuples([tuple(c.split(":", 1)) for c in cols], names=["method", "score"])
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
                    "paper PP − RE": case["pp_minus_re_text"], "paper says": case["claim"],
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
