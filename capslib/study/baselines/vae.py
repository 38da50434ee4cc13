"""Paper B's convolutional VAE baseline (Li et al. 2019, appendix B; Kingma & Welling,
*Auto-encoding variational Bayes*, ICLR 2014): the encoder is the plain CNN of CNN+OCSVM
without its softmax, latent size 64, and the decoder mirrors it; anomaly score =
reconstruction error.

Decisions where paper B is silent:

- encoder: conv 3x3x32, conv 3x3x64 (unpadded), max-pool 2x2, FC 128 (all ReLU), then two
  linear heads to the posterior mean and log-variance (64 each);
- decoder, the mirror: FC 128, FC to 64 maps (ReLU), nearest-neighbour ×2 upsampling (the
  pool's mirror), transposed conv 3x3 64→32 (ReLU), transposed conv 3x3 32→C, sigmoid;
- loss: the negative ELBO with a Bernoulli decoder, binary cross-entropy summed over the
  pixels (targets in [0, 1]) plus the Gaussian KL divergence, averaged over the batch;
  one reparameterized sample per image; Adam with the cell's epochs, batch size and lr;
- score: the image is encoded to its posterior mean and decoded once (deterministic,
  x′ = decoder(μ(x))); ``re`` = ‖x − x′‖² / ‖x‖² (paper B eq. 2 negated, the formula of
  CapsNet's RE) and ``mse`` = mean squared pixel error.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from capslib.core.config import CellSpec
from capslib.data.datasets import Dataset
from capslib.study.protocols import CellResult, RunContext
from capslib.model.scores import reconstruction_mse, re_score
from capslib.data.splits import Split
from capslib.train.plain import set_seed
from capslib.study.baselines.common import as_seen, fit, forward_all, input_shape

LATENT = 64


class ConvVAE(nn.Module):
    def __init__(self, in_shape: tuple[int, int, int], latent: int = LATENT, width: int = 128):
        super().__init__()
        C, H, W = in_shape
        h, w = (H - 4) // 2, (W - 4) // 2
        self.encoder = nn.Sequential(
            nn.Conv2d(C, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(64 * h * w, width), nn.ReLU())
        self.mu, self.logvar = nn.Linear(width, latent), nn.Linear(width, latent)
        self.decoder = nn.Sequential(
            nn.Linear(latent, width), nn.ReLU(), nn.Linear(width, 64 * h * w), nn.ReLU(), nn.Unflatten(1, (64, h, w)),
            nn.Upsample(size=(H - 4, W - 4), mode="nearest"), nn.ConvTranspose2d(64, 32, 3), nn.ReLU(),
            nn.ConvTranspose2d(32, C, 3))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.encoder(x)
        return self.mu(e), self.logvar(e)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(decoder logits of one reparameterized sample, μ, log σ²)."""
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode_logits(z), mu, logvar

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic reconstruction in [0, 1]: decode the posterior mean."""
        return torch.sigmoid(self.decode_logits(self.encode(x)[0]))


def negative_elbo(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Bernoulli reconstruction (BCE summed over pixels) + KL(q(z|x) ‖ N(0, I)), batch mean."""
    rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
    return (rec + kl).mean()


def run_novelty_vae(spec: CellSpec, data: Dataset, split: Split, ctx: RunContext) -> CellResult:
    """Protocol *novelty*: a convolutional VAE on the normal training images; scores ``re``
    and ``mse`` of the posterior-mean reconstruction."""
    r = spec.resolved()
    g = set_seed(r.seed)
    model = ConvVAE(input_shape(data)).to(ctx.device)
    x_tr = data.x_train[split.train_idx]

    def loss(x, _):
        logits, mu, logvar = model(x)
        return negative_elbo(logits, x, mu, logvar)
    rec = fit(model, loss, x_tr, torch.zeros(len(x_tr)), r, g, ctx.device, data=data,
              progress=ctx.progress, name=r.cell_id)
    model.eval()
    x_te = as_seen(data, data.x_test[split.test_idx])
    recon = torch.from_numpy(forward_all(model.reconstruct, x_te, ctx.device)[0])
    scores = {"re": re_score(x_te, recon).numpy(), "mse": reconstruction_mse(x_te, recon).numpy()}
    return CellResult(split.test_labels, scores, {"re": None, "mse": None}, rec["train_seconds"],
                      info={"final_loss": rec["final_loss"], "latent": LATENT})
