"""Paper B's tables: AUROC per held-out class beside the paper's, and the case studies."""
from __future__ import annotations

import pandas as pd

from capslib.core.config import held_out_label, parse_novelty_cell_id
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


def case_studies(df: pd.DataFrame, store=None) -> pd.DataFrame:
    """Paper B §3.1 case studies (held-out 2, 9, {0,3,5}) on every dataset asked for whose
    reference is MNIST: our CapsNet PP and RE AUROC beside the paper's numbers and claims (PP − RE
    per seed, then averaged), and the reference detectors' AUROC on the same held-out classes, one
    column per detector and score (:data:`REFERENCE`). A
    case with no CapsNet cell yet stays in the table and says so: in flight (its epoch and the
    training time left, from ``store``'s checkpoints) or not trained yet."""
    asked = {p["dataset"] for cid in df.attrs.get("cells", []) if (p := parse_novelty_cell_id(cid))}
    out = []
    for dataset in sorted(asked | set(datasets(df, "novelty"))):
        if pn.REFERENCE_DATASET.get(dataset) != "mnist":
            continue
        sel = df[(df["protocol"] == "novelty") & (df["dataset"] == dataset)] if len(df) else df
        out += _case_rows(sel, dataset, _in_flight(store))
    return pd.DataFrame(out)


REFERENCE = "AUROC of"    # the case studies' columns of the reference detectors: "AUROC of dbn:re"


def _in_flight(store) -> dict:
    if store is None:
        return {}
    from capslib.core.cache import in_flight
    return {m["cell_id"]: m for m in in_flight(store.dir)}


def _case_rows(nov: pd.DataFrame, dataset: str, flying: dict) -> list[dict]:
    out = []
    for case in pn.PAPER_B_CASE_STUDIES:
        sel = nov[nov["held_out"] == case["held_out"]] if len(nov) else nov
        caps = sel[sel["method"] == "capsnet"] if len(sel) else sel
        piv = caps.pivot_table(index="seed", columns="score", values="auroc") if len(caps) else pd.DataFrame()
        refs = sel[sel["method"] != "capsnet"] if len(sel) else sel
        ref_auroc = refs.groupby(["method", "score"])["auroc"].mean() if len(refs) else pd.Series(dtype=float)
        rec = {"dataset": dataset, "held-out": case["held_out"],
               "paper PP": fmt(case["pp"], digits=4), "paper RE": fmt(case["re"], digits=4),
               "paper PP − RE": case["pp_minus_re_text"], "paper says": case["claim"], "source": case["source"],
               **{f"{REFERENCE} {m}:{sc}": f"{a:.4f}" for (m, sc), a in ref_auroc.items()}}
        if {"pp", "re"} <= set(piv.columns):
            d, n = piv["pp"] - piv["re"], len(piv)
            rec.update({"ours PP": fmt(piv["pp"].mean(), piv["pp"].std(), n, 4),
                        "ours RE": fmt(piv["re"].mean(), piv["re"].std(), n, 4),
                        "ours PP − RE": fmt(d.mean(), d.std(), n, 4), "seeds": n})
            rec.update({f"{s.upper()} − paper": _signed(piv[s].mean() - case[s] if case[s] is not None else None)
                        for s in ("pp", "re")})
        else:
            m = next((m for k, m in flying.items() if (p := parse_novelty_cell_id(k)) and p["dataset"] == dataset
                      and p["method"] == "capsnet" and held_out_label(p["held_out"]) == case["held_out"]), None)
            from capslib.run.progress import seconds_left
            secs = seconds_left(m) if m else None
            left = "" if secs is None else f", about {secs / 3600:.1f} h of training left"
            status = f"in flight: epoch {m['epoch']}/{m['epochs']}{left}" if m else "not trained yet"
            rec.update({"ours PP": status, "ours RE": "–", "ours PP − RE": "–", "seeds": 0, "PP − paper": "–",
                        "RE − paper": "–"})
        out.append(rec)
    cols = ["dataset", "held-out", "ours PP", "ours RE", "ours PP − RE", "paper PP", "paper RE", "PP − paper",
            "RE − paper", "paper PP − RE", "paper says", "source", "seeds"]
    per_ref = sorted({k for r in out for k in r if k.startswith(REFERENCE)})
    return [{**{k: r[k] for k in cols}, **{k: r.get(k, "–") for k in per_ref}} for r in out]


def case_study_table(cases: pd.DataFrame) -> pd.DataFrame:
    """:func:`case_studies` for reading: one column per case ("mnist · held out 2"), one row per
    field and per reference detector's score, so that each long field gets a column's width
    instead of fourteen columns squeezing into the page."""
    if cases.empty:
        return cases
    table = cases.set_index(["dataset", "held-out"]).T
    table.columns = [f"{d} · held out {h}" for d, h in table.columns]
    table.index.name = "case"
    return table


def _signed(x) -> str:
    """"+0.0106" / "−0.0031": ours (the mean over seeds) minus the paper's AUROC; "–" where the paper gives none."""
    return "–" if x is None or pd.isna(x) else f"{x:+.4f}".replace("-", "−")


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
