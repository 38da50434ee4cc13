"""Execute the notebooks with papermill into ``book/<profile>/``: parameters from the profile and
``notebooks/params.yml``, a per-cell timeout, one retry for a kernel that stops answering, and
never an error output in a chapter."""
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

from capslib.book.common import PROFILE_TITLES, BookError, log

KERNEL = "python3"
# seconds one notebook cell may take before its kernel is deemed hung (a cell that trains the
# missing cells of a small grid takes minutes on a CPU); env CAPSLIB_CELL_TIMEOUT overrides
CELL_TIMEOUT = int(os.environ.get("CAPSLIB_CELL_TIMEOUT", "1200"))
RETRY_ON = {"CellTimeoutError", "DeadKernelError", "TimeoutError"}

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
    The notebooks only read the store (``train=False``): the book never trains inside papermill.
    No parameter names a folder of this machine: a data root outside the project reaches the
    kernels as ``$CAPSLIB_DATA`` (which this process then keeps)."""
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
        if data_root:   # a folder inside the project by its relative path; any other through $CAPSLIB_DATA
            data = Path(data_root).resolve()
            if data.is_relative_to(root.resolve()):
                params["data_root"] = _portable(data, root, out_dir)
            else:
                os.environ["CAPSLIB_DATA"] = str(data)
        params.update(overrides.get(nb.stem, {}))
        if nb.stem == "your_images":   # the chapter runs on a digits folder the build writes and fits first
            from capslib.detect.example import example
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
    """papermill ``src`` into ``dst`` with a per-cell timeout, through a kernel client that does not
    sleep through a message that has arrived (:mod:`capslib.book.kernel`). A kernel that stops
    answering gets one more try with a fresh kernel; an error raised by a cell is never retried."""
    import papermill as pm

    from capslib.book.kernel import SlicedPollKernelManager

    for attempt in (1, 2):
        try:
            pm.execute_notebook(str(src), str(dst), parameters=params, kernel_name=KERNEL, cwd=str(cwd),
                                progress_bar=False, log_output=False, request_save_on_cell_execute=False,
                                execution_timeout=CELL_TIMEOUT, kernel_manager_class=SlicedPollKernelManager)
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


