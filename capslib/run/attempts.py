"""The stall rule: a paper-A CapsNet whose training ends on the loss plateau
(:func:`capslib.run.store.schema.stalled`) is trained again from a new initialisation, on the
same split, up to :data:`~capslib.core.config.MAX_ATTEMPTS` trainings in all; every attempt stays
in the store as a cell of its own (``...-a1``, ``...-a2``).

A table shows one record per cell, its *headline*: the last attempt the store holds. The
earlier attempts stay readable (``first_attempts`` gives the all-first-attempts view) and are
never shown as rows of their own.
"""
from __future__ import annotations

import re
from dataclasses import replace
from typing import Iterable, Optional

from capslib.core.config import MAX_ATTEMPTS, CellSpec, as_int
from capslib.core.errors import ConfigError
from capslib.run.store.results import ResultsStore
from capslib.run.store.schema import stalled

_ATTEMPT = re.compile(r"-a(\d+)$")


def base_id(cell_id: str) -> str:
    """A cell id without its attempt suffix: the cell every attempt of it trains."""
    return _ATTEMPT.sub("", cell_id)


def attempt_of(cell_id: str) -> int:
    m = _ATTEMPT.search(cell_id)
    return int(m.group(1)) if m else 0


def concerned(spec: CellSpec) -> bool:
    """The rule concerns paper A's CapsNet cells."""
    return spec.protocol == "imbalanced" and spec.method == "capsnet"


def trainings(spec: CellSpec, store: ResultsStore) -> list[CellSpec]:
    """Every training of ``spec``'s cell the store holds, first attempt first (for a cell the
    rule does not concern, its one training)."""
    tries = (replace(spec, attempt=k) for k in range(MAX_ATTEMPTS if concerned(spec) else 1))
    return [t for t in tries if store.is_done(t)]


def last_attempt(spec: CellSpec, store: ResultsStore) -> Optional[int]:
    """The highest attempt of ``spec``'s cell the store holds (None: not even the first)."""
    done = trainings(spec, store)
    return done[-1].attempt if done else None


def last_record(spec: CellSpec, store: ResultsStore) -> Optional[tuple[int, dict]]:
    """(attempt, cell.json) of the highest attempt of ``spec``'s cell the store holds, or None."""
    k = last_attempt(spec, store)
    return None if k is None else (k, store.load_cell(replace(spec, attempt=k)))


def next_attempt(spec: CellSpec, store: ResultsStore, max_attempts: int = MAX_ATTEMPTS,
                 record: Optional[tuple[int, dict]] = None) -> Optional[CellSpec]:
    """The retraining the rule asks of ``spec``'s cell now, or None: its last attempt converged,
    it has had ``max_attempts`` trainings, or its first training is not done yet. ``record``:
    its :func:`last_record`, when the caller has read it already."""
    if not concerned(spec):
        return None
    k, doc = record or last_record(spec, store) or (None, None)
    if k is None or k + 1 >= max_attempts or not stalled(doc):
        return None
    return replace(spec, attempt=k + 1)


def check_max_attempts(value) -> int:
    """``--max-attempts``: a whole number in 1..MAX_ATTEMPTS."""
    n = as_int("--max-attempts", value)
    if not 1 <= n <= MAX_ATTEMPTS:
        raise ConfigError(f"--max-attempts must be in 1..{MAX_ATTEMPTS}, got {n}")
    return n


def retrains(cells: Iterable[CellSpec], store: ResultsStore, max_attempts: int = MAX_ATTEMPTS) -> list[CellSpec]:
    """The retrainings due among ``cells`` (their first attempts), in their order."""
    out = []
    for c in cells:
        nxt = next_attempt(replace(c, attempt=0), store, max_attempts)
        if nxt is not None and nxt.cell_id not in {o.cell_id for o in out}:
            out.append(nxt)
    return out


def label_attempts(df):
    """A frame of store rows with the columns ``cell`` (the cell's id without attempt) and
    ``attempt``, read from each row's ``cell_id``."""
    return df.assign(cell=df["cell_id"].map(base_id), attempt=df["cell_id"].map(attempt_of))


def one_record_per_cell(df, first: bool = False):
    """Rows of a frame of store rows (``cell_id``, ``attempt`` columns) reduced to one record per
    cell: its last attempt (``first``: its first), with the columns ``cell`` (the cell's id
    without attempt), ``attempts`` (trainings it had) and ``stalls`` (how many of them ended on
    the plateau)."""
    if len(df) == 0:
        return df.assign(cell=None, attempts=None, stalls=None)
    df = label_attempts(df)
    per = df.drop_duplicates("cell_id")[["cell", "cell_id", "attempt", "stalled"]]
    attempts = per.groupby("cell")["attempt"].agg(["max", "min", "size"])
    stalls = per.assign(s=per["stalled"].eq("yes")).groupby("cell")["s"].sum()
    keep = attempts["min" if first else "max"]
    out = df[df["attempt"] == df["cell"].map(keep)].copy()
    out["attempts"] = out["cell"].map(attempts["size"]).astype(int)
    out["stalls"] = out["cell"].map(stalls).astype(int)
    return out.reset_index(drop=True)
