"""fit / score on a folder of images: the commands end to end on a digits folder, the
saved model's round trip, and the one-line refusals of corrupt or other-version model files."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("safetensors")
from capslib.cli.main import main  # noqa: E402
from capslib.data.datasets import load_dataset  # noqa: E402
from capslib.detect.detector import META, WEIGHTS, Detector, ModelFileError
from capslib.detect.fit import FitSettings, fit_or_load  # noqa: E402
from capslib.data.folder import MIN_NORMAL, load_folder, save_image, write_example_folder  # noqa: E402
from capslib.model.scores import auroc  # noqa: E402

pytestmark = pytest.mark.slow(seconds=40)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """`python -m capslib fit` on digits class 0 with 10% anomalies (paper A), one epoch, CPU."""
    tmp = tmp_path_factory.mktemp("detector")
    root = write_example_folder(tmp / "digits", "digits", "imbalanced", normal_class=0, anomaly_fraction=0.1)
    model_dir = tmp / "model"
    rc = main(["fit", str(root), "--out", str(model_dir), "--epochs", "1", "--device", "cpu",
               "--precision", "fp32", "--no-progress"])
    assert rc == 0
    return root, model_dir


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_fit_then_score_on_a_digits_folder(fitted, tmp_path, capsys):
    root, model_dir = fitted
    meta = json.loads((model_dir / META).read_text())
    assert meta["protocol"] == "imbalanced" and meta["variant"] == "proposed" and meta["training"]["epochs"] == 1
    assert meta["preprocessing"]["channels"] == 1 and meta["preprocessing"]["image_size"] == 28
    assert np.isfinite(meta["thresholds"]["anomaly_score"]) and meta["commit"]
    out = tmp_path / "scores.csv"
    assert main(["score", str(model_dir), str(root / "test"), "--csv", str(out), "--device", "cpu"]) == 0
    rows = read_csv(out)
    tested = sorted(str(p) for p in (root / "test").rglob("*.png"))
    assert sorted(r["path"] for r in rows) == tested                              # one row per image, no more
    assert list(rows[0]) == ["path", "anomaly_score", "length_difference", "r_l", "routing_gini", "pp", "re",
                             "threshold", "anomalous"]
    s = np.array([float(r["anomaly_score"]) for r in rows])
    labels = np.array(["/anomalous/" in r["path"] for r in rows])
    thr = float(rows[0]["threshold"])
    assert [int(r["anomalous"]) for r in rows] == list((s > thr).astype(int))
    a = auroc(s, labels)
    assert a > 0.8                                                                # clearly above chance, 1 epoch
    assert a == pytest.approx(meta["test_metrics"]["anomaly_score"]["auroc"], abs=1e-3)   # same as at fit time
    assert "scored" in capsys.readouterr().err


def test_saved_model_reloads_bitwise(fitted, tmp_path):
    _, model_dir = fitted
    det = Detector.load(model_dir, "cpu")
    det.save(tmp_path / "again")
    assert (tmp_path / "again" / WEIGHTS).read_bytes() == (model_dir / WEIGHTS).read_bytes()
    again = Detector.load(tmp_path / "again", "cpu")
    for (k, a), (k2, b) in zip(det.model.state_dict().items(), again.model.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    x = torch.rand(10, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    s1, s2 = det.evaluate(x), again.evaluate(x)
    assert s1.keys() == s2.keys() and all(np.array_equal(s1[k], s2[k]) for k in s1)


def test_fit_and_save_keep_a_model_file_capslib_did_not_write(fitted, tmp_path, capsys):
    root, model_dir = fitted
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / META).write_text('{"name": "a model of another tool"}')
    assert main(["fit", str(root), "--out", str(theirs), "--epochs", "1", "--device", "cpu", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a capslib detector's" in err[0] and "nothing was changed" in err[0]
    assert json.loads((theirs / META).read_text()) == {"name": "a model of another tool"}
    assert sorted(p.name for p in theirs.iterdir()) == [META]
    det = Detector.load(model_dir, "cpu")
    weights_only = tmp_path / "weights"
    weights_only.mkdir()
    (weights_only / WEIGHTS).write_bytes(b"someone's weights")
    for where in (theirs, weights_only):
        with pytest.raises(ModelFileError, match="not a capslib detector's"):
            det.save(where)
    assert (weights_only / WEIGHTS).read_bytes() == b"someone's weights"
    earlier = tmp_path / "earlier"
    shutil.copytree(model_dir, earlier)
    assert det.save(earlier) == earlier                     # an earlier fit's folder: replaced


def test_fitted_in_memory_equals_loaded_paper_b(tmp_path):
    """A tiny paper B folder (two digit classes, one step): the model fitted in memory and the
    one loaded from its files give the very same scores; fit_or_load reuses it."""
    data = load_dataset("digits")
    root = tmp_path / "b"
    for c in (0, 1):
        for i in np.flatnonzero(data.y_train.numpy() == c)[:MIN_NORMAL + 4]:
            (root / "normal" / f"c{c}").mkdir(parents=True, exist_ok=True)
            save_image(data.x_train[i], root / "normal" / f"c{c}" / f"{i}.png")
    for i in np.flatnonzero(data.y_train.numpy() == 7)[:5]:
        (root / "anomalous").mkdir(exist_ok=True)
        save_image(data.x_train[i], root / "anomalous" / f"{i}.png")
    folder = load_folder(root)
    assert folder.protocol == "novelty"
    settings = FitSettings(epochs=1, batch_size=64)
    det, how = fit_or_load(folder, tmp_path / "m", settings, "cpu")
    assert how == "fitted"
    loaded, how = fit_or_load(folder, tmp_path / "m", settings, "cpu", train=False)
    assert how == "loaded"
    s1, s2 = det.evaluate(folder.x_test, keep=[0, 1]), loaded.evaluate(folder.x_test, keep=[0, 1])
    assert all(np.array_equal(s1[k], s2[k]) for k in s1) and s1["reconstructions"].shape == (2, 1, 28, 28)
    assert set(s1) >= {"pp", "re", "predicted_class"}
    with pytest.raises(ModelFileError, match="another settings"):
        fit_or_load(folder, tmp_path / "m", FitSettings(epochs=2, batch_size=64), "cpu", train=False)


def _corrupt(src: Path, dst: Path, how: str) -> Path:
    shutil.copytree(src, dst)
    meta = json.loads((dst / META).read_text())
    if how == "flipped byte":
        raw = bytearray((dst / WEIGHTS).read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        (dst / WEIGHTS).write_bytes(bytes(raw))
    elif how == "truncated json":
        (dst / META).write_text((dst / META).read_text()[:100])
    elif how == "other version":
        meta["format_version"] = 99
        (dst / META).write_text(json.dumps(meta))
    elif how == "other architecture":
        meta["capsnet"]["n_classes"] = 3
        (dst / META).write_text(json.dumps(meta))
    elif how == "missing weights":
        (dst / WEIGHTS).unlink()
    return dst


@pytest.mark.parametrize("how, says", [("flipped byte", "SHA-256 differs"), ("truncated json", "not valid JSON"),
                                       ("other version", "format 99"), ("other architecture", "do not load"),
                                       ("missing weights", "missing")])
def test_corrupt_or_other_version_model_is_one_line(fitted, tmp_path, capsys, how, says):
    root, model_dir = fitted
    bad = _corrupt(model_dir, tmp_path / "bad", how)
    with pytest.raises(ModelFileError, match=says) as e:
        Detector.load(bad)
    assert "\n" not in str(e.value)
    img = next((root / "test" / "normal").iterdir())
    assert main(["score", str(bad), str(img)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and says in err[0]


def test_fit_on_a_normal_only_folder_states_its_split_and_that_there_is_no_auroc(tmp_path, capsys):
    """A normal-only folder is paper B on one normal class: it trains on 7 of the 10 images, tests
    on the other 3, says that without abnormal images there is no AUROC, and keeps the split."""
    images = tmp_path / "images"
    g = torch.Generator().manual_seed(0)
    for i in range(MIN_NORMAL + 2):
        (images / "normal").mkdir(parents=True, exist_ok=True)
        save_image(torch.rand(1, 28, 28, generator=g), images / "normal" / f"{i}.png")
    out = tmp_path / "m"
    assert main(["fit", str(images), "--out", str(out), "--epochs", "1", "--device", "cpu", "--precision", "fp32",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "paper B (protocol novelty)" in printed and "normal/ (normal): 7 train, 3 test" in printed
    assert "no abnormal images" in printed and "no AUROC" in printed and "AUROC 0" not in printed
    meta = json.loads((out / META).read_text())
    assert meta["protocol"] == "novelty" and meta["classes"] == ["normal"] and meta["test_metrics"] == {}
    split = meta["data"]["split"]
    assert (split["n_train"], split["n_test"]) == (7, 3) and split["dirs"]["abnormal_dir"] is None
    (part,) = split["parts"]
    assert sorted(part["train"] + part["test"]) == sorted(f"normal/{i}.png" for i in range(MIN_NORMAL + 2))
    assert main(["score", str(out), str(images), "--csv", str(tmp_path / "s.csv"), "--device", "cpu"]) == 0
    rows = read_csv(tmp_path / "s.csv")
    assert len(rows) == MIN_NORMAL + 2 and all(np.isfinite(float(r["re"])) for r in rows)


def test_fit_asked_for_paper_a_on_normal_images_only_is_one_line(tmp_path, capsys):
    (tmp_path / "normal").mkdir()
    for i in range(MIN_NORMAL):
        save_image(torch.rand(1, 28, 28), tmp_path / "normal" / f"{i}.png")
    assert main(["fit", str(tmp_path), "--out", str(tmp_path / "m"), "--device", "cpu", "--protocol",
                 "imbalanced"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no abnormal images" in err[0] and not (tmp_path / "m").exists()


def test_export_folder_then_fit_is_the_study_cell(tmp_path, capsys):
    """`export-folder` writes a cell's images; `fit` on them trains the same experiment as
    `run` does for that cell. The digits are not multiples of 1/255, so the PNGs round them
    to 8 bits: the folder holds the cell's images to that rounding, in the cell's order, and
    the two trainings end close, not equal. (On the MNIST family, whose pixels are bytes, the
    two routes gave bit-identical scores: the methods chapter's check on Fashion-MNIST.)"""
    from capslib.core.config import CellSpec
    from capslib.run.runner import run_cell
    from capslib.run.store.results import ResultsStore

    assert main(["export-folder", str(tmp_path / "cell"), "--dataset", "digits", "--normal-class", "8",
                 "--fraction", "0.1"]) == 0
    assert "normal/ 122, anomalous/ 14, test/normal/ 52, test/anomalous/ 488" in capsys.readouterr().out
    assert main(["fit", str(tmp_path / "cell"), "--out", str(tmp_path / "model"), "--epochs", "1", "--device", "cpu",
                 "--precision", "fp32", "--no-progress"]) == 0
    meta = json.loads((tmp_path / "model" / META).read_text())
    spec = CellSpec("imbalanced", "digits", "capsnet", variant="proposed", normal_class=8, anomaly_fraction=0.1,
                    seed=0, epochs=1)
    from capslib.run.runner import split_for
    data, folder = load_dataset("digits"), load_folder(tmp_path / "cell")
    split = split_for(spec.resolved(), data)
    quantized = lambda x: torch.round(x * 255) / 255
    assert torch.equal(folder.x_train, quantized(data.x_train[split.train_idx]).to(folder.x_train.dtype))
    assert torch.equal(folder.x_test, quantized(data.x_test[split.test_idx]).to(folder.x_test.dtype))
    np.testing.assert_array_equal(folder.train_labels, split.train_labels)
    np.testing.assert_array_equal(folder.test_labels, split.test_labels)
    doc = run_cell(spec, ResultsStore(tmp_path / "results", "t"), device="cpu", precision="fp32")
    assert meta["training"]["final_loss"] == pytest.approx(doc["info"]["final_loss"], rel=1e-3)
    for row in doc["rows"]:
        assert meta["test_metrics"][row["score"]]["auroc"] == pytest.approx(row["auroc"], abs=0.01), row["score"]


@pytest.mark.parametrize("args, says", [
    (["--normal-class", "12"], "error: normal class 12 out of range 0..9 for digits"),
    (["--fraction", "0.0001"], "error: anomaly fraction 0.0001 gives no training anomaly"),
    (["--protocol", "novelty", "--held-out", "12"], "error: held-out classes (12,) must be 1..8 classes in 0..9"),
])
def test_export_folder_refuses_a_cell_out_of_range_in_one_line(tmp_path, capsys, args, says):
    assert main(["export-folder", str(tmp_path / "x"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(says) and "\n" not in err and not (tmp_path / "x").exists()
