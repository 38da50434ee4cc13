"""The reproduction-status panel: how much of a profile's grid has finished, per table row of
the two papers and per seed, read from the results store (nothing is trained).

Rows follow the papers' tables: paper A's (dataset × variant × anomaly fraction, plus the
reference detectors on the same training sets), paper B's per-dataset rows (every held-out
single class, one row per method) and its case studies of several held-out classes. Each
(row, seed) counts its finished cells against the cells the profile asks for. The panel
draws the counts as a seaborn heat-map (a static figure: a reader takes it in at a glance,
no interaction needed) above one line per paper, the newest cell's date and the training
time the finished cells took.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from capslib.run.store.results import ResultsStore

DATASET_LABELS = {"digits": "digits", "mnist": "MNIST", "fashion": "Fashion-MNIST", "kmnist": "KMNIST",
                  "smallnorb": "smallNORB"}
PAPERS = {"imbalanced": "A", "novelty": "B"}


def _row_of(spec) -> dict:
    """The table row and column group of one cell (see the module docstring)."""
    r = spec.resolved()
    ds = DATASET_LABELS.get(r.dataset, r.dataset)
    if r.protocol == "imbalanced":
        what = r.variant if r.method == "capsnet" else r.method
        return {"paper": "A", "group": ds, "row": f"{what} {100 * r.anomaly_fraction:g}%"}
    if len(r.held_out) > 1:
        return {"paper": "B", "group": f"{ds} {{{', '.join(map(str, r.held_out))}}}", "row": r.method}
    return {"paper": "B", "group": f"{ds}, each class", "row": r.method}


def grid_status(cells: Sequence, store: ResultsStore) -> pd.DataFrame:
    """One line per (paper, group, row, seed): cells asked for (``total``) and finished
    (``done``), in the grid's order."""
    recs = [{**_row_of(c), "seed": int(c.seed), "done": int(store.is_done(c))} for c in cells]
    if not recs:
        return pd.DataFrame(columns=["paper", "group", "row", "seed", "done", "total"])
    df = pd.DataFrame(recs)
    return (df.groupby(["paper", "group", "row", "seed"], sort=False)
            .agg(done=("done", "sum"), total=("done", "size")).reset_index())


def profile_status(profile: str, results_root="results") -> tuple[pd.DataFrame, ResultsStore]:
    """:func:`grid_status` of a profile's whole grid (``capslib.study.profiles.profile_grid``)."""
    from capslib.study.profiles import profile_grid
    store = ResultsStore(results_root, profile)
    return grid_status(profile_grid(profile).cells(), store), store


def compute_summary(store: ResultsStore, cell_ids: Sequence[str]) -> dict:
    """Newest finishing time (UTC), total training seconds and devices of the finished cells."""
    times, seconds, devices = [], 0.0, set()
    for cid in cell_ids:
        doc = store.load_cell(cid)
        prov, rows = doc.get("provenance", {}), doc.get("rows", [])
        times.append(prov.get("finished_utc", ""))
        seconds += float(rows[0].get("train_seconds") or 0) if rows else 0.0
        devices.add(prov.get("device", "?"))
    return {"cells": len(cell_ids), "newest": max(times) if times else None, "train_seconds": seconds,
            "devices": sorted(devices)}


def summary_lines(status: pd.DataFrame, store: ResultsStore) -> list[str]:
    """Markdown lines: finished / asked per paper (and per seed), the newest cell, the compute."""
    lines = []
    for paper, g in status.groupby("paper", sort=True):
        done, total = int(g["done"].sum()), int(g["total"].sum())
        seeds = "; ".join(f"seed {s}: {int(x['done'].sum())}/{int(x['total'].sum())}" for s, x in g.groupby("seed"))
        full = int(((g.groupby(["group", "row"])["done"].sum()) == g.groupby(["group", "row"])["total"].sum()).sum())
        rows = g.groupby(["group", "row"]).ngroups
        lines.append(f"**Paper {paper}**: {done} of {total} cells finished ({100 * done / max(total, 1):.1f}%; {seeds}); "
                     f"{full} of its {rows} table rows complete over every seed.")
    ids = store.finished_ids()
    c = compute_summary(store, ids)
    if c["cells"]:
        lines.append(f"Newest cell finished {c['newest'].replace('T', ' ').replace('Z', ' UTC')}; the {c['cells']} cells "
                     f"in the store took {c['train_seconds'] / 3600:.1f} h of training on {', '.join(c['devices'])}.")
    else:
        lines.append("No cell has finished yet.")
    return lines


def status_figure(status: pd.DataFrame, papers: Sequence[str] = ("A", "B")):
    """A seaborn heat-map per paper: rows the table rows, columns (dataset group, seed), colour
    the share of the row's cells finished, text "done/total". Empty groups are left out."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    parts = [(p, status[status["paper"] == p]) for p in papers if (status["paper"] == p).any()]
    if not parts:
        return None
    heights = [max(len(g["row"].unique()), 1) for _, g in parts]
    fig, axes = plt.subplots(len(parts), 1, figsize=(8.0, 0.9 + 0.36 * sum(heights) + 0.9 * len(parts)),
                             gridspec_kw={"height_ratios": [h + 2.2 for h in heights]}, squeeze=False)
    for ax, (paper, g) in zip(axes[:, 0], parts):
        g = g.assign(col=list(zip(g["group"], g["seed"])))
        cols = list(dict.fromkeys(g["col"]))
        rows = list(dict.fromkeys(g["row"]))
        share = g.pivot(index="row", columns="col", values="done") / g.pivot(index="row", columns="col", values="total")
        text = (g.assign(t=[f"{d}/{t}" for d, t in zip(g["done"], g["total"])])
                .pivot(index="row", columns="col", values="t"))
        share, text = share.reindex(index=rows, columns=cols), text.reindex(index=rows, columns=cols).fillna("")
        sns.heatmap(share, ax=ax, vmin=0, vmax=1, cmap="Greens", annot=text.to_numpy(), fmt="", cbar=False,
                    linewidths=0.5, linecolor="white", annot_kws={"fontsize": 8}, mask=share.isna())
        ax.set_facecolor("#f0f0f0")
        ax.set_title(f"Paper {paper}: finished cells / cells asked for, per table row and seed", fontsize=10,
                     loc="left", pad=22)
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.set_xticklabels([f"seed {s}" for _, s in cols], rotation=0, fontsize=7.5)
        ax.tick_params(axis="y", labelrotation=0, labelsize=8)
        groups = list(dict.fromkeys(grp for grp, _ in cols))   # one label over each dataset's seeds
        for grp in groups:
            idx = [i for i, (gg, _) in enumerate(cols) if gg == grp]
            ax.text((idx[0] + idx[-1] + 1) / 2, -0.15, grp, ha="center", va="bottom", fontsize=8.5, fontweight="bold")
            if idx[0]:
                ax.axvline(idx[0], color="black", lw=1.2)
    fig.tight_layout()
    return fig


def status_line(status: pd.DataFrame, store: ResultsStore, profile: str) -> str:
    """One Markdown line: finished / asked per paper, and when the newest cell finished."""
    parts = [f"paper {paper} {int(g['done'].sum())} of {int(g['total'].sum())} cells "
             f"({100 * g['done'].sum() / max(g['total'].sum(), 1):.1f}%)" for paper, g in status.groupby("paper", sort=True)]
    c = compute_summary(store, store.finished_ids())
    newest = (f"; the newest finished {c['newest'].replace('T', ' ').replace('Z', ' UTC')}" if c["cells"]
              else "; no cell has finished yet")
    return f"**Reproduction status, {profile} profile:** " + ", ".join(parts) + newest + "."


GLUE_PREFIX = "application/papermill.record/"    # myst-nb's mime prefix of a glued, undisplayed output


def glue_html(name: str, html: str) -> None:
    """Glue ``html`` under ``name`` without showing it: the output record myst-nb's ``{glue}``
    reads (its mime types prefixed with :data:`GLUE_PREFIX`, its name in the ``scrapbook``
    metadata), published directly; ``myst_nb.glue`` would import nbformat and jsonschema into
    the kernel, seconds per chapter, to write the same record."""
    from IPython.display import publish_display_data
    publish_display_data({GLUE_PREFIX + "text/html": html, GLUE_PREFIX + "text/plain": "<IPython.core.display.HTML object>"},
                         metadata={"scrapbook": {"name": name, "mime_prefix": GLUE_PREFIX}})


def show_panel(profile: str, results_root="results", papers: Sequence[str] = ("A", "B"), glue: str | None = None,
               figure: bool = False, figure_file: str | None = None):
    """Display the reproduction status of ``papers`` in a notebook: one line, and with
    ``figure`` the heat-map per table row. The overview page draws the heat-map once: with
    ``figure_file`` the heat-map of *both* papers is written there (a PNG beside the chapter,
    which the overview includes as an image), and with ``glue`` the summary lines are glued
    (not shown) as ``<glue>_text`` for the overview (myst-nb ``{glue}`` with ``:doc:``)."""
    from IPython.display import Markdown, display

    full, store = profile_status(profile, results_root)
    if figure or figure_file:        # matplotlib only where a heat-map is drawn
        import matplotlib.pyplot as plt
    if figure_file:
        fig = status_figure(full)
        if fig is not None:
            fig.savefig(figure_file, format="png", dpi=100, metadata={"Software": None})
            plt.close(fig)
    if glue:
        from markdown_it import MarkdownIt     # HTML, which a page gluing from another document renders
        glue_html(f"{glue}_text", MarkdownIt().render("\n\n".join(summary_lines(full, store))))
    status = full[full["paper"].isin(papers)]
    display(Markdown(status_line(status, store, profile)))
    if figure:
        fig = status_figure(status, papers)
        if fig is not None:
            display(fig)
            plt.close(fig)    # shown once: the inline backend would draw it again at the end of the cell
    return status


def share_done(status: pd.DataFrame) -> float:
    """Finished share of all cells asked for (0 when none are)."""
    total = status["total"].sum()
    return float(status["done"].sum() / total) if total else float(np.nan)
