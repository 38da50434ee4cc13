"""The two protocols' train/test splits, with fixed seeds (STUDY.md §2, §3).

All functions take label vectors and return index arrays into the dataset, so the
images themselves never get copied until a protocol gathers them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from capslib.core.errors import ConfigError

TEST_SEED = 20190101          # the fixed seed of every test set (independent of the run seed)
MAX_TEST_NORMAL = 1024
N_TEST_ANOMALOUS = 1024


@dataclass
class Split:
    train_idx: np.ndarray     # indices into the training images
    train_labels: np.ndarray  # protocol-specific training targets (see each function)
    test_idx: np.ndarray      # indices into the test images
    test_labels: np.ndarray   # 1 = anomaly, 0 = normal


def _as_np(y) -> np.ndarray:
    return np.asarray(y.cpu().numpy() if hasattr(y, "cpu") else y)


def n_anomalies(n_normal: int, fraction: float) -> int:
    """Paper A's number of training anomalies beside ``n_normal`` normal images."""
    return int(round(fraction / (1.0 - fraction) * n_normal))


def check_imbalanced(y_train, dataset: str, normal_class: int, fraction: float) -> None:
    """One line, before any training, when ``fraction`` rounds to no training anomaly."""
    n_normal = int((_as_np(y_train) == normal_class).sum())
    if n_anomalies(n_normal, fraction) < 1:
        least = 0.5 / (n_normal + 0.5)
        e = math.floor(math.log10(least))
        least = math.ceil(least / 10 ** e) * 10 ** e
        raise ConfigError(f"anomaly fraction {fraction:g} gives no training anomaly beside the {n_normal} images "
                          f"of {dataset} class {normal_class}: use a fraction of at least {least:.1g}")


def imbalanced_split(y_train, y_test, normal_class: int, fraction: float, seed: int,
                     max_test_normal: int = MAX_TEST_NORMAL, n_test_anomalous: int = N_TEST_ANOMALOUS) -> Split:
    """Paper A: every training image of ``normal_class`` plus n_anom = round(f/(1−f)·n_normal)
    images drawn (with ``seed``) from the other classes; test = at most 1024 normal test
    images plus 1024 anomalous ones (fixed seed). Training labels: 0 normal, 1 anomaly."""
    y_train, y_test = _as_np(y_train), _as_np(y_test)
    rng = np.random.default_rng(seed)
    normal = np.flatnonzero(y_train == normal_class)
    others = np.flatnonzero(y_train != normal_class)
    n_anom = n_anomalies(len(normal), fraction)
    anomalous = np.sort(rng.choice(others, size=min(n_anom, len(others)), replace=False))
    train_idx = np.concatenate([normal, anomalous])
    train_labels = np.concatenate([np.zeros(len(normal), np.int64), np.ones(len(anomalous), np.int64)])

    test_rng = np.random.default_rng(TEST_SEED + normal_class)
    t_normal = np.flatnonzero(y_test == normal_class)
    t_other = np.flatnonzero(y_test != normal_class)
    if len(t_normal) > max_test_normal:
        t_normal = np.sort(test_rng.choice(t_normal, size=max_test_normal, replace=False))
    t_anom = np.sort(test_rng.choice(t_other, size=min(n_test_anomalous, len(t_other)), replace=False))
    test_idx = np.concatenate([t_normal, t_anom])
    test_labels = np.concatenate([np.zeros(len(t_normal), np.int64), np.ones(len(t_anom), np.int64)])
    return Split(train_idx, train_labels, test_idx, test_labels)


def novelty_split(y_train, y_test, held_out: tuple[int, ...], n_classes: int = 10) -> Split:
    """Paper B: train on every image of the normal classes, relabelled 0..K−1 in class
    order; test = every test image of the held-out class(es) plus as many normal test
    images drawn at random (fixed seed). Training labels: the relabelled class."""
    y_train, y_test = _as_np(y_train), _as_np(y_test)
    held = np.asarray(sorted(held_out))
    normal_classes = np.setdiff1d(np.arange(n_classes), held)
    relabel = np.full(n_classes, -1, np.int64)
    relabel[normal_classes] = np.arange(len(normal_classes))
    train_idx = np.flatnonzero(~np.isin(y_train, held))
    train_labels = relabel[y_train[train_idx]]

    test_rng = np.random.default_rng(TEST_SEED + int(sum(2 ** int(h) for h in held)))
    t_anom = np.flatnonzero(np.isin(y_test, held))
    t_normal_all = np.flatnonzero(~np.isin(y_test, held))
    t_normal = np.sort(test_rng.choice(t_normal_all, size=min(len(t_anom), len(t_normal_all)), replace=False))
    test_idx = np.concatenate([t_normal, t_anom])
    test_labels = np.concatenate([np.zeros(len(t_normal), np.int64), np.ones(len(t_anom), np.int64)])
    return Split(train_idx, train_labels, test_idx, test_labels)
