"""Baselines and reference detectors on the study's splits (STUDY.md §3, §6).

Every function here is a cell ``(spec, data, split, ctx) -> CellResult`` and returns
*anomaly* scores (higher = more anomalous), like the rest of the library.

protocol *novelty* (paper B, Li et al. 2019; trained on the normal classes only):
    ``cnn_ocsvm``  CNN FC-128 features + RBF one-class SVM      (:mod:`.ocsvm`)
    ``dbn``        3x500 RBM stack, up–down reconstruction error (:mod:`.dbn`)
    ``vae``        convolutional VAE, reconstruction error       (:mod:`.vae`)
    ``cnn_msp``    −max softmax probability of the CNN            (:mod:`.cnn`, Hendrycks & Gimpel 2017)
protocol *imbalanced* (paper A's training sets, a few labelled anomalies):
    ``cnn``        two-class CNN, p(anomaly)                     (:mod:`.cnn`)
    ``deepsad``    Deep SAD distance to the centre               (:mod:`.deepsad`, Ruff et al. 2020)

The training budget (the cell's epochs, batch size and lr) is discussed in :mod:`.common`.
"""
from __future__ import annotations

from capslib.study.baselines.cnn import run_imbalanced_cnn, run_novelty_msp
from capslib.study.baselines.dbn import run_novelty_dbn
from capslib.study.baselines.deepsad import run_imbalanced_deepsad
from capslib.study.baselines.ocsvm import run_novelty_ocsvm
from capslib.study.baselines.vae import run_novelty_vae

NOVELTY = {"cnn_ocsvm": run_novelty_ocsvm, "dbn": run_novelty_dbn, "vae": run_novelty_vae, "cnn_msp": run_novelty_msp}
IMBALANCED = {"cnn": run_imbalanced_cnn, "deepsad": run_imbalanced_deepsad}
