"""Aggregation over seeds and the formatting of a table's cells (mean ± std, class spans)."""
from __future__ import annotations

import numpy as np
import pandas as pd


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
