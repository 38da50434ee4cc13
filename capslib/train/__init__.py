"""Training a CapsNet: the plain path (one model), the stacked fast path (several models at once),
the job that describes one training, and per-epoch checkpoints."""
