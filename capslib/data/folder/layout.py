"""A folder of images as the data of either paper's protocol (:mod:`.dirs` names its subfolders,
as anomalib does, and finds the protocol): the training and test images, their labels, which
folder each came from and how the split was made, and every file not read."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from capslib.data.folder.dirs import ABNORMAL_NAMES, FolderDirs, Layout, resolve_layout, shown, under
from capslib.data.folder.images import (FolderError, MIN_ANOMALOUS, MIN_NORMAL, PROTOCOLS, Preprocessing,
    SPLIT_SEED, Skipped, TEST_FRACTION, read_images)


@dataclass(frozen=True)
class Part:
    """One folder's share of the split: its images trained on and tested, and why."""
    folder: str                       # relative to the root where it lies inside
    kind: str                         # "normal", a normal class, or "abnormal"
    how: str                          # "drawn", "train" (the test set is given elsewhere) or "test" (test only)
    why: str                          # the same in words
    train: tuple[str, ...]            # its images trained on, relative to the root where inside
    test: tuple[str, ...]             # and tested

    @property
    def n_train(self) -> int:
        return len(self.train)

    @property
    def n_test(self) -> int:
        return len(self.test)


@dataclass
class FolderData:
    """A folder's images under one protocol, ready for :mod:`capslib.detect.detector`."""
    root: Path
    protocol: str                     # "imbalanced" (paper A) | "novelty" (paper B)
    classes: list[str]                # paper A: ["normal", "anomalous"]; paper B: the normal classes
    prep: Preprocessing               # with channels resolved (never None here)
    x_train: torch.Tensor             # (N, C, H, W) in [0, 1]
    train_labels: np.ndarray          # paper A: 1 = anomaly; paper B: the class index
    train_paths: list[Path]
    x_test: torch.Tensor
    test_labels: np.ndarray           # 1 = anomaly, 0 = normal
    test_paths: list[Path]
    test_from: str                    # "test/" or how the test set was drawn
    skipped: list[Skipped] = field(default_factory=list)
    asked: dict = field(default_factory=lambda: FolderDirs().to_dict())   # the names and protocol asked for
    dirs: dict = field(default_factory=dict)            # the folders read (Layout.to_dict)
    parts: list[Part] = field(default_factory=list)     # each folder's share of the split
    notes: list[str] = field(default_factory=list)      # what the user should know: masks not read, no AUROC

    @property
    def labelled(self) -> bool:
        """Whether the test set holds both normal and anomalous images (AUROC is defined)."""
        return 0 < int(self.test_labels.sum()) < len(self.test_labels)

    def summary(self) -> str:
        n_an = int(self.test_labels.sum())
        train = (f"{int((self.train_labels == 0).sum())} normal + {int(self.train_labels.sum())} anomalous"
                 if self.protocol == "imbalanced" else
                 ", ".join(f"{c}: {int((self.train_labels == i).sum())}" for i, c in enumerate(self.classes)))
        return (f"{self.root}: {PROTOCOLS[self.protocol]} (protocol {self.protocol}); train {train}; "
                f"test {len(self.test_labels) - n_an} normal + {n_an} anomalous ({self.test_from}); "
                f"{self.prep.channels} channel(s), {self.prep.image_size}x{self.prep.image_size}; "
                f"{len(self.skipped)} file(s) skipped")

    def split_lines(self) -> list[str]:
        """The split, one line per folder (how many images train, how many test, and why),
        then the notes."""
        lines = [f"  {p.folder}/ ({p.kind}): {p.n_train} train, {p.n_test} test; {p.why}" for p in self.parts]
        return lines + [f"  note: {n}" for n in self.notes]

    def split_record(self) -> dict:
        """The split as the model's metadata keeps it: the names asked, the folders read, and per
        folder its images trained on and tested (paths relative to the root), with the counts."""
        parts = [{**asdict(p), "train": list(p.train), "test": list(p.test), "n_train": p.n_train,
                  "n_test": p.n_test} for p in self.parts]
        return {"asked": dict(self.asked), "dirs": dict(self.dirs), "test_from": self.test_from,
                "n_train": len(self.train_paths), "n_test": len(self.test_paths), "parts": parts,
                "notes": list(self.notes)}


def _need(folder: Path, n: int, minimum: int, what: str) -> None:
    if n < minimum:
        raise FolderError(f"{folder}: {n} image(s), fewer than the {minimum} {what}")


def _draw_test(n: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of the ``round(fraction·n)`` test items (at least one, and one left to train on)."""
    k = min(max(1, int(round(fraction * n))), n - 1)
    mask = np.zeros(n, bool)
    mask[rng.permutation(n)[:k]] = True
    return mask


@dataclass(frozen=True)
class _Source:
    folder: Path
    kind: str
    train_label: int
    test_label: int
    how: str                          # as Part.how
    minimum: int                      # images needed
    recursive: bool


def _sources(lay: Layout) -> list[_Source]:
    """Every folder read, in the order of the seeded draws (normal folders, then abnormal)."""
    given = lay.test is not None or lay.normal_test is not None
    novelty = lay.protocol == "novelty"
    out = [_Source(f, lay.classes[i] if novelty else "normal", i if novelty else 0, 0, "train" if given else "drawn",
                   MIN_NORMAL, False) for i, f in enumerate(lay.normal_folders)]
    if lay.abnormal is not None:
        if novelty:                   # paper B trains on normal images only
            out.append(_Source(lay.abnormal, "abnormal", 1, 1, "test", 1, True))
        elif lay.test is not None:
            out.append(_Source(lay.abnormal, "abnormal", 1, 1, "train", 1, True))
        else:
            out.append(_Source(lay.abnormal, "abnormal", 1, 1, "drawn", MIN_ANOMALOUS, True))
    if lay.normal_test is not None:
        out.append(_Source(lay.normal_test, "normal", 0, 0, "test", 1, True))
    if lay.test is not None:
        out += [_Source(lay.test / d, "normal" if d == "normal" else "abnormal", 0, int(d != "normal"), "test", 0, True)
                for d in ("normal",) + ABNORMAL_NAMES if (lay.test / d).is_dir()]
    return out


def _test_from(lay: Layout, fraction: float, seed: int) -> str:
    if lay.test is not None:
        return "test/"
    if lay.normal_test is not None:
        drawn = f" and {fraction:g} of {shown(lay.abnormal, lay.root)}/ drawn with seed {seed}" \
            if lay.protocol == "imbalanced" else ""
        return f"{shown(lay.normal_test, lay.root)}/{drawn}"
    return f"{fraction:g} of each folder drawn with seed {seed}"


def _no_auroc(test_labels: np.ndarray) -> Optional[str]:
    n_abnormal = int(test_labels.sum())
    if n_abnormal == 0:
        return ("the test set holds no abnormal images: the fit gives scores only, no AUROC (an AUROC needs "
                "abnormal test images: abnormal/, or test/abnormal/)")
    if n_abnormal == len(test_labels):
        return "the test set holds no normal images: the fit gives scores only, no AUROC"
    return None


def load_folder(root: str | os.PathLike, prep: Preprocessing = Preprocessing(), test_fraction: float = TEST_FRACTION,
                split_seed: int = SPLIT_SEED, skip_unreadable: bool = False, *, normal_dir: str = "normal",
                abnormal_dir: Optional[str] = None, normal_test_dir: Optional[str] = None,
                mask_dir: Optional[str] = None, protocol: Optional[str] = None) -> FolderData:
    """Read a folder under the protocol its layout holds, or ``protocol`` (see :mod:`.dirs`).

    Without a given test set (``normal_test_dir``, or ``test/``) a ``test_fraction`` share of each
    training folder is drawn into the test set with ``split_seed``; with one, every image of the
    training folders trains, except paper A's abnormal images next to a ``normal_test_dir``
    (drawn: paper A trains on some). Paper B's abnormal images are test images only."""
    root = Path(root).expanduser()
    if not 0 < test_fraction < 1:
        raise FolderError(f"test_fraction {test_fraction}: must lie in (0, 1)")
    asked = FolderDirs(normal_dir, abnormal_dir, normal_test_dir, mask_dir, protocol)
    lay = resolve_layout(root, asked)
    tops = {p.relative_to(root).parts[:1] for p in lay.named() if under(p, root)}
    skipped = [Skipped(p, "not part of the layout (" + ", ".join(f"{shown(d, root)}/" for d in lay.named()) + ")")
               for p in sorted(root.iterdir()) if (p.name,) not in tops]
    if lay.test is not None:
        skipped += [Skipped(p, "not part of test/ (normal/, abnormal/)")
                    for p in sorted(lay.test.iterdir()) if p.name not in ("normal",) + ABNORMAL_NAMES]
    sources = _sources(lay)
    rng = np.random.default_rng(split_seed)
    train, test, origin = [], [], {}           # (path, label) pairs; path -> its source's index
    for i, s in enumerate(sources):
        paths, skip = lay.images_of(s.folder, s.recursive)
        skipped += skip
        _need(s.folder, len(paths), s.minimum, "needed" + (" to train and test" if s.how == "drawn" else ""))
        to_test = (_draw_test(len(paths), test_fraction, rng) if s.how == "drawn" else
                   np.full(len(paths), s.how == "test"))
        train += [(p, s.train_label) for p, m in zip(paths, to_test) if not m]
        test += [(p, s.test_label) for p, m in zip(paths, to_test) if m]
        origin.update((p, i) for p in paths)
    if not test:
        raise FolderError(f"{root}: no test images")
    x_tr, tr_paths, skip_tr = read_images([p for p, _ in train], prep, skip_unreadable)
    x_te, te_paths, skip_te = read_images([p for p, _ in test], prep, skip_unreadable)
    channels = int(x_tr.shape[1])
    if x_te.shape[1] != channels and len(x_te):
        raise FolderError(f"{te_paths[0]}: {x_te.shape[1]} channel(s) after conversion where {tr_paths[0]} has "
                          f"{channels}; set channels to 1 (grayscale) or 3 (RGB) to convert every file alike")
    label_of = dict(train + test)
    y_tr = np.array([label_of[p] for p in tr_paths], np.int64)
    y_te = np.array([label_of[p] for p in te_paths], np.int64)
    for s in sources:                   # unreadable files skipped: still one to train on?
        if s.how != "test":
            _need(s.folder, int((y_tr == s.train_label).sum()), 1, "readable ones left to train on")
    files = lambda paths, i: tuple(shown(p, root) for p in paths if origin[p] == i)
    why = {"drawn": f"{test_fraction:g} drawn into the test set with seed {split_seed}",
           "train": "all trained on (the test set is given)", "test": "test images only"}
    parts = [Part(shown(s.folder, root), s.kind, s.how, why[s.how], files(tr_paths, i), files(te_paths, i))
             for i, s in enumerate(sources)]
    notes = list(lay.notes) + [n for n in [_no_auroc(y_te)] if n]
    return FolderData(root, lay.protocol, list(lay.classes), Preprocessing(channels, prep.image_size), x_tr, y_tr,
                      tr_paths, x_te, y_te, te_paths, _test_from(lay, test_fraction, split_seed),
                      skipped + skip_tr + skip_te, asked.to_dict(), lay.to_dict(), parts, notes)
