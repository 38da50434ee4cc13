import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def digits():
    from capslib.data import load_dataset
    return load_dataset("digits")
