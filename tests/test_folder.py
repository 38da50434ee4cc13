"""The folder dataset: files the tests write, of several sizes, modes and formats,
a corrupt one, an empty one, non-image files, and the layouts of the two papers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from capslib.data.folder import (MIN_ANOMALOUS, MIN_NORMAL, FolderError, Preprocessing, load_folder,
    read_image, write_example_folder)


def png(path: Path, mode: str = "L", size=(20, 20), value=128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)
    return path


def paper_a(root: Path, n_normal: int = MIN_NORMAL + 2, n_anom: int = 3) -> Path:
    for i in range(n_normal):
        png(root / "normal" / f"n{i:02d}.png", value=10 * i)
    for i in range(n_anom):
        png(root / "anomalous" / f"a{i:02d}.png", value=255 - 10 * i)
    return root


def one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_modes_sizes_and_formats_become_the_same_input(tmp_path):
    files = [png(tmp_path / "gray.png", "L", (10, 12), 255), png(tmp_path / "rgb.jpg", "RGB", (40, 30), (255, 0, 0)),
             png(tmp_path / "rgba.png", "RGBA", (33, 33), (0, 0, 255, 0)), png(tmp_path / "la.tif", "LA", (28, 28), (64, 255)),
             png(tmp_path / "pal.bmp", "P", (50, 50), 3)]
    sixteen = tmp_path / "deep.png"
    Image.fromarray(np.full((30, 30), 65535, np.uint16)).save(sixteen)
    for f in files + [sixteen]:
        a = read_image(f)
        assert a.shape == (1, 28, 28) and a.dtype == np.float32 and 0 <= a.min() <= a.max() <= 1, f.name
    assert np.allclose(read_image(files[0]), 1.0)                              # white stays white after resizing
    assert np.allclose(read_image(sixteen), 1.0)                               # 16-bit scaled by 65535
    assert abs(float(read_image(files[1]).mean()) - 0.299) < 0.01             # Pillow's luma of pure red (JPEG)
    rgb = read_image(files[1], Preprocessing(channels=3, image_size=32))
    assert rgb.shape == (3, 32, 32) and rgb[0].mean() > 0.9 and rgb[2].mean() < 0.1
    assert read_image(files[2], Preprocessing(channels=None)).shape == (4, 28, 28)   # kept as RGBA


def test_preprocessing_is_validated():
    with pytest.raises(FolderError, match="image_size"):
        Preprocessing(image_size=16)
    with pytest.raises(FolderError, match="channels"):
        Preprocessing(channels=5)


def test_paper_a_layout_and_a_seeded_split(tmp_path):
    root = paper_a(tmp_path / "imgs")
    (root / "normal" / "notes.txt").write_text("not an image")
    d = load_folder(root, test_fraction=0.3, split_seed=1)
    assert d.protocol == "imbalanced" and d.classes == ["normal", "anomalous"]
    assert d.x_train.shape[1:] == (1, 28, 28) and len(d.x_train) == len(d.train_paths) == len(d.train_labels)
    everything = sorted(map(str, d.train_paths + d.test_paths))
    assert everything == sorted(str(p) for p in root.rglob("*.png"))          # disjoint, nothing lost
    assert set(d.test_labels) == {0, 1} and d.labelled
    assert [s.path.name for s in d.skipped] == ["notes.txt"]                   # listed, never silent
    again, other = load_folder(root, split_seed=1), load_folder(root, split_seed=2)
    assert again.test_paths == d.test_paths and other.test_paths != d.test_paths


def test_a_test_folder_gives_the_test_set(tmp_path):
    root = paper_a(tmp_path / "imgs")
    png(root / "test" / "normal" / "t0.png")
    png(root / "test" / "anomalous" / "sub" / "t1.png")
    d = load_folder(root)
    assert len(d.train_paths) == MIN_NORMAL + 2 + 3 and d.test_from == "test/"
    assert [p.name for p in d.test_paths] == ["t0.png", "t1.png"] and list(d.test_labels) == [0, 1]


def test_paper_b_layout(tmp_path):
    root = tmp_path / "imgs"
    for c in ("cat", "dog"):
        for i in range(MIN_NORMAL):
            png(root / "normal" / c / f"{i}.png", value=i)
    png(root / "anomalous" / "x.png")
    d = load_folder(root)
    assert d.protocol == "novelty" and d.classes == ["cat", "dog"]
    assert set(d.train_labels) == {0, 1}
    assert root / "anomalous" / "x.png" in d.test_paths                        # anomalies are test images only
    assert d.test_labels[d.test_paths.index(root / "anomalous" / "x.png")] == 1


def test_corrupt_empty_and_mixed_files_name_the_file(tmp_path):
    root = paper_a(tmp_path / "imgs")
    bad = root / "normal" / "zz_bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(FolderError) as e:
        load_folder(root)
    assert str(bad) in one_line(e) and "cannot read" in str(e.value)
    d = load_folder(root, skip_unreadable=True)                                 # asked: skipped, and listed
    assert bad in [s.path for s in d.skipped] and bad not in d.train_paths + d.test_paths
    bad.unlink()
    empty = root / "anomalous" / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(FolderError) as e:
        load_folder(root)
    assert str(empty) in one_line(e) and "empty" in str(e.value)
    empty.unlink()
    rgb = png(root / "normal" / "zz_rgb.png", "RGB", value=(1, 2, 3))
    load_folder(root)                                                            # converted to grayscale: fine
    with pytest.raises(FolderError) as e:
        load_folder(root, Preprocessing(channels=None), test_fraction=0.5)
    assert "channel" in one_line(e) and ("zz_rgb" in str(e.value) or str(rgb.parent) in str(e.value))


def test_layout_errors_say_what_to_provide(tmp_path):
    with pytest.raises(FolderError) as e:
        load_folder(tmp_path / "missing")
    assert "no such folder" in one_line(e)
    (tmp_path / "a" / "normal").mkdir(parents=True)
    with pytest.raises(FolderError) as e:
        load_folder(tmp_path / "a")
    assert "no images" in one_line(e)
    only = tmp_path / "b"
    for i in range(MIN_NORMAL):
        png(only / "normal" / f"{i}.png")
    with pytest.raises(FolderError) as e:
        load_folder(only, protocol="imbalanced")                                # paper A needs a few anomalies
    msg = one_line(e)
    assert "no abnormal images" in msg and str(only / "abnormal") in msg and "novelty" in msg
    few = paper_a(tmp_path / "c", n_normal=MIN_NORMAL - 1)
    with pytest.raises(FolderError) as e:
        load_folder(few)
    assert f"fewer than the {MIN_NORMAL}" in one_line(e)
    few_anom = paper_a(tmp_path / "d", n_anom=MIN_ANOMALOUS - 1)
    with pytest.raises(FolderError) as e:
        load_folder(few_anom)
    assert f"fewer than the {MIN_ANOMALOUS}" in one_line(e)


def test_example_folder_holds_the_cells_images(tmp_path):
    from capslib.data.datasets import load_dataset
    from capslib.data.splits import imbalanced_split

    root = write_example_folder(tmp_path / "digits", "digits", "imbalanced", normal_class=3, anomaly_fraction=0.1)
    data = load_dataset("digits")
    split = imbalanced_split(data.y_train, data.y_test, 3, 0.1, 0)
    d = load_folder(root)
    assert len(d.train_labels) == len(split.train_labels) and d.train_labels.sum() == split.train_labels.sum()
    assert len(d.test_labels) == len(split.test_labels) and d.test_labels.sum() == split.test_labels.sum()
    first = np.asarray(Image.open(sorted((root / "normal").iterdir())[0]), np.float32) / 255
    assert np.abs(first - data.x_train[split.train_idx[0], 0].numpy()).max() <= 0.5 / 255 + 1e-6   # 8-bit PNG


def test_export_keeps_a_users_empty_folders_and_links(tmp_path):
    """An export replaces an empty target or its own earlier export; a folder of the user's (an
    empty one too) or a link in the target is refused and kept, and what a link points to too."""
    elsewhere = tmp_path / "elsewhere"
    png(elsewhere / "mine.png")
    target = tmp_path / "target"
    (target / "keep").mkdir(parents=True)
    (target / "link").symlink_to(elsewhere)
    for how in ("an empty folder and a link", "a link"):
        with pytest.raises(FolderError) as e:
            write_example_folder(target, "digits", "imbalanced", 0, 0.1)
        assert "folder(s) or link(s) export-folder did not write" in one_line(e), how
        assert (target / "link").is_symlink() and (elsewhere / "mine.png").exists()
        if (target / "keep").exists():
            (target / "keep").rmdir()                          # then the link alone
    (target / "link").unlink()
    (tmp_path / "to-target").symlink_to(target)               # a link as the target: written where it points
    assert write_example_folder(tmp_path / "to-target", "digits", "imbalanced", 0, 0.1) == target.resolve()
    assert (tmp_path / "to-target").is_symlink() and (tmp_path / "to-target" / "normal").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "target", "to-target"]
    assert (elsewhere / "mine.png").exists()
