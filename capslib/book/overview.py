"""The results overview page (``book/generated/results_overview.md``): per profile, the cells
finished, the chapters, the cost of the runs and where they ran."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

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
    the cost of the runs and where they ran (from capslib.views.report's cost tables)."""
    from capslib.run.store.schema import PLATEAU_LOSS
    from capslib.views import report
    from capslib.study.profiles import PROFILES
    from capslib.run.store.results import ResultsStore

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
                   f"loss is above {PLATEAU_LOSS}; see {{ref}}`the loss plateau <methods-plateau>`), "
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


