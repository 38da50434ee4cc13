"""OS file locks for the results store (``flock``; the kernel drops a lock when its process
dies, so a killed run leaves no stale claim).

Three uses: a *claim* on a cell while one process trains it (so two runs on one store split
the grid), a lock held by the process that owns a staging folder (so a clean-up removes only
folders whose owner is gone), and a lock serialising the rebuild of ``cells.csv``.

``flock`` locks belong to an open file, not to a process: two opens of one path in the same
process conflict. :data:`_HELD` remembers the paths this process holds, so that code which
already holds a cell's claim (the runner) can call code that wants it (``write_cell``).
POSIX only (Linux, macOS), on a local filesystem.
"""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

_HELD: dict[str, int] = {}   # lock path -> the fd that holds it, in this process


def try_lock(path: Path, blocking: bool = False) -> Optional[int]:
    """Open (creating) ``path`` and lock it; the fd, or None when another open file holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextmanager
def held(path: Path, blocking: bool = False) -> Iterator[bool]:
    """Hold the lock on ``path`` for the block; yields False (holding nothing) when another
    process has it and ``blocking`` is False. Re-entrant within this process."""
    key = str(Path(path).resolve())
    if key in _HELD:
        yield True
        return
    fd = try_lock(Path(key), blocking)
    if fd is None:
        yield False
        return
    _HELD[key] = fd
    try:
        yield True
    finally:
        del _HELD[key]
        os.close(fd)   # releases the lock; the file stays (removing it would race with a new locker)


def locked_folder(parent: Path, name: str) -> tuple[Path, int]:
    """A new folder ``parent/name`` and an fd holding a lock on it. A clean-up deletes a
    folder only while holding its lock, so the one created here is safe once this returns:
    if a clean-up removed it between mkdir and lock, a new one is made."""
    for attempt in range(100):
        path = parent / (name if attempt == 0 else f"{name}.{attempt}")
        try:
            path.mkdir()
            fd = os.open(path, os.O_RDONLY)
        except (FileExistsError, FileNotFoundError):
            continue
        fcntl.flock(fd, fcntl.LOCK_EX)   # blocks only while a clean-up is deleting it
        try:
            alive = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            alive = False
        if alive:
            return path, fd
        os.close(fd)
    raise OSError(f"could not create a staging folder {parent / name}")


def try_lock_folder(path: Path) -> Optional[int]:
    """A lock on an existing folder, or None when its owner holds it or it is gone."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
