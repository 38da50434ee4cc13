"""Build the Jupyter Book: ``python -m capslib book``.

1. Execute every ``notebooks/*.ipynb`` with papermill (:mod:`capslib.book.execute`) into
   ``book/<profile>/<stem>.ipynb``, with the parameters ``profile``, ``results_root``
   (``data_root`` when given) and the overrides of ``notebooks/params.yml``
   (``{profile: {notebook_stem: {param: value}}}``). A notebook that raises stops the build:
   errors are never allowed into the book.
2. Write the results overview (:mod:`capslib.book.overview`).
3. Vendor the JavaScript the static pages need (:mod:`capslib.book.vendor`), so they load
   nothing from the internet, into ``_vendor/`` (git-ignored; served under ``_static/``).
4. Build the book with Jupyter Book 1 (``_config.yml``, ``_toc.yml``) into ``_build/html``,
   warnings as errors.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from capslib.book.common import BookError, find_root, log
from capslib.book.execute import execute
from capslib.book.overview import chapters_results, write_overview
from capslib.book.vendor import vendor_js


def book_command(profile: str, results: Optional[Path] = None, root: Optional[Path] = None) -> str:
    """The command that executes a profile's chapters from ``results`` and builds the book."""
    import shlex
    cmd = f"python -m capslib book --profile {profile}"
    if results is not None:
        rel = os.path.relpath(results, root) if root is not None and Path(results).is_relative_to(root) else str(results)
        if rel != "results":
            cmd += f" --results-root {shlex.quote(rel)}"
    return cmd


def check_chapters(root: Path, profile: str, results: Optional[Path] = None) -> None:
    have = sorted((root / "book" / profile).glob("*.ipynb"))
    if not have:
        committed = " (they are generated, not committed)" if profile == "quick" else ""
        raise BookError(f"--skip-execute: no executed chapters in book/{profile}/{committed}; run "
                        f"`{book_command(profile, results, root)}`, which executes them from the store and "
                        "builds the book")
    sources = {p.stem for p in (root / "notebooks").glob("*.ipynb")}
    stale = [p.name for p in have if p.stem not in sources]
    if stale:
        log(f"note: book/{profile}/ holds chapters with no source notebook: {', '.join(stale)}")


def build_html(root: Path) -> Path:
    """``jupyter-book build`` into ``_build/html``, warnings as errors; returns index.html."""
    cmd = [sys.executable, "-c", "import sys; from jupyter_book.cli.main import main; sys.exit(main())",
           "build", str(root), "--builder", "html", "-W", "--keep-going"]
    t0 = time.perf_counter()
    log("building the book (jupyter-book build, warnings as errors)")
    r = subprocess.run(cmd, cwd=root)
    index = root / "_build" / "html" / "index.html"
    if r.returncode != 0:
        raise BookError(f"jupyter-book build failed (exit {r.returncode}); its messages are above")
    if not index.exists():
        raise BookError(f"jupyter-book build ran but wrote no {index}")
    log(f"book built in {time.perf_counter() - t0:.1f} s")
    return index


def run_command(profile: str, results: Path) -> str:
    """The command that trains a profile's missing cells into ``results`` (it runs as printed)."""
    import shlex
    return f"python -m capslib run --profile {profile} --results-root {shlex.quote(str(results))}"


def check_store(profile: str, results: Path, data_root: Optional[str], train: bool) -> None:
    """Before executing: the profile exists, its store is readable, and its missing cells are
    trained now with a progress bar (``train``) or reported, never trained silently."""
    from capslib.run.runner import run_grid
    from capslib.study.profiles import profile_grid
    from capslib.run.store.results import ResultsStore

    cells = profile_grid(profile).cells()   # an unknown profile: ConfigError, one line
    store = ResultsStore(results, profile)
    damaged = store.damaged()
    if damaged:
        raise BookError(f"{len(damaged)} damaged cell(s) in {store.dir}; the first: {next(iter(damaged.values()))}")
    missing = [c for c in cells if not store.is_done(c)]
    if missing and train:
        log(f"training the {len(missing)} missing cells of profile {profile!r} into {store.dir}")
        rep = run_grid(cells, store, data_root, show_progress=True, out=sys.stderr)
        missing = [c for c in cells if not store.is_done(c)]
        log(f"{len(rep['ran'])} cells trained, {len(rep['failed'])} failed")
    if len(missing) == len(cells):
        raise BookError(f"no results for profile {profile!r} under {results}: run `{run_command(profile, results)}` "
                        "first, or pass --train")
    if missing:
        log(f"note: {len(missing)} of the {len(cells)} cells of profile {profile!r} are missing; the chapters list "
            f"them. `{run_command(profile, results)}` (or book --train) trains them")


def build(profile: str = "quick", results_root: Optional[str] = None, data_root: Optional[str] = None,
          skip_execute: bool = False, only: Optional[Sequence[str]] = None,
          root: Optional[str] = None, train: bool = False) -> Path:
    r = find_root(root)
    results = Path(results_root or os.environ.get("CAPSLIB_RESULTS", "results")).resolve()
    data_root = data_root or os.environ.get("CAPSLIB_DATA")
    t0 = time.perf_counter()
    from capslib.study.profiles import profile_grid
    profile_grid(profile)   # an unknown profile: one line naming the known ones, before anything
    if skip_execute and chapters_results(r, profile) not in (None, results):
        log(f"note: the chapters of book/{profile}/ were executed from {chapters_results(r, profile)}; "
            f"the overview shows that store, not {results}")
    if not skip_execute:
        check_store(profile, results, data_root, train)
        execute(r, profile, results, data_root, only)
    check_chapters(r, profile, results)
    write_overview(r, results)
    vendor_js(r)
    index = build_html(r)
    log(f"done in {time.perf_counter() - t0:.1f} s; open {index}")
    return index


def main(args) -> int:
    from capslib.core.errors import ConfigError
    from capslib.run.store.schema import StoreError
    try:
        build(args.profile, args.results_root, args.data_root, args.skip_execute, args.only, args.root,
              getattr(args, "train", False))
    except (BookError, ConfigError, StoreError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
