"""The stall rule: a paper-A CapsNet that ends on the loss plateau is trained again from a new
initialisation on the same split; every attempt stays in the store, the last one is the cell's
headline record in the tables, and a cell counts once."""
from __future__ import annotations

import os
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from capslib.cli.main import main
from capslib.core.config import ATTEMPT_SEED_STRIDE, MAX_ATTEMPTS, CellSpec
from capslib.core.errors import ConfigError
from capslib.run.attempts import attempt_of, base_id, next_attempt, retrains
from capslib.run.progress import row_status
from capslib.run.store.results import ResultsStore
from capslib.run.store.schema import PLATEAU_LOSS, result_rows, stalled
from capslib.views import report

PROV = {"commit": "abc", "device": "cpu (test)", "torch": "x", "finished_utc": "2026-01-01T00:00:00Z"}
CELL = CellSpec("imbalanced", "digits", "capsnet", "proposed", normal_class=0, anomaly_fraction=0.1, epochs=1)


def write(store, spec, loss, accuracy_shift):
    """A cell whose anomaly score separates the classes by ``accuracy_shift`` and whose
    training ended at ``loss``."""
    labels = (np.arange(40) % 2).astype(np.int64)
    s = np.random.default_rng(spec.init_seed).normal(size=40) + accuracy_shift * labels
    res = SimpleNamespace(test_labels=labels, scores={"anomaly_score": s, "length_difference": s},
                          thresholds={"anomaly_score": 0.5, "length_difference": 0.0}, train_seconds=1.0)
    store.write_cell(spec, result_rows(spec, res, PROV), {"test_labels": labels, "score_anomaly_score": s},
                     PROV, info={"final_loss": loss})


def test_an_attempt_is_a_cell_of_its_own_with_its_own_initialisation():
    a1 = replace(CELL, attempt=1)
    assert a1.cell_id == CELL.cell_id + "-a1" and base_id(a1.cell_id) == CELL.cell_id
    assert attempt_of(a1.cell_id) == 1 and attempt_of(CELL.cell_id) == 0
    assert (CELL.init_seed, a1.init_seed) == (0, ATTEMPT_SEED_STRIDE)
    assert CellSpec.from_dict(a1.to_dict()) == a1
    for bad in ({"attempt": MAX_ATTEMPTS}, {"attempt": -1}):
        with pytest.raises(ConfigError, match="attempt"):
            replace(CELL, **bad)
    with pytest.raises(ConfigError, match="paper A's capsnet"):
        CellSpec("imbalanced", "digits", "cnn", normal_class=0, anomaly_fraction=0.1, attempt=1)


def test_the_rule_asks_for_the_next_attempt_until_one_converges_or_attempts_run_out(tmp_path):
    store = ResultsStore(tmp_path, "t")
    other = replace(CELL, normal_class=1)
    assert next_attempt(CELL, store) is None                       # not trained at all: the grid's job
    write(store, CELL, 0.41, 1.0)
    write(store, other, 0.01, 3.0)
    assert [c.cell_id for c in retrains([CELL, other], store)] == [CELL.cell_id + "-a1"]
    write(store, replace(CELL, attempt=1), 0.40, 1.0)              # stalled again
    assert next_attempt(CELL, store) == replace(CELL, attempt=2)
    write(store, replace(CELL, attempt=2), 0.39, 1.0)              # the last attempt stalls too
    assert next_attempt(CELL, store) is None and retrains([CELL, other], store) == []
    st = row_status([CELL, other], store)
    assert [(s.done, s.total, s.stalled, s.retrains) for s in st] == [(2, 2, 1, 0)]


def test_stalled_is_read_from_the_last_training_loss():
    doc = lambda loss, method="capsnet": {"spec": {"protocol": "imbalanced", "method": method},
                                          "info": {"final_loss": loss}}
    assert stalled(doc(PLATEAU_LOSS + 1e-6)) is True and stalled(doc(PLATEAU_LOSS)) is False
    assert stalled(doc(0.41, "cnn")) is None and stalled({"spec": {}, "info": {}}) is None


def test_the_last_attempt_is_the_headline_in_tables_and_csv(tmp_path):
    store = ResultsStore(tmp_path, "t")
    write(store, CELL, 0.41, 0.0)                                  # stalled: chance accuracy
    write(store, replace(CELL, attempt=1), 0.01, 4.0)              # converged: near-perfect
    write(store, replace(CELL, normal_class=1), 0.02, 4.0)
    df = report.load_rows(store.root, store.profile)
    head = df[df["score"] == "anomaly_score"]
    assert sorted(head["cell_id"]) == sorted([CELL.cell_id + "-a1", replace(CELL, normal_class=1).cell_id])
    row = head[head["cell"] == CELL.cell_id].iloc[0]
    assert (row["attempts"], row["stalls"], row["stalled"]) == (2, 1, "no")
    first = report.load_rows(store.root, store.profile, attempts="first")
    assert CELL.cell_id in set(first["cell_id"]) and CELL.cell_id + "-a1" not in set(first["cell_id"])
    every = report.load_rows(store.root, store.profile, attempts="every")
    assert set(every["cell_id"]) == set(head["cell_id"]) | {CELL.cell_id}
    # the tables count the cell once, from its headline record
    acc = report.accuracy_long(df)
    per_class = acc[acc["normal_class"] != "mean"].set_index("normal_class")
    assert sorted(per_class.index) == [0, 1] and (per_class["n"] == 1).all()
    assert per_class.loc[0, "mean"] == pytest.approx(100 * head[head["cell"] == CELL.cell_id]["accuracy"].iloc[0])
    first_acc = first[(first["cell"] == CELL.cell_id) & (first["score"] == "anomaly_score")]["accuracy"].iloc[0]
    assert per_class.loc[0, "mean"] > 100 * first_acc + 20
    csv = (store.dir / "cells.csv").read_text().splitlines()
    assert csv[0].endswith("cell_id,attempt,final_loss,stalled")
    assert any(line.endswith("-a1,1,0.01,no") for line in csv) and any(line.endswith(",0,0.41,yes") for line in csv)


@pytest.mark.slow
def test_run_retrains_a_stalled_cell_on_the_same_split_with_new_weights(tmp_path, tiny_splits):
    """One epoch on 30 digits leaves paper A's CapsNet on the plateau: ``run`` trains the cell,
    then its retrainings, all attempts on the same test set with different scores."""
    args = ["run", "--profile", "quick", "--results-root", str(tmp_path), "--protocol", "imbalanced",
            "--classes", "0", "--fractions", "0.1", "--methods", "capsnet", "--epochs", "1", "--no-progress"]
    assert main(args) == 0
    store = ResultsStore(tmp_path, "quick")
    ids = store.finished_ids()
    firsts = [i for i in ids if attempt_of(i) == 0]
    assert len(firsts) == 2                                          # standard and proposed
    assert any(stalled(store.load_cell(cid)) for cid in firsts)      # one epoch on 30 images: the plateau
    for cid in firsts:
        doc = store.load_cell(cid)
        if not stalled(doc):
            continue
        a1 = store.load_arrays(cid + "-a1")
        a0 = store.load_arrays(cid)
        assert np.array_equal(a0["test_idx"], a1["test_idx"])             # the same split
        assert not np.allclose(a0["score_anomaly_score"], a1["score_anomaly_score"])
        assert store.load_cell(cid + "-a1")["spec"]["attempt"] == 1
    # every cell now ends converged or with MAX_ATTEMPTS trainings, and nothing more is due
    specs = [CellSpec.from_dict(store.load_cell(i)["spec"]) for i in firsts]
    assert retrains(specs, store) == []
    assert os.path.exists(store.dir / "cells.csv")
