"""A trained detector and its model folder (``model.safetensors`` + ``model.json``): save,
load, and score images with it. Scores: higher = more anomalous.

Format 2 (this one) may keep named arrays beside the weights in the safetensors file (the
training scores of :class:`capslib.detect.estimator.CapsNetDetector`), under ``ARRAYS``;
format 1 files, which hold the weights only, load unchanged."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from capslib.study import protocols
from capslib.model.capsnet import CapsNet, CapsNetConfig
from capslib.core.errors import DataError
from capslib.data.folder import Preprocessing, Skipped, read_images
from capslib.train.plain import default_device, evaluate_capsnet


FORMAT, FORMAT_VERSION = "capslib-detector", 2
READS = (1, 2)                              # the format versions this capslib loads
ARRAYS = "arrays."                          # key prefix of the arrays kept beside the weights
WEIGHTS, META = "model.safetensors", "model.json"
DECISION = {"imbalanced": "anomaly_score", "novelty": None}    # the score a threshold decides on
VARIANT = {"imbalanced": "proposed", "novelty": ""}
SCORE_ORDER = ("anomaly_score", "length_difference", "r_l", "routing_gini", "pp", "re")


class ModelFileError(DataError):
    """A model folder cannot be loaded (missing, corrupt, another format version); one line."""

def check_model_dir(model_dir: str | os.PathLike) -> Path:
    """Refuse, in one line, a folder holding a model.json or model.safetensors that capslib did
    not write: saving replaces those two files, and someone else's stay as they are."""
    d = Path(model_dir)
    found = [p for p in (d / META, d / WEIGHTS) if p.exists()]
    if found:
        try:
            ours = json.loads((d / META).read_text()).get("format") == FORMAT
        except (OSError, ValueError, UnicodeDecodeError, AttributeError):
            ours = False
        if not ours:
            raise ModelFileError(f"{found[0]}: not a capslib detector's, and saving would replace it; nothing was "
                                 f"changed: name a new folder, or one of an earlier fit")
    return d


class Detector:
    """A trained CapsNet and what scoring with it needs (``meta``, the model.json), with
    ``arrays`` (name -> numpy array) saved beside the weights."""

    def __init__(self, model: CapsNet, meta: dict, arrays: Optional[dict[str, np.ndarray]] = None):
        self.model, self.meta, self.arrays = model, meta, dict(arrays or {})

    @property
    def protocol(self) -> str:
        return self.meta["protocol"]

    @property
    def prep(self) -> Preprocessing:
        p = self.meta["preprocessing"]
        return Preprocessing(p["channels"], p["image_size"])

    @property
    def thresholds(self) -> dict[str, Optional[float]]:
        return {s: None if t is None else float(t) for s, t in self.meta["thresholds"].items()}

    @property
    def decision_score(self) -> Optional[str]:
        return self.meta["decision_score"]

    def evaluate(self, x: torch.Tensor, keep: Optional[Sequence[int]] = None) -> dict[str, np.ndarray]:
        """Every score of the protocol per image (N,), with ``reconstructions`` of ``keep``
        and, under paper B, the ``predicted_class`` (the longest capsule)."""
        p = self.meta["preprocessing"]
        o = evaluate_capsnet(self.model, x, p["standardize"], p["decoder_capsule"],
                             keep_reconstructions=None if keep is None else np.asarray(keep),
                             precision=self.meta["training"]["precision"])
        if self.protocol == "imbalanced":
            out = protocols.imbalanced_measures(o)
            out["routing_gini"] = self.meta["gini_sign"] * out["routing_gini"]
        else:
            out = protocols.novelty_measures(o)
            out["predicted_class"] = o["lengths"].argmax(1)
        if keep is not None:
            out["reconstructions"] = o.get("reconstructions", np.zeros((0, *x.shape[1:]), np.float32))
        return out

    def decide(self, scores: dict[str, np.ndarray]) -> Optional[np.ndarray]:
        """1 where the decision score exceeds its threshold (paper A: AS > logistic threshold)."""
        s = self.decision_score
        return None if s is None else (scores[s] > self.thresholds[s]).astype(np.int64)

    def score_files(self, paths: Sequence[Path], skip_unreadable: bool = False, chunk: int = 512
                    ) -> tuple[list[dict], list[Skipped]]:
        """One row per readable image: path, every score, threshold and decision where one exists."""
        rows, skipped = [], []
        for start in range(0, len(paths), chunk):
            x, kept, skip = read_images(paths[start:start + chunk], self.prep, skip_unreadable)
            skipped += skip
            if not kept:
                continue
            scores = self.evaluate(x)
            decision = self.decide(scores)
            for i, p in enumerate(kept):
                row = {"path": str(p)}
                row.update({s: float(scores[s][i]) for s in SCORE_ORDER if s in scores})
                if "predicted_class" in scores:
                    row["predicted_class"] = self.meta["classes"][int(scores["predicted_class"][i])]
                if decision is not None:
                    row["threshold"] = self.thresholds[self.decision_score]
                    row["anomalous"] = int(decision[i])
                rows.append(row)
        return rows, skipped

    # ---- saving and loading -------------------------------------------------------------
    def save(self, model_dir: str | os.PathLike) -> Path:
        from safetensors.torch import save_file

        d = check_model_dir(model_dir)
        d.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        state.update({ARRAYS + k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.arrays.items()})
        self.meta["format_version"] = FORMAT_VERSION     # written in this format, whatever it was loaded from
        tmp = d / (WEIGHTS + ".tmp")
        # one metadata key: safetensors writes its metadata map in hash order, so two keys would
        # make two saves of the same weights differ in their header's bytes
        save_file(state, str(tmp), metadata={"format": f"{FORMAT} {FORMAT_VERSION}"})
        self.meta["weights_sha256"] = hashlib.sha256(tmp.read_bytes()).hexdigest()
        tmp_meta = d / (META + ".tmp")
        tmp_meta.write_text(json.dumps(self.meta, indent=1, sort_keys=True))
        os.replace(tmp, d / WEIGHTS)
        os.replace(tmp_meta, d / META)
        return d

    @classmethod
    def load(cls, model_dir: str | os.PathLike, device=None) -> "Detector":
        from safetensors import SafetensorError
        from safetensors.torch import load

        d = Path(model_dir)
        meta_path, weights = d / META, d / WEIGHTS
        for p in (meta_path, weights):
            if not p.is_file():
                raise ModelFileError(f"{p}: missing; a model folder is written by `python -m capslib fit` "
                                     f"or CapsNetDetector.save")
        try:
            meta = json.loads(meta_path.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise ModelFileError(f"{meta_path}: not valid JSON, the file is corrupt ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ModelFileError(f"{meta_path}: not a capslib detector (no \"format\": \"{FORMAT}\")")
        if meta.get("format_version") not in READS:
            raise ModelFileError(f"{meta_path}: detector format {meta.get('format_version')!r} (commit "
                                 f"{meta.get('commit', '?')}), this capslib reads formats "
                                 f"{', '.join(map(str, READS))}: fit the model again, or score with that commit")
        raw = weights.read_bytes()
        if hashlib.sha256(raw).hexdigest() != meta.get("weights_sha256"):
            raise ModelFileError(f"{weights}: its SHA-256 differs from the one in {META}: the file is corrupt "
                                 f"or from another fit")
        try:
            cfg = dict(meta["capsnet"])
            cfg["decoder_hidden"] = tuple(cfg["decoder_hidden"])
            model = CapsNet(CapsNetConfig(**cfg))
            state = load(raw)
            arrays = {k[len(ARRAYS):]: state.pop(k).numpy() for k in list(state) if k.startswith(ARRAYS)}
            model.load_state_dict(state, strict=True)
        except (SafetensorError, KeyError, TypeError, RuntimeError, ValueError) as e:
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelFileError(f"{d}: the weights do not load into the model its {META} describes ({why})") from None
        model.to(torch.device(device) if device else default_device()).eval()
        return cls(model, meta, arrays)
