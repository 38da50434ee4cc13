"""capslib.tools.routecheck on the CPU: every route trains a digits cell, and the grouped route
retrains the stored cell inside its recorded fast-path group."""
import json

import pytest

from capslib.core.config import CellSpec
from capslib.tools.routecheck import ROUTES, cell_from_id, main, stored_group
from capslib.run.runner import run_grid
from capslib.run.store.results import ResultsStore


@pytest.mark.slow(seconds=45)
def test_every_route_on_a_digits_cell(tmp_path, tiny_splits, capsys):
    cells = [CellSpec("imbalanced", "digits", variant=v, normal_class=1, anomaly_fraction=0.1, seed=0, epochs=5)
             for v in ("standard", "proposed")]
    run_grid(cells, ResultsStore(tmp_path / "res", "quick"), device="cpu", show_progress=False, fast=True)
    target = cells[0].cell_id
    assert stored_group(target, tmp_path / "res", "quick") == [c.cell_id for c in cells]
    assert main(["--write-groups", str(tmp_path / "groups.json"), "--profile", "quick",
                 "--results-root", str(tmp_path / "res")]) == 0                   # what travels to the GPU
    assert stored_group(target, "nowhere", "quick", tmp_path / "groups.json") == [c.cell_id for c in cells]
    assert main(["--cells", target, "--profile", "quick", "--groups", str(tmp_path / "groups.json"),
                 "--device", "cpu", "--out", str(tmp_path / "out")]) == 0
    report = json.loads(next((tmp_path / "out").glob("routecheck-cpu-*.json")).read_text())
    got = report["cells"][target]
    assert set(got) == set(ROUTES)
    for route, r in got.items():
        assert r["final_loss"] > 0 and 0 <= r["auroc"]["anomaly_score"] <= 1, route
    assert got["fast-bf16-group"]["group_size"] == 2 and got["fast-bf16"]["group_size"] == 1
    assert got["fast-fp32"]["auroc"] == pytest.approx(got["plain-fp32"]["auroc"], abs=1e-3)   # one model: the same training
    assert f"{target} plain-fp32: last loss" in capsys.readouterr().out


def test_unknown_cell_or_route_is_one_line(capsys):
    assert main(["--cells", "imbalanced-mnist-capsnet-standard-n3-f0.01-s7-e10-b32", "--device", "cpu"]) == 2
    assert capsys.readouterr().err.strip() == ("error: cell 'imbalanced-mnist-capsnet-standard-n3-f0.01-s7-e10-b32' is "
                                               "in neither the paper nor the quick profile's grid")
    assert main(["--routes", "plain-fp16", "--device", "cpu"]) == 2
    assert "unknown route 'plain-fp16'" in capsys.readouterr().err
    assert cell_from_id("imbalanced-mnist-capsnet-standard-n3-f0.01-s0-e10-b32").normal_class == 3


def test_wilson_interval():
    from capslib.tools.stallrate import wilson
    lo, hi = wilson(0, 16)
    assert lo == 0.0 and hi == pytest.approx(0.194, abs=1e-3)
    lo, hi = wilson(8, 16)
    assert (lo, hi) == (pytest.approx(0.280, abs=1e-3), pytest.approx(0.720, abs=1e-3))


@pytest.mark.slow(seconds=15)
def test_stall_rate_of_replicas_per_route_on_digits(tmp_path, tiny_splits):
    """Replicas per route, trained only (nothing evaluated): each replica's losses are, bit for
    bit, those a run of the grid records for the same cell on the same route."""
    import io
    import json
    from capslib.tools.stallrate import ROUTES as STALL_ROUTES, main, replicas
    cell = "imbalanced-digits-capsnet-standard-n0-f0.1-s0-e5-b32"
    rc = main(["--cell", cell, "--profile", "quick", "--replicas", "2", "--epochs", "2", "--routes",
               "plain-bf16,fast-bf16-conv1fp32", "--device", "cpu", "--out", str(tmp_path / "out")])
    assert rc == 0
    report = json.loads(next((tmp_path / "out").glob("stallrate-cpu-*.json")).read_text())
    assert list(report["routes"]) == ["plain-bf16", "fast-bf16-conv1fp32"]
    for route, r in report["routes"].items():
        assert r["replicas"] == 2 and 0 <= r["stalled"] <= 2 and sorted(r["final_loss"]) == ["0", "1"]
        assert r["wilson95"][0] <= r["rate"] <= r["wilson95"][1]
        for seed, curve in r["epoch_end_losses"].items():     # each path's loss at each epoch's end
            assert len(curve) == 2 and curve[-1] == r["final_loss"][seed]
        assert [look["epoch"] for look in r["early_look"]] == [1] and r["early_look"][0]["replicas"] == 2
        fast, precision, options = STALL_ROUTES[route]
        cells = replicas(cell_from_id(cell, "quick"), 2, 2)
        store = ResultsStore(tmp_path / route, "t")
        run_grid(cells, store, device="cpu", show_progress=False, fast=fast, group_size=8, fast_options=options,
                 precision=precision, out=io.StringIO())
        for c in cells:
            info = store.load_cell(c)["info"]
            assert (r["final_loss"][str(c.seed)], r["epoch_end_losses"][str(c.seed)]) == \
                (info["final_loss"], info["epoch_end_losses"]), route
    assert main(["--routes", "gpu-magic", "--device", "cpu"]) == 2


def test_stall_rate_resumes_a_report_without_training_its_seeds_again(tmp_path, monkeypatch):
    """A resumed run trains only the seeds the report lacks and counts the earlier ones with them;
    a report of another cell is refused."""
    import json
    from capslib.tools import stallrate
    trained = []

    def curve(seed):        # odd seeds stay on the plateau; every fourth leaves it in the last epoch
        return [0.41, 0.41, 0.41] if seed % 2 else [0.41, 0.41, 0.02] if seed % 4 == 0 else [0.41, 0.02, 0.02]

    def fake(route, cells, device, data_root=None):
        trained.append((route, [c.seed for c in cells]))
        return {"replicas": {c.seed: (curve(c.seed)[-1], bool(c.seed % 2)) for c in cells},
                "curves": {c.seed: curve(c.seed) for c in cells}, "failed": {}, "seconds": 1.0}
    monkeypatch.setattr(stallrate, "train_replicas", fake)
    cell = "imbalanced-digits-capsnet-standard-n0-f0.1-s0-e5-b32"
    args = ["--cell", cell, "--profile", "quick", "--epochs", "1", "--routes", "plain-bf16,fast-bf16",
            "--device", "cpu", "--out", str(tmp_path)]
    assert stallrate.main(args + ["--replicas", "8"]) == 0
    path = next(tmp_path.glob("stallrate-cpu-*.json"))
    assert trained == [("plain-bf16", list(range(8))), ("fast-bf16", list(range(8)))]
    trained.clear()
    assert stallrate.main(args + ["--replicas", "16", "--resume", str(path)]) == 0
    assert trained == [("plain-bf16", list(range(8, 16))), ("fast-bf16", list(range(8, 16)))]
    report = json.loads(path.read_text())
    assert report["rounds_done"] == 2 and "resumed_from" in report
    for r in report["routes"].values():
        assert (r["stalled"], r["replicas"], r["seconds"]) == (8, 16, 2.0)
        assert sorted(map(int, r["final_loss"])) == list(range(16))
        assert sorted(map(int, r["epoch_end_losses"])) == list(range(16))     # the first run's curves kept
        assert r["early_look"] == [
            {"epoch": 1, "replicas": 16, "on_plateau": 16, "still_at_end": 8, "only_at_end": 0},
            {"epoch": 2, "replicas": 16, "on_plateau": 12, "still_at_end": 8, "only_at_end": 0}]
    other = [a if a != cell else cell.replace("-n0-", "-n1-") for a in args]
    assert stallrate.main(other + ["--replicas", "16", "--resume", str(path)]) == 2


def test_early_look_counts_only_whole_curves_of_one_length():
    from capslib.tools.stallrate import early_look
    curves = {0: [0.4, 0.4, 0.4], 1: [0.4, 0.1, 0.01], 2: [0.1, 0.4, 0.4], 3: [None, 0.4, 0.4],
              4: [float("nan"), 0.4, 0.4]}
    assert early_look(curves) == [
        {"epoch": 1, "replicas": 3, "on_plateau": 2, "still_at_end": 1, "only_at_end": 1},
        {"epoch": 2, "replicas": 3, "on_plateau": 2, "still_at_end": 2, "only_at_end": 0}]
    assert early_look({0: [0.4], 1: [0.4, 0.4]}) == [] and early_look({}) == []
    assert early_look({0: [0.4]}) == []                   # one epoch: nothing earlier to look at


@pytest.mark.slow
def test_gradcheck_of_a_plateau_state_on_digits(tmp_path):
    """On a CPU the float64 reference and the plain fp32 route agree to rounding; the fast path
    with conv1 in fp32 computes the plain bf16 path's gradient."""
    import json
    from capslib.tools.gradcheck import main
    rc = main(["--cell", "imbalanced-digits-capsnet-standard-n0-f0.01-s0-e5-b32", "--profile", "quick",
               "--steps", "20", "--device", "cpu", "--out", str(tmp_path),
               "--routes", "plain-fp32,plain-bf16,fast-bf16,fast-bf16-conv1fp32"])
    assert rc == 0
    r = json.loads(next(tmp_path.glob("gradcheck-cpu-*.json")).read_text())["routes"]
    assert max(r["plain-fp32"]["relative_l2"].values()) < 1e-5
    assert r["fast-bf16-conv1fp32"]["relative_l2"] == pytest.approx(r["plain-bf16"]["relative_l2"], rel=1e-3)
    assert r["fast-bf16"]["relative_l2"]["conv1"] > r["plain-bf16"]["relative_l2"]["conv1"]
