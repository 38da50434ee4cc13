"""What the runs cost and where they ran, and how many trainings ended on the loss plateau."""
from __future__ import annotations

import pandas as pd

from capslib.run.store.results import ResultsStore
from capslib.run.store.schema import stalled


CELL_COLUMNS = ["cell_id", "protocol", "dataset", "method", "variant", "normal_class", "held_out",
                "anomaly_fraction", "seed", "epochs", "train_seconds", "device", "torch", "commit", "finished_utc"]


def cells(df: pd.DataFrame) -> pd.DataFrame:
    """One row per cell (the score rows collapsed)."""
    return df.drop_duplicates("cell_id")[[c for c in CELL_COLUMNS if c in df.columns]].reset_index(drop=True)


COST_COLUMNS = ["cell_id", "train_seconds", "finished_utc"]


def cost_table(df: pd.DataFrame) -> pd.DataFrame:
    """Training time and finishing time per cell (the cell id names protocol, dataset, method,
    class, fraction, seed, epochs and batch; device, torch and commit are in the provenance
    table), narrow enough for the text column."""
    c = cells(df)
    if c.empty:
        return pd.DataFrame(columns=COST_COLUMNS)
    c = c.sort_values(["protocol", "dataset", "method", "cell_id"]).reset_index(drop=True)
    return c[COST_COLUMNS]


SLOWEST = 15   # cells a chapter lists by training time (every cell: the overview page, cells.csv)


def slowest_cells(df: pd.DataFrame, n: int = SLOWEST) -> pd.DataFrame:
    """The ``n`` cells that trained longest, longest first, with their device (a chapter's cost
    table stays readable at the whole grid's 1,035 cells; every cell is on the profile's
    overview page and in ``cells.csv``)."""
    c = cells(df)
    cols = ["cell_id", "train_seconds", "device", "finished_utc"]
    if c.empty:
        return pd.DataFrame(columns=cols)
    c = c.sort_values(["train_seconds", "cell_id"], ascending=[False, True]).head(n).reset_index(drop=True)
    return c[[k for k in cols if k in c.columns]]


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


def plateau_table(store: ResultsStore) -> pd.DataFrame:
    """Paper A's CapsNet trainings (every attempt of the stall rule) that ended on the loss plateau
    (:func:`capslib.run.store.schema.stalled`), per route (fast path or plain, device, precision) and anomaly
    fraction: 'on plateau' of 'cells'."""
    rows = []
    for cid in store.finished_ids():
        doc = store.load_cell(cid)
        r, info, prov = doc.get("resolved", {}), doc.get("info", {}), doc.get("provenance", {})
        if stalled(doc) is None:
            continue
        rows.append({"route": "fast path" if "fast_path" in info else "plain path", "device": prov.get("device", ""),
                     "precision": prov.get("precision", "fp32"), "anomaly fraction": r.get("anomaly_fraction"),
                     "on plateau": int(stalled(doc))})
    cols = ["route", "device", "precision", "anomaly fraction"]
    if not rows:
        return pd.DataFrame(columns=cols + ["on plateau", "cells"])
    df = pd.DataFrame(rows)
    return (df.groupby(cols).agg(**{"on plateau": ("on plateau", "sum"), "cells": ("on plateau", "size")})
            .reset_index().sort_values(cols, ascending=[True, True, True, False], ignore_index=True))
