"""The GPU window's group sizes on a CPU (capslib.tools.groupsize, capslib.tools.window pick): sizes
that cannot fit are skipped before they are tried, the fastest sound size is chosen per
paper, and the decision's flags train both papers' cells in groups of those sizes."""
import json

import pytest
import torch

from capslib.core.config import FastOptions
from capslib.tools import groupsize
from capslib.tools.groupsize import Setting, choose_group, time_group
from capslib.train.stacked_memory import group_memory
from stacked_helpers import TINY

SMALL = {"imbalanced": Setting("imbalanced", 2, 32, True, TINY), "novelty": Setting("novelty", 9, 100, False, TINY)}
CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")     # tensors this small: one thread (tests/conftest.py)


def _between(setting: Setting, small: int, big: int, bf16: bool = False) -> int:
    """Device bytes in which ``small`` models fit and ``big`` do not (80% usable)."""
    cfg = setting.capsnet_config()
    lo, hi = (group_memory(cfg, n, setting.batch, bf16=bf16)["total"] for n in (small, big))
    return int((lo + hi) / 2 / 0.8)


def test_time_group_trains_the_group_and_times_the_second_chunk():
    t = time_group(SMALL["novelty"], 3, CPU, FastOptions(), steps=2)
    assert t["models"] == 3 and t["steps"] == 2 and t["images"] == 2 * 100 * 3
    assert t["seconds"] > 0 and t["images_per_s"] == pytest.approx(t["images"] / t["seconds"])
    assert t["start_seconds"] >= 0


def test_sizes_that_do_not_fit_are_skipped_and_the_fastest_sound_size_is_chosen():
    setting = SMALL["novelty"]
    checked = []

    def check(options, device, protocol, size):           # the fastest size fails, the next passes
        checked.append((protocol, size))
        return {"sound": len(checked) > 1, "why": f"check {len(checked)}"}
    g = choose_group(setting, FastOptions(), CPU, sizes=(2, 3, 8), steps=1,
                     device_bytes=_between(setting, 3, 8), check=check)
    assert "does not fit" in g["candidates"][8]["skipped"] and "images_per_s" not in g["candidates"][8]
    timed = sorted((2, 3), key=lambda s: -g["candidates"][s]["images_per_s"])
    assert checked == [("novelty", timed[0]), ("novelty", timed[1])]
    assert g["chosen"] == timed[1] and g["checks"][timed[0]]["sound"] is False
    assert all(g["candidates"][s]["estimate_bytes"] == g["candidates"][s]["estimate"]["total"] for s in (2, 3, 8))
    assert g["setting"] == {"protocol": "novelty", "n_classes": 9, "batch": 100, **TINY}


def test_past_its_deadline_the_sweep_times_one_size_and_checks_it_alone():
    calls = []
    g = choose_group(SMALL["imbalanced"], FastOptions(), CPU, sizes=(2, 3), steps=1, deadline=0.0,
                     check=lambda *a: calls.append(a) or {"sound": False, "why": "no"})
    assert "images_per_s" in g["candidates"][2] and g["candidates"][3]["skipped"] == "the pick's time budget is spent"
    assert len(calls) == 1 and g["chosen"] is None and g["why"].startswith("no group size passed the check")


def test_a_size_that_raises_is_noted_and_not_ranked(monkeypatch):
    """A size the device cannot run (out of memory despite the estimate) is written down with
    its error; the others are ranked and checked as usual; a check that raises fails its size."""
    real = groupsize.time_group

    def time_or_fail(setting, size, *a):
        if size == 3:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(setting, size, *a)
    monkeypatch.setattr(groupsize, "time_group", time_or_fail)
    g = choose_group(SMALL["imbalanced"], FastOptions(), CPU, sizes=(2, 3), steps=1,
                     check=lambda *a: {"sound": True, "why": "stub"})
    assert g["candidates"][3]["error"] == "RuntimeError: CUDA out of memory (simulated)"
    assert g["chosen"] == 2 and list(g["checks"]) == [2]

    def check_fails(*a):
        raise RuntimeError("CUDA out of memory in the check (simulated)")
    g = choose_group(SMALL["imbalanced"], FastOptions(), CPU, sizes=(2,), steps=1, check=check_fails)
    assert g["chosen"] is None and "the check raised RuntimeError" in g["checks"][2]["why"]


def _stub_timers(monkeypatch):
    """The switch sets' timings stubbed (the fast path faster than the plain path), so that the
    decision reaches the group sizes whatever this CPU's speeds."""
    import capslib.tools.bench.timers as timers
    monkeypatch.setattr(timers, "time_plain", lambda *a, **k: {"images_per_s": 100.0})
    monkeypatch.setattr(timers, "time_fast", lambda *a, **k: {"images_per_s": 500.0})


def test_pick_writes_every_measured_size_and_prints_the_sizes_as_run_options(monkeypatch, tmp_path, capsys):
    """Two switch sets timed alike: under the first, paper B has no sound size, so the second
    is sized; its fastest sizes per paper become the run options."""
    from capslib.tools import window
    _stub_timers(monkeypatch)
    monkeypatch.setattr(window, "SETTINGS", SMALL)
    monkeypatch.setattr(groupsize, "soundness", lambda options, d, protocol, size, epochs: {
        "sound": not (options.channels_last is False and protocol == "novelty"), "why": "stub"})
    gib = _between(SMALL["novelty"], 3, 8, bf16=True) / 2 ** 30
    assert window.main(["pick", "--device", "cpu", "--steps", "1", "--candidates", "bf16,bf16+channels-last",
                        "--groups", "2,3,8", "--memory-gib", f"{gib:.6f}", "--out", str(tmp_path)]) == 0
    flags = capsys.readouterr().out.strip().splitlines()[-1].split()
    path = next(tmp_path.glob("window-cpu-*.json"))
    report = json.loads(path.read_text())
    assert report["decision"] == "fast" and report["chosen"] == "bf16+channels-last"
    assert report["checks"]["bf16"]["sound"] is False and list(report["groups"]) == ["bf16", "bf16+channels-last"]
    groups = report["groups"]["bf16+channels-last"]
    assert "does not fit" in groups["novelty"]["candidates"]["8"]["skipped"]
    for protocol, g in groups.items():
        timed = {int(s): c["images_per_s"] for s, c in g["candidates"].items() if "images_per_s" in c}
        assert g["chosen"] == max(timed, key=timed.get) == report["group_sizes"][protocol]
        for c in g["candidates"].values():
            assert c["estimate_bytes"] > 0 and ("images_per_s" in c or "skipped" in c)
    sizes = report["group_sizes"]
    assert flags == ["--fast", "--bf16", "--channels-last", "--group-size",
                     f"imbalanced={sizes['imbalanced']},novelty={sizes['novelty']}", "--rates", str(path)]
    from capslib.cli.main import build_parser
    from capslib.run.budget import Rates
    args = build_parser().parse_args(["run", *flags])
    assert args.group_size == sizes
    # the run's time budget reads every timed size of the chosen switch set
    assert Rates.load(args.rates).table == {
        protocol: {int(s): {"images_per_s": c["images_per_s"], "start_seconds": c["start_seconds"]}
                   for s, c in g["candidates"].items() if "images_per_s" in c} for protocol, g in groups.items()}


def test_the_picks_rates_reach_the_runs_time_budget(monkeypatch, tmp_path, tiny_splits, capsys):
    """pick's last line, as the window passes it, to `capslib run --time-budget`: paper A's
    group is measured so slow that it is predicted to end after the budget, so the run starts
    without it (though first in the order), trains paper B's cell after it, and says why
    (one full-size CapsNet on 30 digits, one epoch: seconds on a CPU)."""
    from capslib.cli.main import main as capslib_main
    from capslib.run.store.results import ResultsStore
    from capslib.tools import window
    _stub_timers(monkeypatch)
    speed = {"imbalanced": 0.1, "novelty": 1e9}                     # images/s
    monkeypatch.setattr(groupsize, "time_group", lambda setting, size, *a: {
        "images_per_s": speed[setting.protocol], "start_seconds": 0.0})
    monkeypatch.setattr(groupsize, "soundness", lambda *a, **k: {"sound": True, "why": "stub"})
    assert window.main(["pick", "--device", "cpu", "--steps", "1", "--candidates", "bf16", "--groups", "8",
                        "--out", str(tmp_path / "bench")]) == 0
    flags = capsys.readouterr().out.strip().splitlines()[-1].split()
    assert flags[-2] == "--rates"
    rc = capslib_main(["run", "--profile", "quick", "--device", "cpu", "--classes", "1", "--fractions", "0.1",
                       "--methods", "capsnet", "--epochs", "1", "--no-progress", "--max-attempts", "1",
                       "--results-root", str(tmp_path), "--time-budget", "300", *flags])
    out = capsys.readouterr()
    assert rc == 0
    assert ResultsStore(tmp_path, "quick").finished_ids() == ["novelty-digits-capsnet-h1-s0-e1-b32"]
    assert "skipped 1 units predicted to end after the budget" in out.err and "imbalanced-digits x2" in out.err
    assert "2 left for the next run (2 in 1 units predicted to end after the budget)" in out.out


@pytest.mark.slow(seconds=35)
def test_window_dry_run_sizes_groups_with_the_real_check_and_trains_both_papers(monkeypatch, tmp_path, tiny_splits,
                                                                                capsys):
    """The window's two Python steps on a CPU: pick (shrunken networks timed, the real
    soundness check on digits cells in groups of each size) then `capslib run` with the
    printed options, on paper A's and paper B's digits cells of the quick profile."""
    from capslib.cli.main import main as capslib_main
    from capslib.run.store.results import ResultsStore
    from capslib.tools import window
    _stub_timers(monkeypatch)
    monkeypatch.setattr(window, "SETTINGS", SMALL)
    assert window.main(["pick", "--device", "cpu", "--steps", "1", "--candidates", "bf16", "--groups", "1,2",
                        "--check-epochs", "2", "--out", str(tmp_path / "bench")]) == 0
    flags = capsys.readouterr().out.strip().splitlines()[-1].split()
    report = json.loads(next((tmp_path / "bench").glob("window-cpu-*.json")).read_text())
    assert report["decision"] == "fast", report["why"]
    for protocol, g in report["groups"]["bf16"].items():
        check = g["checks"][str(g["chosen"])]
        assert check["sound"] and check["group_size"] == g["chosen"]
        assert all(v < 0.05 for v in check["auroc_abs_diff"].values())
    sizes = report["group_sizes"]
    rc = capslib_main(["run", "--profile", "quick", "--device", "cpu", "--classes", "2", "--fractions", "0.1",
                       "--methods", "capsnet", "--epochs", "1", "--no-progress", "--results-root", str(tmp_path),
                       *flags])
    assert rc == 0
    store = ResultsStore(tmp_path, "quick")
    done = {c: store.load_cell(c)["info"]["fast_path"]["group_size"] for c in store.finished_ids()}
    assert {c.split("-")[0] for c in done} == {"imbalanced", "novelty"}
    for cid, size in done.items():
        assert size == min(sizes[cid.split("-")[0]], 2 if cid.startswith("imbalanced") else 1), cid


def test_a_check_of_one_epoch_is_refused_in_one_line(capsys):
    """The check compares the loss after one epoch with the loss after the last: two at least."""
    from capslib.tools import window
    assert window.main(["pick", "--device", "cpu", "--check-epochs", "1"]) == 2
    assert capsys.readouterr().err.strip() == ("error: --check-epochs must be at least 2 (the check compares the loss "
                                               "after 1 epoch and after the last), got 1")
