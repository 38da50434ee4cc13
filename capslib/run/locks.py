"""OS file locks for the results store, from the ``filelock`` package (``flock`` on POSIX: the
kernel drops a lock when its process dies, so a killed run leaves no stale claim).

Three uses: a *claim* on a cell while one process trains it (so two runs on one store split
the grid), a lock held by the process that owns a staging folder (so a clean-up removes only
folders whose owner is gone), and a lock serialising the rebuild of ``cells.csv``.

A lock belongs to an open file, not to a process: two :class:`filelock.FileLock` objects on one
path conflict, even in one process. :func:`held` takes the process's one lock object per path
(``is_singleton``, shared by its threads), so it is re-entrant: code that already holds a cell's
claim (the runner) can call code that wants it (``write_cell``). :func:`try_lock` takes a new
object, as another run would. A staging folder is locked through a descriptor of the folder
itself (``filelock.lock_descriptor``), so the lock goes with the folder when it is removed.
The lock files stay after release (removing them would race with a new locker).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from filelock import FileLock, Timeout, lock_descriptor

POLL_S = 0.01   # how often a blocking wait tries again


def _lock(path: Path, singleton: bool) -> FileLock:
    return FileLock(path, thread_local=False, is_singleton=singleton, poll_interval=POLL_S)


def try_lock(path: Path) -> Optional[FileLock]:
    """A new lock on ``path`` (created if missing), held, as another run would hold it; None
    when someone holds it. Release it with ``.release()``."""
    lock = _lock(Path(path), singleton=False)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        return None
    return lock


@contextmanager
def held(path: Path, blocking: bool = False) -> Iterator[bool]:
    """Hold the lock on ``path`` for the block; yields False (holding nothing) when another
    holder has it and ``blocking`` is False. Re-entrant within this process."""
    lock = _lock(Path(path).resolve(), singleton=True)
    try:
        lock.acquire(blocking=blocking)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


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
        lock_descriptor(fd, blocking=True, poll_interval=POLL_S)   # waits only while a clean-up deletes it
        try:
            alive = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            alive = False
        if alive:
            return path, fd
        os.close(fd)
    raise OSError(f"could not create a staging folder {parent / name}")


def try_lock_folder(path: Path) -> Optional[int]:
    """A lock on an existing folder (an fd; closing it releases the lock), or None when its
    owner holds it or it is gone."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not lock_descriptor(fd, blocking=False):
        os.close(fd)
        return None
    return fd
