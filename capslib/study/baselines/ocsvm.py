"""Paper B's deep hybrid baseline CNN+OCSVM (Li et al. 2019, appendix B): the FC-128
activations of the plain CNN (:mod:`.cnn`), trained as a classifier of the normal classes,
feed an RBF one-class SVM (Schölkopf et al., *Estimating the support of a high-dimensional
distribution*, Neural Computation 13, 2001; scikit-learn's ``OneClassSVM``).

**Hyper-parameters, chosen without any anomaly** (paper B only says the features were used
"for searching the hyperparameters"). Features are standardized per unit on the normal
training images. nu = 0.1 is fixed a priori: it bounds the fraction of normal training
images left outside the boundary (Schölkopf et al. 2001, Prop. 4), an operating point and
not a quantity the normal data can estimate. gamma follows Tax & Duin's rule for the
width of a data description (*Support vector data description*, Machine Learning 54,
2004): the tightest description whose error on *unseen normal* data stays at the nominal
rate. A seeded random 80/20 split of the normal training features (at most 4,000 / 1,000
images) fits an OCSVM on the 80% for each gamma = gamma0·2^k, k = −6..6, gamma0 =
1/(d·Var(X)) (scikit-learn's "scale"), and keeps the largest gamma whose rejection rate on
the held-out 20% is at most nu + 2 binomial standard errors, sqrt(nu(1−nu)/n_held)
(larger gamma = a tighter boundary; when none qualifies, the smallest gamma). Caveat: the
held-out 20% were seen by the CNN in training, so the estimate of the rejection rate on
unseen normal images is optimistic.

The final OCSVM is fitted on the features of all normal training images (a seeded random
20,000 when there are more, to bound libsvm's quadratic cost). Anomaly score = −decision
function; the threshold 0 is the OCSVM's own boundary.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from capslib.core.config import CellSpec
from capslib.data.datasets import Dataset
from capslib.study.protocols import CellResult, RunContext
from capslib.data.splits import Split
from capslib.study.baselines.cnn import normal_accuracy, softmax_probs, train_classifier
from capslib.study.baselines.common import as_seen, forward_all

NU = 0.1
GAMMA_STEPS = tuple(range(-6, 7))
MAX_SELECT_FIT, MAX_SELECT_HELD, MAX_FINAL_FIT = 4000, 1000, 20000


def select_ocsvm(features: np.ndarray, seed: int, nu: float = NU) -> dict:
    """The module docstring's rule on standardized normal features; returns gamma, nu and the
    held-out rejection rate per gamma, never looking at an anomaly."""
    from sklearn.svm import OneClassSVM

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(features))
    n_held = min(MAX_SELECT_HELD, max(1, len(features) // 5))
    held = features[order[:n_held]].astype(np.float64)
    fit = features[order[n_held:n_held + MAX_SELECT_FIT]].astype(np.float64)
    gamma0 = 1.0 / (features.shape[1] * max(float(features.var()), 1e-12))
    gammas = [gamma0 * 2.0 ** k for k in GAMMA_STEPS]
    rejection = [float((OneClassSVM(kernel="rbf", gamma=g, nu=nu, cache_size=500).fit(fit)
                        .decision_function(held) < 0).mean()) for g in gammas]
    tolerance = nu + 2.0 * np.sqrt(nu * (1 - nu) / len(held))
    ok = [i for i, rho in enumerate(rejection) if rho <= tolerance]
    gamma = gammas[max(ok)] if ok else gammas[0]
    return {"gamma": gamma, "nu": nu, "gamma0": gamma0, "gamma_grid": gammas, "heldout_rejection": rejection,
            "rejection_tolerance": tolerance, "n_select_fit": len(fit), "n_select_heldout": len(held)}


def run_novelty_ocsvm(spec: CellSpec, data: Dataset, split: Split, ctx: RunContext) -> CellResult:
    """Protocol *novelty*: CNN classifier of the normal classes, FC-128 features, RBF OCSVM;
    score = −decision function. train_seconds = CNN training + feature extraction +
    hyper-parameter selection + the final OCSVM fit."""
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import OneClassSVM

    r = spec.resolved()
    k = r.n_normal_classes
    x_tr, y_tr = data.x_train[split.train_idx], torch.from_numpy(split.train_labels)
    model, rec = train_classifier(r, data, x_tr, y_tr, k, ctx, standardize=False)
    t0 = time.perf_counter()
    f_tr = forward_all(model.embed, as_seen(data, x_tr), ctx.device)[0]
    scaler = StandardScaler().fit(f_tr)
    z_tr = scaler.transform(f_tr)
    sel = select_ocsvm(z_tr, r.seed)
    rng = np.random.default_rng(r.seed + 1)
    final_idx = np.sort(rng.choice(len(z_tr), size=min(MAX_FINAL_FIT, len(z_tr)), replace=False))
    svm = OneClassSVM(kernel="rbf", gamma=sel["gamma"], nu=sel["nu"], cache_size=500).fit(z_tr[final_idx])
    fit_seconds = time.perf_counter() - t0
    x_te = as_seen(data, data.x_test[split.test_idx])
    f_te = forward_all(model.embed, x_te, ctx.device)[0]
    score = -svm.decision_function(scaler.transform(f_te))
    probs = softmax_probs(model, x_te, ctx.device, False)
    return CellResult(split.test_labels, {"ocsvm": score}, {"ocsvm": 0.0}, rec["train_seconds"] + fit_seconds,
                      info={"final_loss": rec["final_loss"], "n_classes": k, "cnn_seconds": rec["train_seconds"],
                            "ocsvm_seconds": fit_seconds, "n_ocsvm_fit": len(final_idx),
                            "n_support": int(len(svm.support_)), **sel,
                            "normal_test_accuracy": normal_accuracy(probs, data, split, r.held_out)})
