"""Parameters checked at the door, once, for the CLI, papermill and the API alike."""
import pytest

from capslib.cli.main import main
from capslib.core.errors import ConfigError
from capslib.core.config import CellSpec
from capslib.study.params import GridRequest, check_notebook


@pytest.mark.parametrize("given,read", [
    (dict(classes=3), (3,)),                    # papermill -p classes 3
    (dict(classes="3,5"), (3, 5)),              # -p classes 3,5 / the CLI's --classes 3,5
    (dict(classes=["3", 5.0]), (3, 5)),         # numeric strings, whole floats
    (dict(seeds=1), (1,)),
    (dict(fractions=0.05), (0.05,)),
    (dict(fractions="0.1,0.01"), (0.1, 0.01)),
    (dict(datasets="digits"), ("digits",)),     # not 'd', 'i', 'g', ...
    (dict(methods="capsnet,cnn"), ("capsnet", "cnn")),
    (dict(epochs="2"), 2),
    (dict(extra_held_outs=[[0, 3, 5]]), ((0, 3, 5),)),
])
def test_values_are_read_at_the_door(given, read):
    req = GridRequest(**given)
    assert getattr(req, next(iter(given))) == read
    assert req.cells()


@pytest.mark.parametrize("given,message", [
    (dict(epochs=1.5), "epochs must be a whole number, got 1.5"),
    (dict(epochs="1.5"), "epochs must be a whole number, got '1.5'"),
    (dict(seeds=True), "seeds must be a whole number, got True (bool)"),
    (dict(classes="3,x"), "classes must be a whole number, got 'x' (str)"),
    (dict(fractions=[True]), "fractions must be a number, got True (bool)"),
    (dict(datasets=3), "datasets must be a name (a string), got 3"),
    (dict(classes=[]), "classes is empty"),
    (dict(extra_held_outs=[0, 3, 5]), "extra_held_outs must be a list of held-out sets"),
    (dict(profile="huge"), "unknown profile 'huge'; choose one of quick, paper"),
    (dict(datasets="cifar"), "unknown dataset 'cifar'"),
    (dict(classes=12), "out of range 0..9"),
])
def test_bad_values_are_one_line_naming_the_parameter(given, message):
    with pytest.raises(ConfigError) as e:
        GridRequest(**given).cells()
    assert message in str(e.value) and "\n" not in str(e.value)


def test_api_cellspec_checks_types():
    spec = CellSpec("imbalanced", "digits", "capsnet", "standard", normal_class="1", anomaly_fraction="0.1", seed="2")
    assert (spec.normal_class, spec.anomaly_fraction, spec.seed) == (1, 0.1, 2) and spec.cell_id.endswith("s2-e10-b32")
    for bad, message in [(dict(seed=1.5), "seed must be a whole number, got 1.5"),
                         (dict(seed=True), "seed must be a whole number, got True (bool)"),
                         (dict(epochs="many"), "epochs must be a whole number, got 'many' (str)"),
                         (dict(normal_class=False), "normal_class must be a whole number, got False (bool)")]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            CellSpec(**{**dict(protocol="imbalanced", dataset="digits", variant="standard", normal_class=1,
                               anomaly_fraction=0.1), **bad})


@pytest.mark.parametrize("argv,message", [
    (["--classes", "3,x"], "error: classes must be a whole number, got 'x' (str)"),
    (["--epochs", "1.5"], "error: epochs must be a whole number, got '1.5'"),
    (["--seeds", "-1"], "error: seed must be >= 0, got -1"),
])
def test_cli_reads_values_like_papermill(capsys, tmp_path, argv, message):
    assert main(["run", "--results-root", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err == message
    assert not (tmp_path / "quick").exists()   # before any training, nothing written


def test_fraction_with_no_anomaly_is_caught_before_training(tmp_path, monkeypatch, capsys):
    import capslib.run.runner as runner

    def never(*a, **k):
        raise AssertionError("trained")
    monkeypatch.setattr(runner, "method_for", lambda protocol, method: never)
    code = main(["run", "--protocol", "imbalanced", "--methods", "cnn", "--classes", "0", "--fractions", "0.1,0.001",
                 "--results-root", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == ("error: anomaly fraction 0.001 gives no training anomaly beside the 124 images "
                                 "of digits class 0: use a fraction of at least 0.005")
    assert not (tmp_path / "quick" / "cells").exists()   # not even the 10% cell ran: checked at the door


# ---- notebooks -------------------------------------------------------------------------------
PARAMS_CELL = 'profile = "quick"  # the profile\nresults_root = "results"\nclasses = None\n'


def test_notebook_unknown_parameter_one_line():
    ns = {"In": ["", PARAMS_CELL, '# Parameters\nprofile = "quick"\nclases = 3\n',
                 "params.check_notebook(globals())"]}
    with pytest.raises(ConfigError) as e:
        check_notebook(ns)
    assert str(e.value) == "unknown parameter 'clases' for this notebook; it knows classes, profile, results_root"
    assert e.value._render_traceback_() == [f"ConfigError: {e.value}"]   # IPython shows one line


def test_notebook_known_or_no_parameters_pass():
    check_notebook({"In": ["", PARAMS_CELL, "# Parameters\nclasses = 3\n", "x"]})
    check_notebook({"In": ["", PARAMS_CELL, "x"]})          # opened in Jupyter: nothing injected
    check_notebook({})                                        # not in IPython at all


def test_a_novelty_cell_id_reads_back_what_it_was_made_from():
    from capslib.core.config import held_out_label, parse_novelty_cell_id
    from capslib.study.profiles import profile_grid
    cells = [c for name in ("quick", "paper") for c in profile_grid(name).cells()]
    novelty = [c.resolved() for c in cells if c.protocol == "novelty"]
    assert any(len(c.held_out) == 3 for c in novelty)          # {0, 3, 5} is among them
    for c in novelty:
        assert parse_novelty_cell_id(c.cell_id) == {"dataset": c.dataset, "method": c.method, "variant": c.variant,
                                                    "held_out": tuple(c.held_out), "seed": c.seed}
    assert held_out_label((0, 3, 5)) == "0+3+5" and held_out_label((2,)) == "2"
    assert all(parse_novelty_cell_id(c.cell_id) is None for c in cells if c.protocol != "novelty")
