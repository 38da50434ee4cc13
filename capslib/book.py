"""Build the Jupyter Book: ``python -m capslib book``.

1. Execute every ``notebooks/*.ipynb`` with papermill (kernel ``python3``) into
   ``book/<profile>/<stem>.ipynb``, with the parameters ``profile``, ``results_root``
   (``data_root`` when given) and the overrides of ``notebooks/params.yml``
   (``{profile: {notebook_stem: {param: value}}}``). A notebook that raises stops the build:
   errors are never allowed into the book.
2. Vendor the JavaScript the static pages need, so they load nothing from the internet:
   plotly.js from the installed ``plotly`` package, require.js, the ipywidgets HTML manager and
   MathJax from the npm registry (``npm pack``, pinned versions and checksums), into ``_vendor/``
   (git-ignored; served under ``_static/``).
3. Build the book with Jupyter Book 1 (``_config.yml``, ``_toc.yml``) into ``_build/html``,
   warnings as errors.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

KERNEL = "python3"
# seconds one notebook cell may take before its kernel is deemed hung (a cell that trains the
# missing cells of a small grid takes minutes on a CPU); env CAPSLIB_CELL_TIMEOUT overrides
CELL_TIMEOUT = int(os.environ.get("CAPSLIB_CELL_TIMEOUT", "1200"))
RETRY_ON = {"CellTimeoutError", "DeadKernelError", "TimeoutError"}
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
        r = Path(__file__).resolve().parent.parent
    if not (r / "_config.yml").exists() or not (r / "_toc.yml").exists():
        raise BookError(f"{r} holds no _config.yml and _toc.yml; run from the repository's top folder")
    return r


# chapters that read no profile's store (your_images runs on a digits folder the build writes):
# the book shows them once, in the quick part
PROFILE_FREE = frozenset({"your_images"})


def list_notebooks(root: Path, only: Optional[Sequence[str]] = None) -> list[Path]:
    nb_dir = root / "notebooks"
    found = sorted(p for p in nb_dir.glob("*.ipynb") if not p.name.startswith("."))
    if not found:
        raise BookError(f"no notebooks in {nb_dir}")
    if only:
        wanted = {Path(n).stem for n in only}
        unknown = wanted - {p.stem for p in found}
        if unknown:
            raise BookError(f"--only {', '.join(sorted(unknown))}: no such notebook; "
                            f"choose from {', '.join(p.stem for p in found)}")
        found = [p for p in found if p.stem in wanted]
    return found


def chapters_for(root: Path, profile: str, only: Optional[Sequence[str]] = None) -> list[Path]:
    """The notebooks executed into ``book/<profile>/``: all of them for quick, the others
    without the :data:`PROFILE_FREE` chapters."""
    return [nb for nb in list_notebooks(root, only) if profile == "quick" or nb.stem not in PROFILE_FREE]


def load_overrides(root: Path, profile: str) -> dict:
    """``notebooks/params.yml``: ``{profile: {notebook_stem: {param: value}}}`` (may be absent or empty)."""
    path = root / "notebooks" / "params.yml"
    if not path.exists():
        return {}
    import yaml
    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc, dict):
        raise BookError(f"{path}: expected a mapping {{profile: {{notebook: {{param: value}}}}}}")
    per = doc.get(profile) or {}
    if not isinstance(per, dict) or not all(isinstance(v, dict) or v is None for v in per.values()):
        raise BookError(f"{path}: the entry for profile {profile!r} must map notebook names to parameters")
    return {k: dict(v or {}) for k, v in per.items()}


# ---------------------------------------------------------------- kernel
def ensure_kernel() -> None:
    """Make sure the ``python3`` kernel runs an interpreter that imports capslib; register one if not."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    try:
        argv0 = KernelSpecManager().get_kernel_spec(KERNEL).argv[0]
    except NoSuchKernel:
        argv0 = None
    if argv0 is not None:
        exe = argv0 if os.path.isabs(argv0) else shutil.which(argv0)
        if exe and subprocess.run([exe, "-c", "import capslib, ipykernel"], capture_output=True).returncode == 0:
            return
    log(f"registering the Jupyter kernel {KERNEL!r} for {sys.executable}")
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--user", "--name", KERNEL,
                    "--display-name", "Python 3 (capslib)"], check=True)


# ---------------------------------------------------------------- execution
def execute(root: Path, profile: str, results_root: Path, data_root: Optional[str],
            only: Optional[Sequence[str]] = None) -> list[Path]:
    """Execute the notebooks into ``book/<profile>/``; raises BookError naming every failure.
    The notebooks only read the store (``train=False``): the book never trains inside papermill."""
    import papermill as pm

    notebooks = chapters_for(root, profile, only)
    overrides = load_overrides(root, profile)
    unknown = set(overrides) - {p.stem for p in list_notebooks(root)}
    if unknown:
        raise BookError(f"notebooks/params.yml names no notebook {', '.join(sorted(unknown))} for {profile!r}")
    for nb in notebooks:   # a parameter the notebook does not declare: one line, before anything runs
        known = set(pm.inspect_notebook(str(nb)))
        bad = sorted(set(overrides.get(nb.stem, {})) - known)
        if bad:
            raise BookError(f"notebooks/params.yml: {profile}.{nb.stem} sets {', '.join(bad)}, which the notebook "
                            f"does not know; it knows {', '.join(sorted(known))}")
    ensure_kernel()
    out_dir = root / "book" / profile
    out_dir.mkdir(parents=True, exist_ok=True)
    failed_dir = root / "_build" / "failed" / profile
    done, failures = [], []
    log(f"executing {len(notebooks)} notebook(s), profile {profile!r}, results {results_root}")
    for i, nb in enumerate(notebooks, 1):
        params = {"profile": profile, "results_root": _portable(results_root, root, out_dir)}
        if data_root:
            params["data_root"] = str(Path(data_root).resolve())
        params.update(overrides.get(nb.stem, {}))
        if nb.stem == "your_images":   # the chapter runs on a digits folder the build writes and fits first
            from .detector import example
            log("your_images: writing the digits example folder and fitting its model (once) in _build/your_images/")
            params.update({k: _portable(Path(v), root, out_dir) for k, v in
                           example(root / "_build" / "your_images", fit_model=True, data_root=data_root).items()})
        if "train" in pm.inspect_notebook(str(nb)):
            params["train"] = False
        target = out_dir / nb.name
        t0 = time.perf_counter()
        # execute into a temporary file: a failed run never replaces a good chapter
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=".exec-") as tmp:
            tmp_out = Path(tmp) / nb.name
            try:
                run_notebook(nb, tmp_out, params, cwd=out_dir, name=f"[{i}/{len(notebooks)}] {nb.stem}")
            except Exception as e:  # PapermillExecutionError, a dead kernel, a bad parameter ...
                dt = time.perf_counter() - t0
                failed_dir.mkdir(parents=True, exist_ok=True)
                kept = failed_dir / nb.name
                if tmp_out.exists():
                    shutil.copyfile(tmp_out, kept)
                what = _describe_failure(e)
                log(f"[{i}/{len(notebooks)}] {nb.stem}: FAILED after {dt:.1f} s: {what}")
                failures.append(f"{nb.name}: {what}" + (f" (executed copy: {kept})" if kept.exists() else ""))
                continue
            _check_outputs(tmp_out)
            finish_chapter(tmp_out, profile)
            os.replace(tmp_out, target)
        dt = time.perf_counter() - t0
        log(f"[{i}/{len(notebooks)}] {nb.stem}: ok in {dt:.1f} s -> {target.relative_to(root)}")
        done.append(target)
    if failures:
        raise BookError(f"{len(failures)} notebook(s) failed, the book was not built:\n  " + "\n  ".join(failures))
    return done


def _portable(path: Path, root: Path, cwd: Path) -> str:
    """``path`` relative to ``cwd`` (the executed chapter's folder, where it runs) when it
    lies inside the book's root, else absolute: an executed chapter then names no folder of
    the machine that ran it, and reruns from its own folder in JupyterLab."""
    path = Path(path).resolve()
    return os.path.relpath(path, cwd) if path.is_relative_to(root.resolve()) else str(path)


def run_notebook(src: Path, dst: Path, params: dict, cwd: Path, name: str = "") -> None:
    """papermill ``src`` into ``dst`` with a per-cell timeout. A kernel that stops answering
    (seen once here: client and kernel both idle mid-notebook, cf. nbclient issue 312) gets one
    more try with a fresh kernel; an error raised by a cell is never retried."""
    import papermill as pm

    for attempt in (1, 2):
        try:
            pm.execute_notebook(str(src), str(dst), parameters=params, kernel_name=KERNEL, cwd=str(cwd),
                                progress_bar=False, log_output=False, request_save_on_cell_execute=False,
                                execution_timeout=CELL_TIMEOUT)
            return
        except Exception as e:
            if attempt == 2 or type(e).__name__ not in RETRY_ON:
                raise
            log(f"{name or src.stem}: {_describe_failure(e)}; retrying once with a fresh kernel")


def _describe_failure(e: Exception) -> str:
    ename, evalue = getattr(e, "ename", None), getattr(e, "evalue", None)
    if ename:
        where = getattr(e, "cell_index", None)
        return (f"cell {where}: " if where is not None else "") + f"{ename}: {evalue}"
    lines = [ln.strip() for ln in str(e).strip().splitlines() if any(ch.isalpha() for ch in ln)]
    return f"{type(e).__name__}: {lines[0] if lines else ''}"


PROFILE_TITLES = {"quick": "quick profile", "paper": "paper profile"}


def finish_chapter(path: Path, profile: str) -> None:
    """Make an executed chapter say what it shows, once: its H1 title names the profile (the
    quick and paper chapters otherwise share their titles), and the notebook's default
    ``parameters`` cell is tagged ``remove-cell`` where papermill injected the parameters
    actually used right after it, so the book shows the parameters once (the injected ones).
    The notebook itself keeps both cells, as papermill wrote them, for JupyterLab."""
    import nbformat
    nb = nbformat.read(str(path), as_version=4)
    label = PROFILE_TITLES.get(profile, f"profile {profile}")
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.split("\n")
        heading = next((i for i, line in enumerate(lines) if line.startswith("# ")), None)
        if heading is not None:
            if not lines[heading].rstrip().endswith(f"({label})"):
                lines[heading] = f"{lines[heading].rstrip()} ({label})"
            cell.source = "\n".join(lines)
            break
    if any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells):
        for cell in nb.cells:
            tags = cell.metadata.setdefault("tags", [])
            if "parameters" in tags and "remove-cell" not in tags:
                tags.append("remove-cell")
    nbformat.write(nb, str(path))


def _check_outputs(path: Path) -> None:
    """Refuse an executed notebook with an error output (papermill raises first; belt and braces)."""
    nb = json.loads(path.read_text())
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                raise BookError(f"{path.name}: an error output ({out.get('ename')}) in an executed cell")


# ---------------------------------------------------------------- results overview
OVERVIEW = Path("book") / "generated" / "results_overview.md"   # included by book/results.md


def _md_table(df) -> str:
    """A pandas frame as a Markdown table (no tabulate needed)."""
    if df is None or len(df) == 0:
        return "*(none)*\n"
    cols = [str(c) for c in df.columns]
    cell = lambda v: ("" if v is None or (isinstance(v, float) and v != v) else str(v)).replace("|", "\\|")
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _chapter_title(nb_path: Path) -> str:
    try:
        for cell in json.loads(nb_path.read_text())["cells"]:
            if cell["cell_type"] == "markdown":
                for line in "".join(cell["source"]).splitlines():
                    if line.startswith("# "):
                        return line[2:].strip()
    except (OSError, ValueError, KeyError):
        pass
    return nb_path.stem.replace("_", " ")


def chapters_results(root: Path, profile: str) -> Optional[Path]:
    """The results store the executed chapters of ``profile`` were executed from (papermill's
    record in each chapter), or None when there are none."""
    for nb in sorted((root / "book" / profile).glob("*.ipynb")):
        try:
            rel = json.loads(nb.read_text())["metadata"]["papermill"]["parameters"]["results_root"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        return (nb.parent / rel).resolve()
    return None


def write_overview(root: Path, results_root: Path) -> Path:
    """``book/generated/results_overview.md``: per profile, the cells finished, the chapters,
    the cost of the runs and where they ran (from capslib.report's cost tables)."""
    from . import report
    from .runner import PROFILES
    from .store import ResultsStore

    out = [f"<!-- written by python -m capslib book from the results store {results_root.name}/; do not edit -->\n"]
    for profile in PROFILES:
        out.append(f"## Profile `{profile}`\n")
        results = chapters_results(root, profile) or results_root   # the store the chapters show
        store = ResultsStore(results, profile)
        grid = PROFILES[profile].cells()
        done = sum(store.is_done(c) for c in grid)
        chapters = sorted((root / "book" / profile).glob("*.ipynb"))
        if not store.finished_ids():
            out.append(f"No results for this profile in `{results.name}/{profile}/` yet"
                       + (": see {doc}`/book/paper`.\n" if profile == "paper" else ".\n"))
            continue
        df = report.load_rows(results, profile)
        out.append(f"{done} of the {len(grid)} cells of the profile's grid are finished "
                   f"({len(store.finished_ids())} cells in the store).\n")
        if chapters:
            out.append("Chapters: " + "; ".join(f"{{doc}}`{_chapter_title(c)} </book/{profile}/{c.stem}>`"
                                               for c in chapters) + ".\n")
        else:
            out.append(f"The chapters of this profile are not built: `python -m capslib book --profile {profile}`.\n")
        out.append("**Training cost** per protocol, dataset, method and device (seconds of training, "
                   "summed over cells; evaluation not included):\n")
        out.append(_md_table(report.cost_totals(df)))
        out.append("\n**Where the numbers came from** (commit, device, torch):\n")
        out.append(_md_table(report.provenance(df)))
        out.append("\n**Trainings that ended on the loss plateau** (paper A's CapsNet cells whose last training "
                   f"loss is above {report.PLATEAU_LOSS}; see {{ref}}`the loss plateau <methods-plateau>`), "
                   "per route and anomaly fraction:\n")
        out.append(_md_table(report.plateau_table(store)))
        cost = report.cost_table(df)
        keep = [c for c in ("cell_id", "train_seconds", "device", "commit", "finished_utc") if c in cost.columns]
        out.append(f"\n:::{{dropdown}} Every cell of profile `{profile}`: training seconds, device, commit\n")
        out.append(_md_table(cost[keep]))
        out.append(":::\n")
    path = root / OVERVIEW
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(out)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


# ---------------------------------------------------------------- build
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
    from .runner import profile_grid, run_grid
    from .store import ResultsStore

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
    from .runner import profile_grid
    profile_grid(profile)   # an unknown profile: one line naming the known ones, before anything
    if skip_execute and chapters_results(r, profile) not in (None, results):
        log(f"note: the chapters of book/{profile}/ were executed from {chapters_results(r, profile)}; "
            f"the overview shows that store, not {results}")
    if not skip_execute:
        check_store(profile, results, data_root, train)
        execute(r, profile, results, data_root, only)
    check_chapters(r, profile, results)
    write_overview(r, results)
    from .vendor import vendor_js   # (book.py is also loaded alone, as a Sphinx extension)
    vendor_js(r)
    index = build_html(r)
    log(f"done in {time.perf_counter() - t0:.1f} s; open {index}")
    return index


def main(args) -> int:
    from .config import ConfigError
    from .store import StoreError
    try:
        build(args.profile, args.results_root, args.data_root, args.skip_execute, args.only, args.root,
              getattr(args, "train", False))
    except (BookError, ConfigError, StoreError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------- Sphinx extension
def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    """Drop repeated <script> entries: under Sphinx 7.4 the inline scripts of sphinx-thebe and
    sphinx-togglebutton come twice (once with filename None, once ""), and ``const THEBE_JS_URL``
    declared twice is a JavaScript error on every page. Runs first (priority 1): a later
    handler may return a template name, which ends the event."""
    files = context.get("script_files")
    if not files:
        return
    seen, keep = set(), []
    for js in files:
        key = (getattr(js, "filename", str(js)) or "",      # inline scripts: None or ""
               json.dumps(getattr(js, "attributes", {}), sort_keys=True, default=str))
        if key not in seen:
            seen.add(key)
            keep.append(js)
    files[:] = keep


def setup(app):
    """Sphinx extension of the book (``sphinx: local_extensions`` in _config.yml)."""
    app.connect("html-page-context", _dedupe_scripts, priority=1)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
