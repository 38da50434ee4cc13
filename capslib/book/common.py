"""What every step of the book build shares: its error, its log line, and where the book is."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

# the checkout that holds this package: capslib/book/common.py -> parents[2]
CHECKOUT = Path(__file__).resolve().parents[2]
PROFILE_TITLES = {"quick": "quick profile", "paper": "paper profile"}


class BookError(RuntimeError):
    """The book could not be built; the message says which step and what to do."""


def log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------- locating things
def find_root(root: Optional[str | os.PathLike] = None) -> Path:
    """The book's root: the argument, else the working directory if it holds ``_config.yml``,
    else the checkout that holds this package."""
    if root is not None:
        r = Path(root).resolve()
    elif (Path.cwd() / "_config.yml").exists():
        r = Path.cwd().resolve()
    else:
        r = CHECKOUT
    if not (r / "_config.yml").exists() or not (r / "_toc.yml").exists():
        raise BookError(f"{r} holds no _config.yml and _toc.yml; run from the repository's top folder")
    return r


