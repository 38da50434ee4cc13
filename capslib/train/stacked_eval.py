"""The fast path's evaluation: M trained CapsNets scored as one stacked model.

Each model has its own image set (paper A's cells of one group differ in their normal
class, so in their training and test sets); the sets are cut into chunks of ``batch_size``
images per model, the shorter ones padded with blank images that are dropped again, and
each chunk of all M models is one forward pass of :class:`capslib.train.stacked.StackedCapsNet`.
Per model the result is exactly :func:`capslib.train.plain.evaluate_capsnet`'s dict, computed
with the same score functions (tests/test_fast.py checks the two against each other).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from capslib.train.stacked import StackedCapsNet
from capslib.train.jobs import EvalRequest
from capslib.model.scores import re_score, reconstruction_mse, routing_gini
from capslib.train.plain import model_input


@torch.no_grad()
def evaluate_stacked(net: StackedCapsNet, requests: Sequence[EvalRequest], batch_size: int = 256) -> list[dict]:
    """Model m of ``net`` evaluated on ``requests[m]``; per model the dict of
    :func:`capslib.train.plain.evaluate_capsnet` (lengths, r_l, nse, gini, reconstructions)."""
    M = net.M
    if len(requests) != M:
        raise ValueError(f"{len(requests)} evaluation requests for {M} stacked models")
    standardize, transform = requests[0].standardize, requests[0].transform
    if any(q.standardize != standardize or q.transform is not transform for q in requests):
        raise ValueError("the models of one stacked evaluation must share standardization and transform")
    device = net.W.device
    images = [q.images.to(device) for q in requests]                       # per model (N_m, C, H, W)
    sizes = [len(x) for x in images]
    keeps = [np.zeros(0, dtype=np.int64) if q.keep_reconstructions is None
             else np.asarray(q.keep_reconstructions, dtype=np.int64) for q in requests]
    decoder = torch.tensor([-1 if q.decoder_capsule is None else q.decoder_capsule for q in requests],
                           device=device)                                  # (M,) -1: the longest capsule
    outs = [{"lengths": [], "r_l": [], "nse": [], "gini": []} for _ in range(M)]
    recon = [{} for _ in range(M)]                                           # per model: position -> image
    for start in range(0, max(sizes), batch_size):
        chunk = []
        for x in images:
            part = x[start:start + batch_size]
            if transform is not None and len(part):
                part = transform(part, None)
            chunk.append(part)
        bs = max(len(p) for p in chunk)
        shape = next(p.shape[1:] for p in chunk if len(p))
        x = torch.stack([torch.cat([p, p.new_zeros((bs - len(p),) + shape)]) if len(p) < bs else p
                         for p in chunk])                                   # (M, bs, C, H, W)
        lengths, rec, c = net(model_input(x, standardize), decoder.view(M, 1).expand(M, bs))
        flat_x, flat_rec = x.flatten(0, 1), rec.flatten(0, 1)               # (M*bs, C, H, W)
        r_l = reconstruction_mse(flat_x, flat_rec).view(M, bs)
        nse = re_score(flat_x, flat_rec).view(M, bs)
        flat_c = c.flatten(0, 1)                                            # (M*bs, 1152, K)
        gini = torch.stack([routing_gini(flat_c, k) for k in range(lengths.shape[-1])], 1).view(M, bs, -1)
        for m, p in enumerate(chunk):
            n = len(p)
            if n == 0:
                continue
            for key, val in (("lengths", lengths), ("r_l", r_l), ("nse", nse), ("gini", gini)):
                outs[m][key].append(val[m, :n].float().cpu())
            for pos in keeps[m][(keeps[m] >= start) & (keeps[m] < start + n)]:
                recon[m][int(pos)] = rec[m, int(pos) - start].float().cpu()
    result = []
    for m in range(M):
        res = {k: torch.cat(v).numpy() for k, v in outs[m].items()}
        if len(keeps[m]):
            res["reconstructions"] = torch.stack([recon[m][int(k)] for k in keeps[m]]).numpy()  # in the order asked
        result.append(res)
    return result
