"""Rows of a results store as a pandas frame, trained first where cells are missing, and the notes
a chapter shows when a table is empty."""
from __future__ import annotations

from typing import Optional, Sequence

import pandas as pd

from capslib.run.attempts import base_id, label_attempts, one_record_per_cell
from capslib.run.store.results import ResultsStore
from capslib.run.store.root import results_root as default_results_root


HEADLINE = {"standard": "length_difference", "proposed": "anomaly_score"}
ROW_LABEL = "{variant} {fraction:.0%}"


def open_store(results_root=None, profile: str = "quick") -> ResultsStore:
    """The profile's store under ``results_root`` (None: :func:`capslib.run.store.root.results_root`)."""
    return ResultsStore(default_results_root(results_root), profile)


def to_frame(rows: list[dict]) -> pd.DataFrame:
    """One row per (cell, score) with tidy dtypes (held_out a string like "0+3+5")."""
    df = pd.DataFrame(rows)
    if df.empty:
        from capslib.run.store.schema import CSV_COLUMNS
        return pd.DataFrame(columns=CSV_COLUMNS)
    df["normal_class"] = pd.to_numeric(df["normal_class"], errors="coerce").astype("Int64")
    df["anomaly_fraction"] = pd.to_numeric(df["anomaly_fraction"], errors="coerce")
    df["held_out"] = df["held_out"].fillna("").astype(str)
    df["variant"] = df["variant"].fillna("").astype(str)
    for c in ("accuracy", "auroc", "auprc", "threshold", "train_seconds", "final_loss"):
        if c in df:
            df[c] = pd.to_numeric(df[c], errors="coerce")
    if "stalled" in df:
        df["stalled"] = df["stalled"].fillna("").astype(str)
    return df


ATTEMPTS = ("last", "first", "every")


class Shared(tuple):
    """A read-only record kept in ``DataFrame.attrs``: pandas deep-copies ``attrs`` into the
    result of every operation, so a list of a thousand cell ids there costs seconds in a chapter;
    this one is immutable and hands itself over instead of a copy."""

    def __deepcopy__(self, memo):
        return self


class SharedRun(dict):
    """The run report in ``DataFrame.attrs["run"]``, handed over like :class:`Shared` (not to be changed)."""

    def __deepcopy__(self, memo):
        return self


def load_rows(results_root=None, profile: str = "quick", attempts: str = "last") -> pd.DataFrame:
    """Every finished cell of a store, one row per (cell, score): the cell's headline record, the
    last attempt of the stall rule (``attempts="first"``: every cell's first training;
    ``"every"``: every training, one record per attempt, for the figures of the rule itself)."""
    if attempts not in ATTEMPTS:
        raise ValueError(f"attempts must be one of {', '.join(ATTEMPTS)}, got {attempts!r}")
    df = to_frame(open_store(results_root, profile).rows())
    if attempts == "every":
        return label_attempts(df)
    return one_record_per_cell(df, first=attempts == "first")


def load_attempts(df: pd.DataFrame, attempts: str = "first") -> pd.DataFrame:
    """The cells of ``df`` (a frame of :func:`load_or_run`) as their first or every training."""
    rows = load_rows(df.attrs.get("results_root"), df.attrs.get("profile", "quick"), attempts)
    return rows[rows["cell"].isin(set(df["cell"]))] if len(df) and len(rows) else rows.iloc[0:0]


def load_or_run(profile: str = "quick", results_root=None, protocol: Optional[str] = None,
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
    from capslib.core.config import as_bool
    from capslib.study.params import GridRequest

    # every parameter read and checked here, before any training (capslib.study.params)
    cells = GridRequest(profile, protocol, datasets, classes, fractions, seeds, epochs, methods,
                        extra_held_outs).cells()
    train = as_bool("train", train)
    store = open_store(results_root, profile)
    ids = {c.cell_id for c in cells}
    # torch and the training code are imported only when there is something to train: a missing
    # cell, or a damaged one (the run moves it aside and trains it again)
    if train and (not all(store.is_done(c) for c in cells) or ids & set(store.damaged())):
        from capslib.run.runner import run_grid
        rep = run_grid(cells, store, data_root, device, show_progress=show_progress)
    elif train:
        rep = {"ran": [], "skipped": [c.cell_id for c in cells], "failed": {}, "deferred": [], "paused": {},
               "elsewhere": [], "overrun": []}
    else:
        rep = {"ran": [], "skipped": [c.cell_id for c in cells if store.is_done(c)],
               "missing": [c.cell_id for c in cells if not store.is_done(c)], "failed": {}}
    df = one_record_per_cell(to_frame([r for r in store.rows() if base_id(r["cell_id"]) in ids]))
    df.attrs.update(run=SharedRun(rep), cells=Shared(sorted(ids)), profile=profile, results_root=str(store.root), protocol=protocol)
    return df


def empty_note(df: pd.DataFrame, what: str = "this section") -> str:
    """The sentence a section shows in place of an empty table or figure: what is missing
    and which command fills it in."""
    profile, protocol = df.attrs.get("profile", "quick"), df.attrs.get("protocol")
    n = len(df.attrs.get("cells", []))
    proto = f" --protocol {protocol}" if protocol else ""
    asked = f"none of the {n} {protocol or ''} cells asked for" if n else "no cell"
    return (f"*Nothing to show for {what} yet: {asked.replace('  ', ' ')} under the {profile} profile has finished. "
            f"`python -m capslib run --profile {profile}{proto}` trains them; "
            f"`python -m capslib book --profile {profile}` then rebuilds this page.*")


def show(table: pd.DataFrame, df: pd.DataFrame | None = None, what: str = "this table") -> None:
    """Display a table (every text in full: pandas cuts a cell's text at 50 characters by
    default), or, when it has no rows, :func:`empty_note` of the cells ``df`` in its place
    (nothing without ``df``)."""
    from IPython.display import Markdown, display
    if table is not None and len(table):
        with pd.option_context("display.max_colwidth", None):
            display(table)
    elif df is not None:
        display(Markdown(empty_note(df, what)))


def say_if_empty(df: pd.DataFrame, what: str = "this section") -> bool:
    """Display :func:`empty_note` when no cell of ``df`` has finished; True if it did."""
    if len(df):
        return False
    from IPython.display import Markdown, display
    display(Markdown(empty_note(df, what)))
    return True


SHOWN_IDS = 8   # cell ids a run summary names before "and N more"


def run_summary(df: pd.DataFrame) -> str:
    """One line: how many cells were asked for, trained now, reused, failed or missing."""
    rep = df.attrs.get("run", {})
    parts = [f"{len(df.attrs.get('cells', []))} cells asked for", f"{len(rep.get('ran', []))} trained now",
             f"{len(rep.get('skipped', []))} read from the store"]
    shown = {_row_key(c) for c in df["cell_id"].unique()} if len(df) else set()
    for key in ("failed", "missing"):
        if rep.get(key):   # first the cells missing from rows the tables show, then the rest
            ids = sorted(rep[key], key=lambda c: (_row_key(c) not in shown, c))
            more = f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else ""
            parts.append(f"{len(ids)} {key}: {', '.join(ids[:SHOWN_IDS])}{more}")
    return "; ".join(parts) + "."


def _row_key(cell_id: str) -> str:
    """A cell id without its normal class / held-out part: the table row (and seed) it fills."""
    import re
    return re.sub(r"-(n\d+|h\d+)-", "-", cell_id)
