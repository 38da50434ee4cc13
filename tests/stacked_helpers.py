"""What the stacked-group tests share: the shrunken CapsNet they train, and the check that a
stacked group trains each model as it trains alone."""
import pytest
import torch

from capslib.train.plain import train_capsnet
from capslib.train.stacked import train_stacked

# 20x20 images, 16 conv1 kernels, 4 primary capsule types (16 primary capsules), a small decoder:
# every layer of the CapsNet, at a size that trains 32 models in a second or two on a CPU
TINY = dict(image_size=20, conv_channels=16, primary_types=4, decoder_hidden=(32, 64))


def assert_stacked_trains_as_alone(group, alone, x) -> None:
    """train_stacked on the jobs ``group`` against train_capsnet on each job of ``alone`` (the
    same jobs, made again): per model the same last loss and loss at every epoch's end (1e-6
    relative) and the same weights (1e-6 absolute). One Adam step moves a weight by about
    lr = 1e-3, so a wrong batch, mask or step count shows far above these tolerances."""
    from capslib.run.execute import EpochLosses
    fits = train_stacked(group, x, torch.device("cpu"))
    for job, ref_job, fit in zip(group, alone, fits):
        curve = EpochLosses()
        ref = train_capsnet(ref_job.model, x[ref_job.train_idx], ref_job.targets, ref_job.settings,
                            ref_job.generator, decoder_mask=ref_job.decoder_mask, recon_mask=ref_job.recon_mask,
                            progress=curve)
        assert fit["final_loss"] == pytest.approx(ref["final_loss"], rel=1e-6)
        assert fit["epoch_end_losses"] == pytest.approx(curve.ends(ref_job.settings.epochs), rel=1e-6)
        assert fit["epoch_end_losses"][-1] == fit["final_loss"]
        for (name, p), q in zip(job.model.named_parameters(), ref_job.model.parameters()):
            assert torch.allclose(p, q, rtol=0, atol=1e-6), name
