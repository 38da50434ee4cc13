"""Fake cell functions for tests/test_cluster.py. A Dask worker unpickles them by reference,
so it imports this module, which registers them there too (as a user's own methods would be)."""
import os
import time
from pathlib import Path

import numpy as np

from capslib.study.methods import METHODS
from capslib.study.protocols import CellResult
from capslib.train.plain import NonFiniteLoss

MARKS_ENV = "CAPSLIB_TEST_MARKS"   # a folder: each start of a sleepy cell leaves <cell_id>.<pid> there


def sleepy(spec, data, split, ctx):
    """Leaves a mark naming its process, sleeps 3 s, returns a constant score."""
    marks = Path(os.environ[MARKS_ENV])
    (marks / f"{spec.cell_id}.{os.getpid()}").touch()
    time.sleep(3.0)
    s = np.random.default_rng(spec.seed).random(len(split.test_labels)) + split.test_labels
    return CellResult(split.test_labels, {"toy": s}, {"toy": 0.5}, 3.0)


def diverging(spec, data, split, ctx):
    raise NonFiniteLoss(f"{spec.cell_id}: loss is nan at epoch 1, step 0")


FAKES = {"sleepy": sleepy, "diverging": diverging}
METHODS["novelty"].update(FAKES)
