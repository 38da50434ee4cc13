"""Draw the README's picture from a results store: ``python scripts/readme_figure.py``.

Left: paper A's proposed model (protocol imbalanced): test images, normal then anomalous, above
their reconstructions from the normal capsule z_n. Right: paper B's CapsNet (protocol novelty):
ROC curves of −PP and −RE. Both come from the quick profile unless told otherwise.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from capslib.store import ResultsStore  # noqa: E402


def find_cell(store: ResultsStore, *parts: str) -> str:
    ids = [c for c in store.finished_ids() if all(p in c.split("-") for p in parts)]
    if not ids:
        raise SystemExit(f"no finished cell with {parts} in {store.dir}: run `python -m capslib run --profile {store.profile}`")
    return sorted(ids)[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--results-root", default="results")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--normal-class", default="8", help="paper A gallery: the normal class")
    ap.add_argument("--fraction", default="0.01", help="paper A gallery: the anomaly fraction")
    ap.add_argument("--held-out", default="9", help="paper B ROC: the held-out class(es), e.g. 9 or 035")
    ap.add_argument("--out", default=str(ROOT / "book" / "img" / "readme.png"))
    a = ap.parse_args(argv)
    store = ResultsStore(a.results_root, a.profile)

    gal_id = find_cell(store, "imbalanced", "capsnet", "proposed", f"n{a.normal_class}", f"f{a.fraction}")
    g = store.load_arrays(gal_id)
    imgs, recs = g["gallery_images"][:, 0], g["gallery_reconstructions"][:, 0]
    n_norm = int((g["test_labels"][g["gallery_positions"]] == 0).sum())
    k = min(6, n_norm, len(imgs) - n_norm)
    cols = list(range(k)) + list(range(n_norm, n_norm + k))
    as_score = g["score_anomaly_score"][g["gallery_positions"]]

    roc_id = find_cell(store, "novelty", "capsnet", f"h{a.held_out}")
    r = store.load_arrays(roc_id)
    y = r["test_labels"]

    fig = plt.figure(figsize=(11, 3.6), dpi=130)
    outer = fig.add_gridspec(1, 2, width_ratios=[2.1, 1], wspace=0.18)
    left = outer[0].subgridspec(2, len(cols), wspace=0.05, hspace=0.08)
    for j, c in enumerate(cols):
        for i, (arr, row) in enumerate(((imgs, "test image"), (recs, "from $z_n$"))):
            ax = fig.add_subplot(left[i, j])
            ax.imshow(arr[c], cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([]), ax.set_yticks([])
            for s in ax.spines.values():
                s.set_edgecolor("#2a9d8f" if c < n_norm else "#e76f51")
                s.set_linewidth(2.5)
            if j == 0:
                ax.set_ylabel(row, fontsize=9)
            if i == 0:
                ax.set_title(f"AS {as_score[c]:+.2f}", fontsize=7.5)
    fig.text(0.05, 0.97, f"Paper A, proposed: normal class {a.normal_class} (green), anomalies (orange), "
             f"f = {float(a.fraction):.0%}", fontsize=10, va="top")

    ax = fig.add_subplot(outer[1])
    for name, label, color in (("score_pp", "−PP", "#264653"), ("score_re", "−RE", "#e9c46a")):
        fpr, tpr, _ = roc_curve(y, r[name])
        ax.plot(fpr, tpr, color=color, lw=2, label=f"{label}  AUROC {roc_auc_score(y, r[name]):.3f}")
    ax.plot([0, 1], [0, 1], ":", color="grey", lw=1)
    ax.set_xlabel("false positive rate"), ax.set_ylabel("true positive rate")
    ax.set_title(f"Paper B, CapsNet: held-out class {'+'.join(a.held_out)}", fontsize=10)
    ax.legend(loc="lower right", fontsize=8.5, frameon=False)
    ax.set_aspect("equal")
    fig.text(0.99, 0.01, f"capslib, profile {a.profile} (embedded digits, CPU): {gal_id}; {roc_id}",
             fontsize=6, color="grey", ha="right")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
