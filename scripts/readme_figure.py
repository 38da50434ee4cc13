"""Draw the README's picture from a results store: ``python scripts/readme_figure.py``.

One cell of paper A's proposed model (protocol imbalanced). Left: test images, normal then
anomalous, above their reconstructions from the normal capsule z_n, with their anomaly score AS.
Right: ROC curves of paper A's three measures on that cell's test set (its Fig. 2): the capsule
length difference, the reconstruction error r_l, and AS. From the quick profile unless told
otherwise.
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
from capslib.run.store.results import ResultsStore  # noqa: E402


def find_cell(store: ResultsStore, *parts: str) -> str:
    ids = [c for c in store.finished_ids() if all(p in c.split("-") for p in parts)]
    if not ids:
        raise SystemExit(f"no finished cell with {parts} in {store.dir}: run `python -m capslib run --profile {store.profile}`")
    return sorted(ids)[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--results-root", default=str(ROOT / "results"), help="default: this checkout's results/")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--normal-class", default="8", help="paper A gallery: the normal class")
    ap.add_argument("--fraction", default="0.01", help="paper A gallery: the anomaly fraction")
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

    y = g["test_labels"]
    # the gallery as one RGB canvas: a coloured frame per image (green normal, orange anomaly)
    pad, size = 3, imgs.shape[-1]
    colors = {True: np.array([42, 157, 143]), False: np.array([231, 111, 81])}
    canvas = np.full((2 * (size + 2 * pad) + 6, len(cols) * (size + 2 * pad + 2), 3), 255, np.uint8)
    for j, c in enumerate(cols):
        for i, arr in enumerate((imgs, recs)):
            y0, x0 = i * (size + 2 * pad + 6), j * (size + 2 * pad + 2)
            canvas[y0:y0 + size + 2 * pad, x0:x0 + size + 2 * pad] = colors[c < n_norm]
            canvas[y0 + pad:y0 + pad + size, x0 + pad:x0 + pad + size] = arr[c][..., None]

    fig = plt.figure(figsize=(11, 3.3), dpi=130)
    outer = fig.add_gridspec(1, 2, width_ratios=[2.3, 1], wspace=0.22)
    ax = fig.add_subplot(outer[0])
    ax.imshow(canvas, interpolation="nearest")
    ax.set_xticks([(j + 0.5) * (size + 2 * pad + 2) for j in range(len(cols))])
    ax.set_xticklabels([f"{as_score[c]:+.2f}" for c in cols], fontsize=7.5)
    ax.set_xlabel("anomaly score AS of each image (the logistic threshold decides)", fontsize=8.5)
    ax.set_yticks([(size + 2 * pad) / 2, 1.5 * (size + 2 * pad) + 6])
    ax.set_yticklabels(["test image", "decoded\nfrom $z_n$"], fontsize=9)
    ax.tick_params(length=0)
    for sp in ax.spines.values():
        sp.set_visible(False)
    ax.set_title(f"Paper A, proposed: normal class {a.normal_class} (green), anomalies (orange), "
                 f"f = {float(a.fraction):.0%}", fontsize=10)

    ax = fig.add_subplot(outer[1])
    for name, label, color in (("score_length_difference", "‖z_a‖ − ‖z_n‖", "#264653"),
                               ("score_r_l", "$r_l$", "#e9c46a"), ("score_anomaly_score", "AS", "#e76f51")):
        fpr, tpr, _ = roc_curve(y, g[name])
        ax.plot(fpr, tpr, color=color, lw=2, label=f"{label}  AUROC {roc_auc_score(y, g[name]):.3f}")
    ax.plot([0, 1], [0, 1], ":", color="grey", lw=1)
    ax.set_xlabel("false positive rate"), ax.set_ylabel("true positive rate", labelpad=2)
    ax.set_title("ROC of paper A's three measures", fontsize=10)
    ax.legend(loc="lower right", fontsize=8.5, frameon=False)
    ax.set_aspect("equal")
    fig.text(0.99, -0.04, f"capslib, profile {a.profile} (embedded digits, CPU), cell {gal_id}",
             fontsize=6, color="grey", ha="right")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
