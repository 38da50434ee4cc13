"""The subfolders of a folder of images, named as anomalib's ``Folder`` datamodule names them, and
the protocol they hold.

``normal_dir`` (default ``normal``): the normal images. ``abnormal_dir`` (default ``abnormal``,
or ``anomalous``, its older name here, where only that one is there): the abnormal images, if
any. ``normal_test_dir``: normal images for the test set only. ``mask_dir``: anomalib's pixel
masks of the abnormal images, accepted and never read (the CapsNet scores whole images). A name
is a path under the folder (``train/good``) or an absolute one. ``FOLDER/test/normal/`` and
``FOLDER/test/abnormal/`` (or ``anomalous/``), where present, are a given test set.

The protocol: ``normal/<class>/`` subfolders, two or more, are paper B's normal classes; images
directly in ``normal/`` with abnormal images are paper A (``imbalanced``), without any they are
paper B on one normal class (``novelty``, normal images only). ``protocol`` asks for one:
``novelty`` on ``normal/`` plus ``abnormal/`` trains on the normal images alone and keeps the
abnormal ones for the test, as anomalib does."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

from capslib.data.folder.images import FolderError, IMAGE_SUFFIXES, PROTOCOLS, Skipped, list_images

ABNORMAL_NAMES = ("abnormal", "anomalous")    # the default name, then the older name it replaces
TEST_DIR = "test"
MASKS_NOT_READ = "{mask}: masks not read: the CapsNet scores whole images, not pixels"


@dataclass(frozen=True)
class FolderDirs:
    """The subfolder names asked for (anomalib's ``Folder`` arguments) and the protocol (None:
    the one the layout holds)."""
    normal_dir: str = "normal"
    abnormal_dir: Optional[str] = None        # None: abnormal/, or anomalous/ where only that one is there
    normal_test_dir: Optional[str] = None
    mask_dir: Optional[str] = None
    protocol: Optional[str] = None

    def __post_init__(self):
        for name in ("normal_dir", "abnormal_dir", "normal_test_dir", "mask_dir"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, str) or not v.strip()):
                raise FolderError(f"{name} {v!r}: name a subfolder (a path under the folder, or an absolute one)")
        if self.protocol is not None and self.protocol not in PROTOCOLS:
            raise FolderError(f"protocol {self.protocol!r}: choose imbalanced (paper A), novelty (paper B) "
                              f"or None (the one the folder's layout holds)")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Layout:
    """A folder's layout, resolved: where each kind of image lies, and the protocol."""
    root: Path
    protocol: str
    classes: list[str]                # paper A: ["normal", "anomalous"]; paper B: the normal classes
    normal: Path
    normal_folders: tuple[Path, ...]  # one per normal class: normal/<class>/ each, or normal/ itself
    abnormal: Optional[Path]
    normal_test: Optional[Path]
    mask: Optional[Path]
    test: Optional[Path]              # FOLDER/test/ as a given test set
    notes: tuple[str, ...] = ()

    def named(self) -> list[Path]:
        return [p for p in (self.normal, self.abnormal, self.normal_test, self.mask, self.test) if p is not None]

    def images_of(self, folder: Path, recursive: bool) -> tuple[list[Path], list[Skipped]]:
        """The images of ``folder`` (as :func:`list_images`), less any under another named folder
        (masks inside abnormal/, a test folder inside normal/)."""
        others = [p for p in self.named() if p != folder and under(p, folder)]
        paths, skipped = list_images(folder, recursive)
        keep = lambda p: not any(under(p, o) for o in others)
        return [p for p in paths if keep(p)], [s for s in skipped if keep(s.path)]

    def relative(self, p: Optional[Path]) -> Optional[str]:
        return None if p is None else shown(p, self.root)

    def to_dict(self) -> dict:
        """The folders read, as the model's metadata keeps them."""
        return {"normal_dir": self.relative(self.normal), "abnormal_dir": self.relative(self.abnormal),
                "normal_test_dir": self.relative(self.normal_test), "test_dir": self.relative(self.test),
                "mask_dir": self.relative(self.mask), "mask_read": False}


def under(p: Path, folder: Path) -> bool:
    return p == folder or folder in p.parents


def shown(p: Path, root: Path) -> str:
    """``p`` relative to ``root`` where it lies inside, else absolute."""
    try:
        return str(p.relative_to(root))
    except ValueError:
        return str(p)


def _folder(root: Path, name: str, what: str) -> Path:
    p = root / name
    if not p.is_dir():
        raise FolderError(f"{p}: no such folder ({what})" if not p.exists() else f"{p}: a file, not a folder ({what})")
    return p


def _has_images(folder: Path) -> bool:
    return any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in folder.rglob("*"))


def _abnormal(root: Path, asked: Optional[str]) -> Optional[Path]:
    if asked is not None:
        return _folder(root, asked, "abnormal_dir, --abnormal-dir: the abnormal images")
    there = [root / n for n in ABNORMAL_NAMES if (root / n).is_dir()]
    if len(there) > 1:
        raise FolderError(f"{root}: both abnormal/ and anomalous/ (its older name); keep one, or name the one "
                          f"to read (abnormal_dir, --abnormal-dir)")
    return there[0] if there else None


def _given_test(root: Path, named: Sequence[Path]) -> Optional[Path]:
    """FOLDER/test/ as a given test set, unless a named folder lies inside it (anomalib's
    ``normal_test_dir="test/good"`` and the like)."""
    test = root / TEST_DIR
    if not test.is_dir() or any(under(p, test) for p in named):
        return None
    if not (test / "normal").is_dir() and not any((test / n).is_dir() for n in ABNORMAL_NAMES):
        raise FolderError(f"{test}: holds neither normal/ nor abnormal/ (a given test set holds one or both)")
    if all((test / n).is_dir() for n in ABNORMAL_NAMES):
        raise FolderError(f"{test}: both abnormal/ and anomalous/ (its older name); keep one")
    return test


def resolve_layout(root: Path, dirs: FolderDirs = FolderDirs()) -> Layout:
    """The layout of ``root`` under the names ``dirs`` asks for; FolderError, one line, for a
    missing or empty folder and for a layout neither paper reads."""
    if not root.is_dir():
        raise FolderError(f"{root}: no such folder")
    normal = _folder(root, dirs.normal_dir, "normal_dir, --normal-dir: the normal images, in it or in "
                     "one subfolder per normal class")
    abnormal = _abnormal(root, dirs.abnormal_dir)
    normal_test = None if dirs.normal_test_dir is None else _folder(
        root, dirs.normal_test_dir, "normal_test_dir, --normal-test-dir: normal images to test on")
    mask = None if dirs.mask_dir is None else _folder(root, dirs.mask_dir, "mask_dir, --mask-dir")
    named = [p for p in (normal, abnormal, normal_test, mask) if p is not None]
    if len(set(named)) < len(named):
        raise FolderError(f"{root}: one folder named twice among normal_dir, abnormal_dir, normal_test_dir and "
                          f"mask_dir ({', '.join(shown(p, root) for p in named)}); name a folder per role")
    for p in (abnormal, normal_test):
        if p is not None and not _has_images(p):
            raise FolderError(f"{p}: no images (PNG, JPEG, BMP or TIFF)")
    other = [p for p in (abnormal, normal_test, mask) if p is not None]
    files = [p for p in normal.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    subdirs = sorted(p.name for p in normal.iterdir() if p.is_dir() and p not in other and list_images(p)[0])
    if files and subdirs:
        raise FolderError(f"{normal}: holds both images and class subfolders ({', '.join(subdirs)}); use one: "
                          f"images (one normal class) or subfolders (paper B's normal classes)")
    if len(subdirs) == 1:
        raise FolderError(f"{normal}: one class subfolder ({subdirs[0]}); put one class's images directly in "
                          f"{normal}/, or two classes or more in subfolders")
    if not files and not subdirs:
        raise FolderError(f"{normal}: no images (PNG, JPEG, BMP or TIFF)")
    protocol = dirs.protocol or ("imbalanced" if files and abnormal is not None else "novelty")
    if protocol == "imbalanced" and subdirs:
        raise FolderError(f"{normal}: class subfolders are paper B's normal classes; paper A (imbalanced) takes "
                          f"the normal images directly in {normal}/")
    if protocol == "imbalanced" and abnormal is None:
        raise FolderError(f"{root}: no abnormal images, and paper A (imbalanced) trains on a few: put them in "
                          f"{root / ABNORMAL_NAMES[0]}/, or fit paper B (novelty) on the normal images alone")
    classes = ["normal", "anomalous"] if protocol == "imbalanced" else subdirs or [normal.name]
    test = _given_test(root, [normal] + other)
    if test is not None and normal_test is not None:
        raise FolderError(f"{root}: both test/ and normal_test_dir ({normal_test}); name one test set")
    if test is not None and protocol == "novelty" and abnormal is not None:
        raise FolderError(f"{root}: both {abnormal.name}/ and test/; for paper B the abnormal images are test images "
                          f"only: move them into {test}/abnormal/")
    notes = (MASKS_NOT_READ.format(mask=mask),) if mask is not None else ()
    folders = tuple(normal / c for c in subdirs) or (normal,)
    return Layout(root, protocol, classes, normal, folders, abnormal, normal_test, mask, test, notes)
