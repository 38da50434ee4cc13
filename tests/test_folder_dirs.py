"""A folder's subfolders named as anomalib's Folder names them (normal_dir, abnormal_dir,
normal_test_dir, mask_dir), the older anomalous/ still read, a normal-only folder as paper B on
one normal class, and the split each load states: which folder's images train, which test."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PIL")

from capslib.data.folder import MIN_NORMAL, FolderError, load_folder  # noqa: E402
from test_folder import one_line, paper_a, png  # noqa: E402


def normal_only(root: Path, n: int = MIN_NORMAL + 2) -> Path:
    for i in range(n):
        png(root / "normal" / f"n{i:02d}.png", value=10 * i)
    return root


def relative(d, paths) -> list[str]:
    return sorted(str(p.relative_to(d.root)) for p in paths)


def every_file_of_the_split(d) -> tuple[list[str], list[str]]:
    train = sorted(f for p in d.parts for f in p.train)
    test = sorted(f for p in d.parts for f in p.test)
    return train, test


def test_abnormal_is_the_default_name_and_anomalous_still_reads_the_same(tmp_path):
    old = paper_a(tmp_path / "old")
    new = tmp_path / "new"
    shutil.copytree(old, new)
    (new / "anomalous").rename(new / "abnormal")
    a, b = load_folder(old), load_folder(new)
    assert a.protocol == b.protocol == "imbalanced"
    assert a.dirs["abnormal_dir"] == "anomalous" and b.dirs["abnormal_dir"] == "abnormal"
    rename = lambda names: sorted(n.replace("anomalous/", "abnormal/") for n in names)
    assert rename(relative(a, a.train_paths)) == relative(b, b.train_paths)      # the same split, file for file
    assert rename(relative(a, a.test_paths)) == relative(b, b.test_paths)
    assert np.array_equal(a.test_labels, b.test_labels) and a.skipped == b.skipped == []
    for i in range(2):
        png(new / "anomalous" / f"x{i}.png")
    with pytest.raises(FolderError) as e:                                          # which one? say so
        load_folder(new)
    assert "both abnormal/ and anomalous/" in one_line(e)
    named = load_folder(new, abnormal_dir="anomalous")                              # named: that one is read
    assert named.dirs["abnormal_dir"] == "anomalous" and [s.path.name for s in named.skipped] == ["abnormal"]


def test_names_of_your_own_as_anomalib_takes_them(tmp_path):
    root = tmp_path / "parts"
    for i in range(MIN_NORMAL + 2):
        png(root / "train" / "good" / f"g{i}.png", value=i)
    for i in range(4):
        png(root / "test" / "broken" / f"b{i}.png", value=200 + i)
    for i in range(3):
        png(root / "test" / "good" / f"t{i}.png", value=50 + i)
        png(root / "ground_truth" / "broken" / f"b{i}_mask.png", value=255)
    d = load_folder(root, normal_dir="train/good", abnormal_dir="test/broken", normal_test_dir="test/good",
                    mask_dir="ground_truth/broken", protocol="novelty")
    assert d.protocol == "novelty" and d.classes == ["good"] and d.labelled
    assert relative(d, d.train_paths) == sorted(f"train/good/g{i}.png" for i in range(MIN_NORMAL + 2))
    assert relative(d, d.test_paths) == sorted([f"test/broken/b{i}.png" for i in range(4)] +
                                               [f"test/good/t{i}.png" for i in range(3)])
    assert list(d.test_labels) == [1 if "broken" in str(p) else 0 for p in d.test_paths]
    assert not any("mask" in str(p) for p in d.train_paths + d.test_paths)        # masks are never read
    assert any("masks not read" in n and "whole images" in n for n in d.notes)
    assert "masks not read" in "\n".join(d.split_lines())
    rec = d.split_record()
    assert rec["dirs"] == {"normal_dir": "train/good", "abnormal_dir": "test/broken", "normal_test_dir": "test/good",
                           "test_dir": None, "mask_dir": "ground_truth/broken", "mask_read": False}
    assert rec["asked"]["protocol"] == "novelty" and (rec["n_train"], rec["n_test"]) == (MIN_NORMAL + 2, 7)
    assert d.skipped == []                             # test/ here holds named folders: not a given test set


def test_a_normal_only_folder_is_paper_b_on_one_class_with_scores_and_no_auroc(tmp_path):
    root = normal_only(tmp_path / "ok")
    d = load_folder(root, test_fraction=0.3, split_seed=0)
    assert d.protocol == "novelty" and d.classes == ["normal"] and set(d.train_labels) == {0}
    assert len(d.train_paths) == 7 and len(d.test_paths) == 3 and set(d.test_labels) == {0}   # held-out normals
    assert not d.labelled
    no_auroc = [n for n in d.notes if "no AUROC" in n]
    assert len(no_auroc) == 1 and "no abnormal images" in no_auroc[0] and "scores only" in no_auroc[0]
    assert any("no AUROC" in line for line in d.split_lines())
    # normal images to test on, given: every image of normal/ trains
    for i in range(3):
        png(root / "more" / f"m{i}.png")
    d = load_folder(root, normal_test_dir="more")
    assert len(d.train_paths) == MIN_NORMAL + 2 and relative(d, d.test_paths) == [f"more/m{i}.png" for i in range(3)]
    assert [p.how for p in d.parts] == ["train", "test"] and d.test_from == "more/"
    # and abnormal images added: with protocol novelty they are test images only
    for i in range(2):
        png(root / "abnormal" / f"a{i}.png", value=255)
    d = load_folder(root, normal_test_dir="more", protocol="novelty")
    assert d.labelled and not any("no AUROC" in n for n in d.notes)
    assert all("abnormal" not in str(p) for p in d.train_paths) and int(d.test_labels.sum()) == 2


def test_the_protocol_asked_for_reads_normal_and_abnormal_either_way(tmp_path):
    root = paper_a(tmp_path / "imgs", n_anom=4)
    a = load_folder(root)                                   # paper A: a share of the anomalies trains
    b = load_folder(root, protocol="novelty")               # anomalib's way: normal images only
    assert a.protocol == "imbalanced" and int(a.train_labels.sum()) == 3
    assert b.protocol == "novelty" and set(b.train_labels) == {0} and b.classes == ["normal"]
    assert relative(b, [p for p, y in zip(b.test_paths, b.test_labels) if y]) == [f"anomalous/a{i:02d}.png"
                                                                                   for i in range(4)]
    # the normal images are drawn alike: the same seed, the same draw
    normal = lambda d, paths: [p for p in paths if p.parent.name == "normal"]
    assert normal(a, a.test_paths) == normal(b, b.test_paths)


def test_the_split_names_every_image_once_with_its_folder_and_why(tmp_path):
    root = paper_a(tmp_path / "imgs")
    (root / "notes.txt").write_text("not an image")
    d = load_folder(root, split_seed=3)
    train, test = every_file_of_the_split(d)
    assert train == relative(d, d.train_paths) and test == relative(d, d.test_paths)
    assert not set(train) & set(test)
    assert [(p.folder, p.kind, p.how, p.n_train, p.n_test) for p in d.parts] == [
        ("normal", "normal", "drawn", 7, 3), ("anomalous", "abnormal", "drawn", 2, 1)]
    lines = d.split_lines()
    assert lines[0] == "  normal/ (normal): 7 train, 3 test; 0.3 drawn into the test set with seed 3"
    rec = d.split_record()
    assert [(p["n_train"], p["n_test"]) for p in rec["parts"]] == [(7, 3), (2, 1)]
    assert sorted(rec["parts"][1]["test"]) == [f for f in test if f.startswith("anomalous/")]
    assert [s.path.name for s in d.skipped] == ["notes.txt"]
    png(root / "test" / "normal" / "t.png")                 # a given test set: everything else trains
    png(root / "test" / "abnormal" / "u.png")
    d = load_folder(root)
    assert [(p.folder, p.how, p.n_train, p.n_test) for p in d.parts] == [
        ("normal", "train", 10, 0), ("anomalous", "train", 3, 0), ("test/normal", "test", 0, 1),
        ("test/abnormal", "test", 0, 1)]
    assert list(d.test_labels) == [0, 1] and d.test_from == "test/"


@pytest.mark.parametrize("build, kwargs, says", [
    (paper_a, {"abnormal_dir": "defects"}, "defects: no such folder (abnormal_dir"),
    (paper_a, {"normal_dir": "good"}, "good: no such folder (normal_dir"),
    (paper_a, {"normal_test_dir": "more"}, "more: no such folder (normal_test_dir"),
    (paper_a, {"mask_dir": "masks"}, "masks: no such folder (mask_dir"),
    (paper_a, {"normal_test_dir": "empty"}, "empty: no images"),
    (paper_a, {"abnormal_dir": "empty"}, "empty: no images"),
    (paper_a, {"abnormal_dir": "normal"}, "one folder named twice"),
    (normal_only, {"abnormal_dir": "abnormal"}, "abnormal: no such folder"),
])
def test_a_missing_or_empty_folder_is_one_line(tmp_path, build, kwargs, says):
    root = build(tmp_path / "imgs")
    (root / "empty" / "sub").mkdir(parents=True)
    (root / "empty" / "sub" / "readme.txt").write_text("no image here")
    with pytest.raises(FolderError) as e:
        load_folder(root, **kwargs)
    assert says in one_line(e)


def test_an_empty_abnormal_folder_is_refused_not_taken_for_a_normal_only_one(tmp_path):
    root = normal_only(tmp_path / "imgs")
    (root / "abnormal").mkdir()
    with pytest.raises(FolderError) as e:
        load_folder(root)
    assert str(root / "abnormal") in one_line(e) and "no images" in str(e.value)


def test_two_test_sets_are_refused(tmp_path):
    root = paper_a(tmp_path / "imgs")
    png(root / "test" / "normal" / "t.png")
    png(root / "more" / "m.png")
    with pytest.raises(FolderError) as e:
        load_folder(root, normal_test_dir="more")
    assert "both test/ and normal_test_dir" in one_line(e)
