"""Data readers and the protocols' splits."""
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from capslib.core.errors import DataError

from capslib.data.datasets import load_dataset, read_idx, read_norb_mat, norb_crop, DATASETS
from capslib.data.splits import imbalanced_split, novelty_split


def write_idx(path: Path, arr: np.ndarray, truncate: int = 0):
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(">" + "i" * arr.ndim, *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if truncate:
        data = data[:-truncate]
    with gzip.open(path, "wb") as f:
        f.write(data)


def fake_images(n: int, rng) -> np.ndarray:
    """(n, 28, 28) images, black but for the first 64 (random): MNIST's shape, quick to write."""
    x = np.zeros((n, 28, 28), np.uint8)
    x[:64] = rng.integers(0, 256, (min(n, 64), 28, 28))
    return x


def make_fake_mnist(root: Path, folder="MNIST", n_train=60000, n_test=10000, truncate=0):
    """A MNIST-family dataset in torchvision's raw layout, with MNIST's shapes."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    write_idx(raw / "train-images-idx3-ubyte.gz", fake_images(n_train, rng), truncate)
    write_idx(raw / "train-labels-idx1-ubyte.gz", np.arange(n_train) % 10)
    write_idx(raw / "t10k-images-idx3-ubyte.gz", fake_images(n_test, rng))
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", np.arange(n_test) % 10)
    return root


def test_read_idx_roundtrip(tmp_path):
    arr = np.arange(2 * 3 * 4).reshape(2, 3, 4) % 256
    write_idx(tmp_path / "a.gz", arr)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), arr)


def test_mnist_family_loader(tmp_path):
    from capslib.data.datasets import _idx_dataset
    make_fake_mnist(tmp_path, "KMNIST")
    d = _idx_dataset("kmnist", "KMNIST")(tmp_path)
    assert d.x_train.shape == (60000, 1, 28, 28) and d.x_train.dtype == torch.float32
    assert 0 <= d.x_train.min() and d.x_train.max() <= 1
    assert d.y_test.tolist()[:3] == [0, 1, 2]


def test_truncated_idx_is_a_clear_error(tmp_path):
    from capslib.data.datasets import _idx_dataset
    make_fake_mnist(tmp_path, truncate=100)
    with pytest.raises(DataError, match="truncated or corrupt"):
        _idx_dataset("mnist", "MNIST")(tmp_path)


def test_corrupt_idx_is_a_clear_error(tmp_path):
    p = tmp_path / "bad.gz"
    p.write_bytes(b"this is not gzip at all")
    with pytest.raises(DataError, match="cannot read IDX"):
        read_idx(p)
    q = tmp_path / "bad2"
    q.write_bytes(b"\x12\x34\x08\x01")
    with pytest.raises(DataError, match="bad magic"):
        read_idx(q)


def test_missing_dataset_names_where_files_go(tmp_path):
    with pytest.raises(DataError) as e:
        DATASETS["fashion"](tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in msg and "python -m capslib download fashion" in msg


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset 'cifar'"):
        load_dataset("cifar")


def write_norb(path: Path, arr: np.ndarray, magic=0x1E3D4C55):
    dims = list(arr.shape) + [1] * max(0, 3 - arr.ndim)
    header = struct.pack("<ii", magic, arr.ndim) + struct.pack("<" + "i" * len(dims), *dims)
    path.write_bytes(header + arr.astype(np.uint8 if magic == 0x1E3D4C55 else "<i4").tobytes())


def test_smallnorb_reader(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (3, 2, 96, 96))
    write_norb(tmp_path / "dat.mat", imgs)
    assert np.array_equal(read_norb_mat(tmp_path / "dat.mat"), imgs)
    cats = np.array([0, 4, 2])
    write_norb(tmp_path / "cat.mat", cats, magic=0x1E3D4C54)     # 1-D: header pads dims to 3
    assert np.array_equal(read_norb_mat(tmp_path / "cat.mat"), cats)
    (tmp_path / "short.mat").write_bytes((tmp_path / "dat.mat").read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated"):
        read_norb_mat(tmp_path / "short.mat")


def test_smallnorb_loader_and_crop(tmp_path):
    from capslib.data.datasets import NORB_FILES, load_smallnorb
    folder = tmp_path / "smallNORB"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        write_norb(folder / NORB_FILES[f"{split}_x"], rng.integers(0, 256, (4, 2, 96, 96)))
        write_norb(folder / NORB_FILES[f"{split}_y"], np.array([0, 1, 2, 4]), magic=0x1E3D4C54)
    d = load_smallnorb(tmp_path)
    assert d.x_train.shape == (4, 2, 48, 48) and d.n_classes == 5
    assert norb_crop(d.x_test).shape == (4, 2, 32, 32)
    g = torch.Generator().manual_seed(0)
    assert norb_crop(d.x_train, 32, g).shape == (4, 2, 32, 32)


def test_digits_embedded():
    d = load_dataset("digits")
    assert d.x_train.shape[1:] == (1, 28, 28)
    assert len(d.x_train) + len(d.x_test) == 1797
    assert 0 <= d.x_train.min() and d.x_train.max() <= 1
    # stratified: every class in both splits, in about the same proportion
    tr = np.bincount(d.y_train.numpy(), minlength=10) / len(d.y_train)
    te = np.bincount(d.y_test.numpy(), minlength=10) / len(d.y_test)
    assert np.abs(tr - te).max() < 0.01


# ---- splits on a fake MNIST-shaped label set ----------------------------------------------

@pytest.fixture(scope="module")
def mnist_like_labels():
    rng = np.random.default_rng(0)
    # MNIST's class counts
    train_counts = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    test_counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    y_tr = rng.permutation(np.repeat(np.arange(10), train_counts))
    y_te = rng.permutation(np.repeat(np.arange(10), test_counts))
    return y_tr, y_te, test_counts


@pytest.mark.parametrize("fraction", [0.1, 0.01])
def test_imbalanced_split_sizes(mnist_like_labels, fraction):
    y_tr, y_te, test_counts = mnist_like_labels
    for c in (0, 1):
        s = imbalanced_split(y_tr, y_te, c, fraction, seed=0)
        n_normal = int((y_tr == c).sum())
        n_anom = round(fraction / (1 - fraction) * n_normal)
        assert (s.train_labels == 0).sum() == n_normal and (s.train_labels == 1).sum() == n_anom
        assert (y_tr[s.train_idx[s.train_labels == 0]] == c).all()
        assert (y_tr[s.train_idx[s.train_labels == 1]] != c).all()
        assert abs((s.train_labels == 1).mean() - fraction) < 1e-3
        n_test_normal = min(test_counts[c], 1024)
        assert (s.test_labels == 0).sum() == n_test_normal and (s.test_labels == 1).sum() == 1024
        assert (y_te[s.test_idx[s.test_labels == 1]] != c).all()
        assert len(np.unique(s.test_idx)) == len(s.test_idx)


def test_imbalanced_always_normal_matches_paper_floor(mnist_like_labels):
    """STUDY.md §2: an always-'normal' detector scores the paper's 'Standard 1%' 48.90 for class 0."""
    y_tr, y_te, _ = mnist_like_labels
    s = imbalanced_split(y_tr, y_te, 0, 0.01, seed=0)
    assert round(100 * (s.test_labels == 0).mean(), 2) == 48.90
    s2 = imbalanced_split(y_tr, y_te, 2, 0.01, seed=0)
    assert round(100 * (s2.test_labels == 0).mean(), 2) == 50.00


def test_imbalanced_seeds(mnist_like_labels):
    y_tr, y_te, _ = mnist_like_labels
    a, b, c = (imbalanced_split(y_tr, y_te, 3, 0.1, seed=s) for s in (0, 0, 1))
    assert np.array_equal(a.train_idx, b.train_idx)
    assert not np.array_equal(a.train_idx, c.train_idx)       # the run seed draws other anomalies
    assert np.array_equal(a.test_idx, c.test_idx)             # the test set is fixed


def test_novelty_split(mnist_like_labels):
    y_tr, y_te, test_counts = mnist_like_labels
    s = novelty_split(y_tr, y_te, (2,))
    assert (y_tr[s.train_idx] != 2).all() and len(s.train_idx) == (y_tr != 2).sum()
    assert sorted(np.unique(s.train_labels)) == list(range(9))
    assert (s.train_labels == 2).sum() == (y_tr == 3).sum()       # class 3 becomes label 2
    assert (s.test_labels == 1).sum() == test_counts[2] == (s.test_labels == 0).sum()
    assert (y_te[s.test_idx[s.test_labels == 0]] != 2).all()
    s3 = novelty_split(y_tr, y_te, (0, 3, 5))
    assert (s3.test_labels == 1).sum() == test_counts[0] + test_counts[3] + test_counts[5]
    assert s3.train_labels.max() == 6
