"""In-flight checkpoints (capslib.train.checkpoint), the paper grid's priority order and the
per-row status (capslib.run.progress)."""
import json
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from capslib.core.cache import code_fingerprint, in_flight
from capslib.core.provenance import git_commit
from capslib.train.checkpoint import Checkpoint, TrainingPaused
from capslib.core.config import CellSpec
from capslib.run.progress import row_label, row_status
from capslib.run.runner import run_cell
from capslib.study.profiles import PRIORITY, prioritized, profile_grid, stage_of
from capslib.run.store.results import ResultsStore
from tiny import driver_env, shortened, wait_until_stopped

SPEC = CellSpec("imbalanced", "digits", variant="proposed", normal_class=1, anomaly_fraction=0.1, seed=0, epochs=2)
ROOT = Path(__file__).resolve().parents[1]

# the cell in a process of its own, on the short splits (tests/tiny.py; the tests' reference too);
# with "stop", the process stops itself (SIGSTOP) as soon as its first checkpoint is saved, so that
# the test's SIGKILL lands after epoch 1 and before epoch 2, however busy the machine
DRIVER = """
import os, signal, sys, torch
import tiny
from capslib.core.config import CellSpec
from capslib.run.runner import run_cell
from capslib.run.store.results import ResultsStore
from capslib.train.checkpoint import Checkpoint
torch.set_num_threads(int(sys.argv[2]))    # the test process's threads: the same arithmetic as its reference
tiny.cut_splits()
if sys.argv[3] == "stop":
    save = Checkpoint.save
    def save_then_stop(self, *args, **kwargs):
        save(self, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGSTOP)
    Checkpoint.save = save_then_stop
spec = CellSpec("imbalanced", "digits", variant="proposed", normal_class=1, anomaly_fraction=0.1, seed=0, epochs=2)
doc = run_cell(spec, ResultsStore(sys.argv[1], "t"), device="cpu", precision="fp32")
print("resumed_from_epoch", doc["provenance"].get("resumed_from_epoch", 0))
"""


def _driver(root, cache, stop: bool = False):
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(root), str(torch.get_num_threads()),
                             "stop" if stop else "go"], env=driver_env(CAPSLIB_CACHE=str(cache)), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _same_arrays(a: ResultsStore, b: ResultsStore, spec) -> None:
    x, y = a.load_arrays(spec), b.load_arrays(spec)
    assert x.keys() == y.keys()
    for k in x:
        assert np.array_equal(x[k], y[k]), k
    ra, rb = a.load_cell(spec)["rows"], b.load_cell(spec)["rows"]
    # times, and the commit (the checkout may get a commit between the two runs), are provenance, not results
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("train_seconds", "finished_utc", "commit")}
                          for r in rows]
    assert strip(ra) == strip(rb)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[ResultsStore, list]:
    """SPEC trained once without interruption, in this process, on the short splits: (its store,
    its epoch losses)."""
    import capslib.run.runner as runner
    ref = ResultsStore(tmp_path_factory.mktemp("ref"), "t")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "split_for", shortened(runner.split_for))
        curve = run_cell(SPEC, ref, device="cpu", precision="fp32")["info"]["epoch_losses"]
    return ref, curve


@pytest.mark.slow(seconds=25)
def test_cell_killed_after_first_epoch_resumes_bitwise(tmp_path, reference):
    """A subprocess killed (SIGKILL) once its first epoch's checkpoint exists; a second run
    resumes from it; the stored cell equals an uninterrupted run's, bit for bit."""
    cache = tmp_path / "cache"
    p = _driver(tmp_path / "run", cache, stop=True)
    wait_until_stopped(p, "its first checkpoint")
    p.send_signal(signal.SIGKILL)
    p.wait(60)
    store = ResultsStore(tmp_path / "run", "t")
    assert not store.is_done(SPEC)
    meta = json.loads(next(cache.glob("checkpoints/*/*.json")).read_text())
    assert meta["cell_id"] == SPEC.cell_id and meta["epoch"] == 1

    q = _driver(tmp_path / "run", cache)
    out = q.communicate(timeout=600)[0]
    assert q.returncode == 0, out
    assert int(out.split("resumed_from_epoch")[-1].split()[0]) == 1
    _same_arrays(store, reference[0], SPEC)
    assert not list(cache.glob("checkpoints/*/*.pt")), "the checkpoint goes once the cell is stored"


@pytest.mark.slow
def test_paused_cell_resumes_bitwise_in_process(tmp_path, reference, tiny_splits):
    """A deadline already past pauses the cell after epoch 1 (TrainingPaused, nothing
    stored); the next run resumes and stores exactly the uninterrupted cell."""
    ref, curve = reference
    assert len(curve) == 2 and all(isinstance(v, float) and v > 0 for v in curve)
    store = ResultsStore(tmp_path / "run", "t")
    with pytest.raises(TrainingPaused) as e:
        run_cell(SPEC, store, device="cpu", precision="fp32", deadline=time.monotonic())
    assert (e.value.epoch, e.value.epochs) == (1, 2) and not store.is_done(SPEC)
    flying = in_flight(store.dir)
    assert [(m["cell_id"], m["epoch"], m["epochs"], m["precision"]) for m in flying] == [(SPEC.cell_id, 1, 2, "fp32")]
    assert flying[0]["code"] == code_fingerprint() and flying[0]["commit"] == git_commit()   # what saved it
    doc = run_cell(SPEC, store, device="cpu", precision="fp32")
    assert doc["provenance"]["resumed_from_epoch"] == 1 and doc["provenance"]["precision"] == "fp32"
    assert doc["info"]["epoch_losses"] == [None, *curve[1:]]   # epoch 1 ran in the paused process
    _same_arrays(store, ref, SPEC)
    assert in_flight(store.dir) == []


def _saved_checkpoint(tmp_path, precision="fp32") -> Checkpoint:
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.Adam(model.parameters())
    sched = torch.optim.lr_scheduler.StepLR(opt, 10)
    ck = Checkpoint(tmp_path / "store" / "t", "cell-a", precision)
    ck.save(model, opt, sched, torch.Generator().manual_seed(3), 2, 5, 12.5, 0.25)
    return ck


def test_checkpoint_round_trip_restores_every_state(tmp_path):
    ck = _saved_checkpoint(tmp_path)
    state = ck.load()
    assert state["epoch"] == 2 and state["train_seconds"] == 12.5 and ck.resumed_from == 2
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.Adam(model.parameters())
    sched = torch.optim.lr_scheduler.StepLR(opt, 10)
    g = torch.Generator()
    np.random.seed(1)
    expected_np = np.random.rand()
    np.random.seed(1)
    ck2 = Checkpoint(tmp_path / "store" / "t", "cell-a")
    ck2.save(model, opt, sched, torch.Generator().manual_seed(3), 1, 5, 1.0, 0.5)
    np.random.rand()                                    # move the global state on
    ck2.restore(ck2.load(), model, opt, sched, g)
    assert np.random.rand() == expected_np              # numpy's state came back
    assert torch.equal(g.get_state(), torch.Generator().manual_seed(3).get_state())


@pytest.mark.parametrize("damage", ["truncated", "garbage", "other precision", "other cell", "other code"])
def test_damaged_or_foreign_checkpoint_is_reported_and_dropped(tmp_path, damage):
    ck = _saved_checkpoint(tmp_path)
    if damage == "truncated":
        ck.path.write_bytes(ck.path.read_bytes()[:100])
    elif damage == "garbage":
        ck.path.write_bytes(b"not a checkpoint at all")
    lines = []

    class Sink:
        def write(self, s):
            lines.append(s)

        def flush(self):
            pass
    reader = Checkpoint(tmp_path / "store" / "t", "cell-a", "bf16" if damage == "other precision" else "fp32",
                        out=Sink())
    if damage in ("other cell", "other code"):   # a file named for cell-a that holds another cell's
        state = torch.load(reader.path, weights_only=True)   # training, or one saved by other code
        state["cell_id" if damage == "other cell" else "code"] = "cell-b" if damage == "other cell" else "0" * 12
        torch.save(state, reader.path)
    assert reader.load() is None
    text = "".join(lines).strip()
    assert text.count("\n") == 0 and "starting cell-a over" in text and str(reader.path) in text
    assert not reader.path.exists()


def test_paper_order_retrains_then_case_studies_then_seed_zero_tables():
    cells = prioritized(profile_grid("paper").cells(), "paper")
    assert len(cells) == len(profile_grid("paper").cells())
    stages = [stage_of(c, "paper") for c in cells]
    assert stages == sorted(stages) and max(stages) < len(PRIORITY["paper"])   # every cell has a stage
    r = [c.resolved() for c in cells]
    retrain = replace(r[-1], protocol="imbalanced", dataset="kmnist", method="capsnet", variant="standard",
                      normal_class=9, anomaly_fraction=0.01, held_out=(), seed=2, attempt=1)
    assert prioritized(cells + [retrain], "paper")[0] == retrain               # (0) the stall rule's retrainings
    case = r[:15]                                                              # (1) the MNIST case studies,
    assert all(x.protocol == "novelty" and x.dataset == "mnist" and x.seed == 0 for x in case)
    assert [x.held_out for x in case] == [(2,)] * 5 + [(9,)] * 5 + [(0, 3, 5)] * 5   # 2, then 9, then {0, 3, 5}
    assert {x.method for x in case[:5]} == {"capsnet", "cnn_ocsvm", "dbn", "vae", "cnn_msp"}   # with references
    other = r[15:55]                                                           # (2) the other MNIST held-outs
    assert sorted({x.held_out for x in other}) == [(c,) for c in (0, 1, 3, 4, 5, 6, 7, 8)]
    assert all(x.protocol == "novelty" and x.dataset == "mnist" and x.seed == 0 for x in other)
    after = r[55:]
    a0 = [x for x in after if x.protocol == "imbalanced" and x.seed == 0]
    assert after[:len(a0)] == a0                                               # (3) paper A seed 0,
    assert [x.dataset for x in a0] == sorted([x.dataset for x in a0], key=["mnist", "fashion", "kmnist"].index)
    after = after[len(a0):]
    a12 = [x for x in after if x.protocol == "imbalanced"]
    assert after[:len(a12)] == a12 and {x.seed for x in a12} == {1, 2}         # (4) paper A seeds 1, 2
    assert [x.seed for x in a12[:240]] == [1] * 80 + [2] * 80 + [1] * 80       # seed 1 of MNIST before seed 2
    rest = after[len(a12):]
    assert all(x.protocol == "novelty" for x in rest)                          # (5) the rest of paper B,
    seeds = [x.seed for x in rest]
    assert seeds == sorted(seeds)                                              # seed 0 before seeds 1, 2


class _FakeStore:
    def __init__(self, done, tmp, stalled=()):
        self.done, self.dir, self.stalled = set(done), tmp, set(stalled)

    def is_done(self, spec):
        return (spec if isinstance(spec, str) else spec.cell_id) in self.done

    def load_cell(self, spec):
        cid = spec if isinstance(spec, str) else spec.cell_id
        return {"spec": {"protocol": "imbalanced", "method": "capsnet"},
                "info": {"final_loss": 0.41 if cid in self.stalled else 0.01}}


def test_row_status_counts_cells_per_row_and_seed(tmp_path):
    cells = prioritized(profile_grid("paper").cells(), "paper")
    done = [c.cell_id for c in cells if c.protocol == "imbalanced" and c.dataset == "mnist" and c.seed == 0
            and c.variant == "proposed" and c.anomaly_fraction == 0.01 and c.normal_class < 7]
    stalled = [cid for cid in done if "-n3-" in cid]
    rows = {(s.label, s.seed): s for s in row_status(cells, _FakeStore(done, tmp_path / "t", stalled))}
    st = rows[("paper A · MNIST · proposed 1%", 0)]
    assert (st.done, st.total, st.stalled, st.retrains) == (7, 10, 1, 1)
    assert st.line() == "paper A · MNIST · proposed 1% · seed 0: 7/10; 1 stalled, 1 to retrain"
    assert (rows[("paper A · MNIST · proposed 1%", 1)].done, rows[("paper A · KMNIST · cnn 10%", 2)].total) == (0, 10)
    assert rows[("paper B · MNIST held out {0, 3, 5} · capsnet", 0)].total == 1
    assert rows[("paper B · Fashion-MNIST · vae", 0)].total == 10
    assert sum(s.total for s in rows.values()) == len(cells)
    assert row_label(CellSpec("imbalanced", "mnist", "cnn", normal_class=0, anomaly_fraction=0.1)) == "paper A · MNIST · cnn 10%"


def test_eta_says_unknown_without_data_or_rate(tmp_path):
    from capslib.run.progress import eta_lines
    paper = prioritized(profile_grid("paper").cells(), "paper")[:4]
    lines = eta_lines(paper, _FakeStore([], tmp_path / "t"), "cpu", "bf16", data_root=tmp_path / "nothing")
    assert lines == ["training time of the rest: unknown (mnist not found in the data root; pass --data-root)"]
    quick = prioritized(profile_grid("quick").cells(), "quick")[:2]            # the digits are embedded
    lines = eta_lines(quick, _FakeStore([], tmp_path / "t"), "cpu", "bf16")
    assert lines == ["paper A capsnet: 2 missing, no rate measured on this device yet",
                     "training time of the rest on this device: unknown (no rate measured here yet)"]


def test_status_says_how_long_a_cell_in_flight_has_left():
    from capslib.cli.grid import time_left
    assert time_left({"epoch": 5, "epochs": 10, "train_seconds": 600.0}) == ", about 10 min of training left"
    assert time_left({"epoch": None, "epochs": 10}) == ""


def test_status_names_a_checkpoint_of_other_training_code_and_the_commit_that_resumes_it():
    from capslib.cli.grid import other_code
    here = code_fingerprint()
    assert other_code({"code": here}, here) == "" and other_code({}, here) == ""
    older = other_code({"code": "0123456789ab", "commit": "93054d6f50e1-dirty"}, here)
    assert older == (" [saved by other training code (0123456789ab): this code starts it over; "
                     "CAPSLIB_GRID_COMMIT=93054d6f50e1 bash scripts/background_grid.sh MINUTES resumes it there]")
    assert other_code({"code": "0123456789ab"}, here).endswith("; a run at the commit that saved it resumes it]")


def test_rates_count_attempts_and_the_epochs_of_cells_in_flight(tmp_path):
    """A kind of cell has a measured rate from its first checkpointed epoch on: finished trainings
    on this device (the stall rule's attempts too) and the epochs done by cells in flight."""
    from capslib.run.progress import eta_lines, measured_rates, training_images
    from capslib.core.cache import cache_root, store_key
    quick = prioritized(profile_grid("quick").cells(), "quick")
    caps = next(c for c in quick if c.protocol == "imbalanced" and c.method == "capsnet")
    novelty = next(c for c in quick if c.protocol == "novelty" and c.method == "capsnet")
    retrained = replace(caps, attempt=1)
    elsewhere = next(c for c in quick if c.protocol == "imbalanced" and c.method == "capsnet" and c != caps)
    n_caps = training_images(caps)

    class Store(_FakeStore):
        def load_cell(self, spec):
            cid = spec if isinstance(spec, str) else spec.cell_id
            dev = "gpu" if cid == elsewhere.cell_id else "cpu"
            return {"provenance": {"device": dev, "precision": "bf16", "train_seconds": 10.0 if cid == caps.cell_id else 30.0}}

    store = Store([caps.cell_id, retrained.cell_id, elsewhere.cell_id], tmp_path / "quick")
    ck = cache_root() / "checkpoints" / store_key(store.dir)
    ck.mkdir(parents=True)
    (ck / f"{novelty.cell_id}.json").write_text(json.dumps(
        {"cell_id": novelty.cell_id, "epoch": 1, "epochs": novelty.resolved().epochs, "train_seconds": 4.0,
         "precision": "bf16", "updated_utc": "2026-12-05T09:00:00Z"}))
    (ck / f"{novelty.cell_id}.pt").write_bytes(b"")
    rates = measured_rates(store, quick, "cpu")
    assert rates[("imbalanced", "capsnet", "bf16")] == (2 * n_caps / 40.0, 2)    # first training + attempt 1, not the GPU's
    n_epoch = training_images(novelty) // novelty.resolved().epochs
    assert rates[("novelty", "capsnet", "bf16")] == (n_epoch / 4.0, 1)
    lines = eta_lines(quick, store, "cpu", "bf16")
    assert any(line.startswith("paper B capsnet:") and f"at {n_epoch / 4.0:.0f} images/s (bf16, 1 cells)" in line
               for line in lines), lines


def test_eta_counts_the_classifier_cnn_msp_shares_with_its_missing_ocsvm_cell_once(tmp_path):
    """A CNN-max-softmax cell whose CNN+OCSVM cell is missing too reuses the classifier that cell
    trains: the forecast counts its training images there, once; with the OCSVM cell finished it
    trains its own and is counted in full."""
    from capslib.run.progress import eta_lines, training_images
    quick = [c for c in profile_grid("quick").cells() if c.protocol == "novelty" and c.seed == 0]
    ocsvm = [c for c in quick if c.method == "cnn_ocsvm"]
    msp = [c for c in quick if c.method == "cnn_msp"]
    assert ocsvm and len(msp) == len(ocsvm)
    measured = [replace(ocsvm[0], seed=1), replace(msp[0], seed=1)]    # the rate of each method

    class Store(_FakeStore):
        def load_cell(self, spec):
            return {"provenance": {"device": "cpu", "precision": "fp32", "train_seconds": 10.0}}

    def msp_line(done):
        lines = eta_lines(ocsvm + msp + measured, Store([c.cell_id for c in measured + done], tmp_path / "q"),
                          "cpu", "fp32")
        return next(line for line in lines if line.startswith("paper B cnn_msp:"))

    line = msp_line([])
    assert line.startswith(f"paper B cnn_msp: {len(msp)} missing, 0 training images, ≈0.0 h"), line
    assert f"{len(msp)} reuse the classifier of their missing cnn_ocsvm cell, counted there" in line
    line = msp_line(ocsvm[:1])                                   # the first one's OCSVM cell is finished
    n = training_images(msp[0])
    assert line.startswith(f"paper B cnn_msp: {len(msp)} missing, {n:,} training images"), line
    assert f"{len(msp) - 1} reuse the classifier" in line
