"""What the command line shows of the library's logging.

capslib's modules log through ``logging.getLogger(__name__)`` (a cell that failed, a damaged cell
moved to quarantine, cells left for the next run, the results root in use). The command line
shows those records on stderr as plain lines: INFO and up by default, DEBUG and up with
``--verbose``, WARNING and up with ``--quiet``. Its own output (tables, the summary lines) is
printed, and tqdm's progress bars are left as they are. From Python or a notebook nothing is
configured here: warnings reach stderr through :mod:`logging`'s last resort, and
``logging.getLogger("capslib").setLevel(logging.INFO)`` with a handler shows the rest.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence


class StderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is when a record comes (pytest and notebooks replace it)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def add_flags(parser: argparse.ArgumentParser, in_subcommand: bool = False) -> None:
    """``-v/--verbose`` and ``-q/--quiet``. On a subcommand they default to nothing, so a flag
    given before the command (``capslib -q run``) is not undone by the subcommand's default."""
    default = argparse.SUPPRESS if in_subcommand else False
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_true", default=default,
                       help="show the library's debug messages too")
    group.add_argument("-q", "--quiet", action="store_true", default=default,
                       help="show only the library's warnings and errors (progress bars and summaries stay)")


def level_of(verbose: bool = False, quiet: bool = False) -> int:
    return logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO


def configure(verbose: bool = False, quiet: bool = False) -> None:
    """The ``capslib`` logger at the flags' level, with one handler that writes plain lines to stderr."""
    logger = logging.getLogger("capslib")
    logger.setLevel(level_of(verbose, quiet))
    if not any(isinstance(h, StderrHandler) for h in logger.handlers):
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)


def split_leading_flags(argv: Sequence[str]) -> tuple[Optional[str], list[str]]:
    """``-v``/``--verbose`` or ``-q``/``--quiet`` before a tool's name: (which one, the rest)."""
    argv = list(argv)
    flag = None
    while argv and argv[0] in ("-v", "--verbose", "-q", "--quiet"):
        flag = "verbose" if argv.pop(0) in ("-v", "--verbose") else "quiet"
    return flag, argv
