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

How much the rule's choice matters is recorded beside it, as an oracle that chooses nothing:
the test AUROC of each gamma's selection OCSVM (``oracle_auroc_by_gamma`` in the cell's info).
"""
from __future__ import annotations

import time

import numpy as np

from capslib.core.config import CellSpec
from capslib.data.datasets import Dataset
from capslib.study.protocols import CellResult, RunContext
from capslib.data.splits import Split
from capslib.study.baselines.cnn import normal_accuracy, normal_classifier, softmax_probs
from capslib.study.baselines.common import as_seen, forward_all

NU = 0.1
GAMMA_STEPS = tuple(range(-6, 7))
MAX_SELECT_FIT, MAX_SELECT_HELD, MAX_FINAL_FIT = 4000, 1000, 20000


def selection_fits(features: np.ndarray, seed: int, nu: float = NU) -> dict:
    """The module docstring's grid: OCSVMs fitted on a seeded 80% of the standardized normal
    features, one per gamma = gamma0·2^k, and the held-out 20% they are judged on."""
    from sklearn.svm import OneClassSVM

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(features))
    n_held = min(MAX_SELECT_HELD, max(1, len(features) // 5))
    held = features[order[:n_held]].astype(np.float64)
    fit = features[order[n_held:n_held + MAX_SELECT_FIT]].astype(np.float64)
    gamma0 = 1.0 / (features.shape[1] * max(float(features.var()), 1e-12))
    gammas = [gamma0 * 2.0 ** k for k in GAMMA_STEPS]
    models = [OneClassSVM(kernel="rbf", gamma=g, nu=nu, cache_size=500).fit(fit) for g in gammas]
    return {"gamma0": gamma0, "gammas": gammas, "models": models, "held": held, "n_fit": len(fit), "nu": nu}


def select_ocsvm(features: np.ndarray, seed: int, nu: float = NU, fits: dict | None = None) -> dict:
    """The module docstring's rule on standardized normal features (the grid of
    :func:`selection_fits`, fitted here unless given); returns gamma, nu and the held-out
    rejection rate per gamma, never looking at an anomaly."""
    fits = fits if fits is not None else selection_fits(features, seed, nu)
    held = fits["held"]
    rejection = [float((m.decision_function(held) < 0).mean()) for m in fits["models"]]
    tolerance = fits["nu"] + 2.0 * np.sqrt(fits["nu"] * (1 - fits["nu"]) / len(held))
    ok = [i for i, rho in enumerate(rejection) if rho <= tolerance]
    gammas = fits["gammas"]
    gamma = gammas[max(ok)] if ok else gammas[0]
    return {"gamma": gamma, "nu": fits["nu"], "gamma0": fits["gamma0"], "gamma_grid": gammas,
            "heldout_rejection": rejection, "rejection_tolerance": tolerance,
            "n_select_fit": fits["n_fit"], "n_select_heldout": len(held)}


def gamma_sensitivity(fits: dict, test_features: np.ndarray, test_labels: np.ndarray) -> list[float]:
    """Test AUROC (score = −decision function) of each OCSVM of :func:`selection_fits`, one per
    gamma of the grid. An oracle: it looks at the test anomalies, so it is reported beside the
    headline to show how much the kernel width matters, and never used to choose it."""
    from sklearn.metrics import roc_auc_score

    x = test_features.astype(np.float64)
    return [float(roc_auc_score(test_labels, -m.decision_function(x))) for m in fits["models"]]


def run_novelty_ocsvm(spec: CellSpec, data: Dataset, split: Split, ctx: RunContext) -> CellResult:
    """Protocol *novelty*: CNN classifier of the normal classes, FC-128 features, RBF OCSVM;
    score = −decision function. train_seconds = CNN training + feature extraction +
    hyper-parameter selection + the final OCSVM fit."""
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import OneClassSVM

    r = spec.resolved()
    k = r.n_normal_classes
    x_tr = data.x_train[split.train_idx]
    model, rec = normal_classifier(r, data, split, ctx)
    t0 = time.perf_counter()
    f_tr = forward_all(model.embed, as_seen(data, x_tr), ctx.device)[0]
    scaler = StandardScaler().fit(f_tr)
    z_tr = scaler.transform(f_tr)
    fits = selection_fits(z_tr, r.seed)
    sel = select_ocsvm(z_tr, r.seed, fits=fits)
    rng = np.random.default_rng(r.seed + 1)
    final_idx = np.sort(rng.choice(len(z_tr), size=min(MAX_FINAL_FIT, len(z_tr)), replace=False))
    svm = OneClassSVM(kernel="rbf", gamma=sel["gamma"], nu=sel["nu"], cache_size=500).fit(z_tr[final_idx])
    fit_seconds = time.perf_counter() - t0
    x_te = as_seen(data, data.x_test[split.test_idx])
    f_te = forward_all(model.embed, x_te, ctx.device)[0]
    z_te = scaler.transform(f_te)
    score = -svm.decision_function(z_te)
    oracle = gamma_sensitivity(fits, z_te, split.test_labels)
    probs = softmax_probs(model, x_te, ctx.device, False)
    return CellResult(split.test_labels, {"ocsvm": score}, {"ocsvm": 0.0}, rec["train_seconds"] + fit_seconds,
                      info={"final_loss": rec["final_loss"], "n_classes": k, "cnn_seconds": rec["train_seconds"],
                            "cnn_trained_by": rec["trained_by"],
                            "ocsvm_seconds": fit_seconds, "n_ocsvm_fit": len(final_idx),
                            "n_support": int(len(svm.support_)), **sel,
                            "oracle_auroc_by_gamma": oracle,
                            "normal_test_accuracy": normal_accuracy(probs, data, split, r.held_out)})
