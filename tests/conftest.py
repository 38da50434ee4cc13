import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def digits():
    from capslib.data import load_dataset
    return load_dataset("digits")


@pytest.fixture(autouse=True)
def _checkpoint_cache(tmp_path_factory, monkeypatch):
    """In-flight checkpoints of every test go to a temporary cache, never ~/.cache/capslib."""
    monkeypatch.setenv("CAPSLIB_CACHE", str(tmp_path_factory.mktemp("cache")))
