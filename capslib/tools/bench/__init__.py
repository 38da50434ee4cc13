"""Training throughput of the plain path vs the fast path on the current device:
``python -m capslib.tools.bench [--steps S] [--models M] [--out results/bench]``.

For paper A's setting (K = 2, batch 32, standardized inputs) and paper B's (K = 9,
batch 100) it times (a) the plain path, :func:`capslib.train.plain.train_capsnet`, one model,
in fp32 and, with ``--precision fp32,bf16`` (the default where the device has bf16
natively), in bf16 too, interleaved, best of ``--repeats``, and (b) the fast path,
:func:`capslib.train.stacked.train_stacked`, M models at once, on
random 28x28 images (a step's cost does not depend on the pixels: routing runs a fixed 3
iterations). It prints images/s, achieved FLOP/s (the formula is printed) against a peak,
the ratio (b)/(a) measured in the same run, and a projection of the paper grid's CapsNet
time, and writes everything to ``<out>/<device>-<date>.json``.

The peak: on CUDA the vendor's nominal figure where the device is known, and always the
FLOP/s of a large fp32 matmul measured here ("achievable peak"); a CPU has no nominal one.
"""
