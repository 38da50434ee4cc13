"""Where the results stores are when no folder is named: one stated place, whatever the working folder.

:func:`results_root`: the folder given; else ``$CAPSLIB_RESULTS``; else, when capslib is imported
from its checkout (``pip install -e .``, or the source tree on the path), that checkout's
``results/``, where the committed stores are; else a folder of the user's,
``$XDG_DATA_HOME/capslib/results`` (``~/.local/share/capslib/results``): a data folder, not a
cache, since its cells took hours to train. The place a default resolves to is logged once per
process.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Optional

RESULTS_ENV = "CAPSLIB_RESULTS"
CHECKOUT = Path(__file__).resolve().parents[3]    # capslib/run/store/root.py -> the folder above capslib/

log = logging.getLogger(__name__)
_SAID: set[Path] = set()


def checkout() -> Optional[Path]:
    """The capslib checkout this package is imported from, or None (an installed wheel)."""
    try:
        text = (CHECKOUT / "pyproject.toml").read_text()
    except OSError:
        return None
    return CHECKOUT if re.search(r'^name\s*=\s*"capslib"\s*$', text, re.M) else None


def user_results() -> Path:
    data_home = os.environ.get("XDG_DATA_HOME") or "~/.local/share"
    return Path(data_home).expanduser() / "capslib" / "results"


def results_root(root: Optional[str | os.PathLike] = None) -> Path:
    """The results root: ``root`` if given, else the default described in this module's docstring."""
    if root is not None:
        return Path(root)
    if os.environ.get(RESULTS_ENV):
        where, why = Path(os.environ[RESULTS_ENV]).expanduser(), f"${RESULTS_ENV}"
    elif checkout() is not None:
        where, why = checkout() / "results", "this checkout's results/"
    else:
        where, why = user_results(), f"capslib runs from no checkout; set ${RESULTS_ENV} or pass --results-root"
    if where not in _SAID:
        _SAID.add(where)
        log.info("results root: %s (%s)", where, why)
    return where
