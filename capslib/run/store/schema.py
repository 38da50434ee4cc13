"""The store's file format: the schema version, the columns of ``cells.csv``, the keys of a
``cell.json``, its errors, and the rows a finished cell writes (one per score)."""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from capslib.core.config import CellSpec, held_out_label
from capslib.core.errors import OneLineError

SCHEMA_VERSION = 1
CSV_COLUMNS = ["protocol", "dataset", "method", "variant", "normal_class", "held_out", "anomaly_fraction",
               "seed", "score", "accuracy", "auroc", "auprc", "threshold", "n_test_normal", "n_test_anomalous",
               "train_seconds", "epochs", "batch_size", "precision", "device", "torch", "commit", "finished_utc",
               "cell_id", "attempt", "final_loss", "stalled"]
# columns derived from the rest of cell.json when a cell is read, never stored in its rows
DERIVED = ("attempt", "final_loss", "stalled")
# the keys every row of a schema-1 cell has (CSV_COLUMNS may grow; older cells stay complete)
ROW_KEYS = tuple(k for k in CSV_COLUMNS if k != "precision" and k not in DERIVED)   # precision: added later
# columns added after schema 1 began, with the value every older cell had: before the
# precision option the plain path computed in fp32 only
ROW_DEFAULTS = {"precision": "fp32"}
DOC_KEYS = ("cell_id", "spec", "rows", "provenance")
# the columns of a row that hold numbers (or null); anything else marks the cell damaged
NUMERIC = ("accuracy", "auroc", "auprc", "threshold", "train_seconds", "n_test_normal", "n_test_anomalous")
# schema version -> a function that turns such a document into the next version's (mechanical
# changes only); a version below SCHEMA_VERSION with no entry is reported, not guessed at
MIGRATIONS: dict[int, Callable[[dict], dict]] = {}
OWNED = "@"            # in the name of a staging folder whose writer locks it (<cell_id>@<pid>)
STAGING_GRACE_S = 60   # a staging folder without it is from capslib before the locks (its writer
                       # holds no lock): removed only once it is this old


# The stall rule's test (book/methods.md, "the loss plateau"): paper A's CapsNet trainings start on
# a loss plateau near 0.41 (the anomaly capsule saturated "on" for every image); a training whose
# last-epoch loss is still above this never left it. Stored cells split cleanly: stalled ones end
# at 0.38-0.42, converged ones below 0.1.
PLATEAU_LOSS = 0.3


def stalled(doc: dict) -> Optional[bool]:
    """Whether a cell's training ended on the loss plateau (paper A's CapsNet cells; None for
    other cells, which the rule does not concern, and for cells without a recorded loss)."""
    spec, loss = doc.get("resolved") or doc.get("spec", {}), doc.get("info", {}).get("final_loss")
    if spec.get("protocol") != "imbalanced" or spec.get("method") != "capsnet" or loss is None:
        return None
    return bool(loss > PLATEAU_LOSS)


def derived_columns(doc: dict) -> dict:
    """The columns :data:`DERIVED` of every row of a cell."""
    flag = stalled(doc)
    return {"attempt": int(doc.get("spec", {}).get("attempt", 0)), "final_loss": doc.get("info", {}).get("final_loss"),
            "stalled": "" if flag is None else ("yes" if flag else "no")}


class StoreError(OneLineError, ValueError):
    """A file of the store cannot be read; the message names it and says what to do."""


class DamagedCell(StoreError):
    """A cell folder that is not a readable, complete cell: ``run`` quarantines and retrains it."""


class NewerCell(StoreError):
    """A cell written by a newer capslib (a higher schema version): left alone."""


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def result_rows(spec: CellSpec, result, prov: dict) -> list[dict]:
    """One row per score: the spec, the metrics and the provenance, CSV-ready."""
    from capslib.model.scores import score_metrics
    r = spec.resolved()
    labels = result.test_labels
    rows = []
    for name, s in result.scores.items():
        m = score_metrics(s, labels, result.thresholds.get(name))
        rows.append({
            "protocol": r.protocol, "dataset": r.dataset, "method": r.method, "variant": r.variant,
            "normal_class": r.normal_class, "held_out": held_out_label(r.held_out),
            "anomaly_fraction": r.anomaly_fraction, "seed": r.seed, "score": name, **m,
            "n_test_normal": int((labels == 0).sum()), "n_test_anomalous": int((labels == 1).sum()),
            "train_seconds": round(result.train_seconds, 3), "epochs": r.epochs, "batch_size": r.batch_size,
            "precision": prov.get("precision", "fp32"), "device": prov["device"], "torch": prov["torch"], "commit": prov["commit"],
            "finished_utc": prov["finished_utc"], "cell_id": spec.cell_id})
    return rows
