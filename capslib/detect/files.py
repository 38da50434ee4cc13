"""The images a user asks to score (files and folders) and the CSV the scores are written to."""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence

from capslib.data.folder import IMAGE_SUFFIXES, FolderError, Skipped, list_images


def collect_images(items: Sequence[str | os.PathLike]) -> tuple[list[Path], list[Skipped]]:
    """Image files named on the command line, folders searched recursively; other files listed."""
    files, skipped = [], []
    for item in map(Path, items):
        if item.is_dir():
            found, skip = list_images(item, recursive=True)
            files += found
            skipped += skip
        elif not item.exists():
            raise FolderError(f"{item}: no such file or folder")
        elif item.suffix.lower() in IMAGE_SUFFIXES:
            files.append(item)
        else:
            skipped.append(Skipped(item, f"not an image file (suffix {item.suffix or 'none'!r})"))
    return files, skipped


def write_csv(rows: list[dict], out) -> None:
    """Rows as CSV, the columns in the rows' order (to a path, or a text stream)."""
    if not rows:
        return
    stream = open(out, "w", newline="") if isinstance(out, (str, os.PathLike)) else out
    try:
        w = csv.DictWriter(stream, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    finally:
        if stream is not out:
            stream.close()


def check_output(path, what: str, folder: bool = False) -> Path:
    """An output path a command will write, checked before any work: a file's folder must exist
    and the path must not be a folder; a folder (``folder``) must not be an existing file."""
    p = Path(path)
    if folder:
        if p.exists() and not p.is_dir():
            raise FolderError(f"{what} {p}: a file is there, not a folder; name a new or existing folder")
        return p
    if p.is_dir():
        raise FolderError(f"{what} {p}: a folder is there; name a file")
    if not p.parent.is_dir():
        raise FolderError(f"{what} {p}: no folder {p.parent}; create it first")
    return p
