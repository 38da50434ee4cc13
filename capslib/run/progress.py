"""How far a profile's grid has come: finished cells per table row and seed, the cells in
flight (with their last checkpointed epoch), and the time the rest would take on this
device at the rate measured on the cells it already trained (``status --summary``)."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional, Sequence

from capslib.core.cache import in_flight
from capslib.core.config import MAX_ATTEMPTS, CellSpec
from capslib.run.attempts import base_id, concerned, last_record, next_attempt, trainings
from capslib.run.store.results import ResultsStore
from capslib.run.store.schema import stalled

DATASET_LABELS = {"digits": "digits", "mnist": "MNIST", "fashion": "Fashion-MNIST", "kmnist": "KMNIST",
                  "smallnorb": "smallNORB"}


def row_label(spec: CellSpec) -> str:
    """The table row a cell belongs to, in the papers' words, e.g. ``paper A · MNIST ·
    proposed 1%`` or ``paper B · MNIST case studies · capsnet``."""
    r = spec.resolved()
    ds = DATASET_LABELS.get(r.dataset, r.dataset)
    if r.protocol == "imbalanced":
        what = r.variant if r.method == "capsnet" else r.method
        return f"paper A · {ds} · {what} {100 * r.anomaly_fraction:g}%"
    if len(r.held_out) > 1:   # a case study of several held-out classes; single classes are the per-class row
        return f"paper B · {ds} held out {{{', '.join(map(str, r.held_out))}}} · {r.method}"
    return f"paper B · {ds} · {r.method}"


def seconds_left(meta: dict) -> Optional[float]:
    """Training seconds an in-flight cell still needs, at the pace of its epochs so far (its
    checkpoint's metadata, :func:`capslib.core.cache.in_flight`); None when unknown."""
    epoch, epochs, seconds = meta.get("epoch"), meta.get("epochs"), meta.get("train_seconds")
    return seconds / epoch * (epochs - epoch) if epoch and epochs and seconds else None


@dataclass
class RowStatus:
    label: str
    seed: int
    done: int = 0
    total: int = 0
    in_flight: int = 0
    stalled: int = 0          # cells whose headline record (last attempt) ended on the plateau
    retrains: int = 0         # retrainings the stall rule still asks of the row's cells

    def line(self) -> str:
        flight = f" ({self.in_flight} in flight)" if self.in_flight else ""
        stall = ""
        if self.stalled or self.retrains:
            stall = f"; {self.stalled} stalled" + (f", {self.retrains} to retrain" if self.retrains else "")
        return f"{self.label} · seed {self.seed}: {self.done}/{self.total}{flight}{stall}"


def row_status(cells: Sequence[CellSpec], store: ResultsStore, max_attempts: int = MAX_ATTEMPTS) -> list[RowStatus]:
    """One RowStatus per (table row, seed), in the order the cells first name them. A cell
    counts once, by its headline record (its last attempt under the stall rule)."""
    flying = {base_id(m["cell_id"]) for m in in_flight(store.dir)}
    rows: "OrderedDict[tuple, RowStatus]" = OrderedDict()
    for c in cells:
        if c.attempt:
            continue
        key = (row_label(c), c.seed)
        st = rows.setdefault(key, RowStatus(*key))
        st.total += 1
        st.done += store.is_done(c)
        st.in_flight += c.cell_id in flying
        if concerned(c) and store.is_done(c):
            record = last_record(c, store)                  # read once for both counts
            st.stalled += bool(stalled(record[1]))
            st.retrains += next_attempt(c, store, max_attempts, record) is not None
    return list(rows.values())


def training_images(spec: CellSpec, data_root=None) -> Optional[int]:
    """Images a cell trains on in all (epochs × training-set size); None without the data."""
    from capslib.core.errors import DataError
    from capslib.data.datasets import load_dataset
    from capslib.run.runner import split_for
    r = spec.resolved()
    try:
        return r.epochs * len(split_for(r, load_dataset(r.dataset, data_root)).train_idx)
    except DataError:
        return None


def measured_rates(store: ResultsStore, cells: Sequence[CellSpec], device: str, data_root=None) -> dict:
    """Training images per second measured on ``device``, per (protocol, method, precision):
    {key: (images/s, n_cells)}. It counts every finished training of ``cells`` on that device
    (the stall rule's attempts included) and the epochs already done by the cells in flight in
    this store (their checkpoints are written on this machine), so a kind of cell has a rate
    from its first checkpointed epoch on."""
    sums: dict[tuple, list] = {}

    def add(spec: CellSpec, images: Optional[int], seconds: float, precision: str) -> None:
        if images is None or not seconds:
            return
        r = spec.resolved()
        acc = sums.setdefault((r.protocol, r.method, precision), [0, 0.0, 0])
        acc[0] += images
        acc[1] += seconds
        acc[2] += 1

    by_id = {c.cell_id: c for c in cells if not c.attempt}
    for c in by_id.values():
        for spec in trainings(c, store):
            prov = store.load_cell(spec).get("provenance", {})
            if prov.get("device") == device:
                add(spec, training_images(spec, data_root), prov.get("train_seconds"), prov.get("precision", "fp32"))
    for meta in in_flight(store.dir):
        spec = by_id.get(base_id(meta["cell_id"]))
        if spec is None or not meta.get("epoch") or not meta.get("epochs"):
            continue
        n = training_images(spec, data_root)
        add(spec, None if n is None else n * meta["epoch"] // meta["epochs"], meta.get("train_seconds"),
            meta.get("precision") or "fp32")
    return {k: (n / s, k_cells) for k, (n, s, k_cells) in sums.items()}


def sharing_classifier(msp: Sequence[CellSpec], ocsvm: Sequence[CellSpec]) -> set[str]:
    """The missing CNN-max-softmax cells whose CNN+OCSVM cell (the same spec but the method) is
    missing too: the run trains their shared classifier once, for the CNN+OCSVM cell, which the
    priority order puts first (:func:`capslib.study.baselines.cnn.normal_classifier`)."""
    from dataclasses import replace
    waiting = {c.cell_id for c in ocsvm}
    return {c.cell_id for c in msp if replace(c, method="cnn_ocsvm").cell_id in waiting}


def eta_lines(cells: Sequence[CellSpec], store: ResultsStore, device: str, precision: str, data_root=None) -> list[str]:
    """The time the missing cells would take here, per (protocol, method), at the rate of
    the cells this device already trained: at ``precision`` where it has some, else at
    another precision (said so); 'no rate measured yet' where it has none."""
    if cells and training_images(cells[0], data_root) is None:
        return [f"training time of the rest: unknown ({cells[0].resolved().dataset} not found in the data root; "
                "pass --data-root)"]
    rates = measured_rates(store, cells, device, data_root)
    missing: "OrderedDict[tuple, list]" = OrderedDict()
    for c in cells:
        if not store.is_done(c):
            r = c.resolved()
            missing.setdefault((r.protocol, r.method), []).append(c)
    shared = sharing_classifier(missing.get(("novelty", "cnn_msp"), []), missing.get(("novelty", "cnn_ocsvm"), []))
    lines, total = [], 0.0
    for (protocol, method), cs in missing.items():
        known = {p: v for (pr, m, p), v in rates.items() if (pr, m) == (protocol, method)}
        prec = precision if precision in known else next(iter(known), None)
        label = f"{'paper A' if protocol == 'imbalanced' else 'paper B'} {method}: {len(cs)} missing"
        if prec is None:
            lines.append(f"{label}, no rate measured on this device yet")
            continue
        rate, n_cells = known[prec]
        images = [training_images(c, data_root) for c in cs]
        if any(n is None for n in images):
            lines.append(f"{label}, data not found for some of them")
            continue
        images = [0 if c.cell_id in shared else n for c, n in zip(cs, images)]
        hours = sum(images) / rate / 3600
        total += hours
        note = "" if prec == precision else f"; {precision} not yet measured"
        reuse = (f"; {len(shared)} reuse the classifier of their missing cnn_ocsvm cell, counted there"
                 if method == "cnn_msp" and shared else "")
        lines.append(f"{label}, {sum(images):,} training images, ≈{hours:.1f} h at {rate:.0f} images/s "
                     f"({prec}, {n_cells} cells{note}{reuse})")
    if lines and total > 0:
        lines.append(f"training time of the rest on this device (where a rate is known): ≈{total:.1f} h")
    elif lines:
        lines.append("training time of the rest on this device: unknown (no rate measured here yet)")
    return lines
