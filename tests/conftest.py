"""Shared pytest fixtures. Tests run on CPU, make their own data, and never touch ../shared or the network."""
import os

import pytest
import torch

os.environ.setdefault("MASKBIT_OFFLINE", "1")  # never try to download weights from a test
os.environ.setdefault("WANDB_MODE", "offline")
torch.set_num_threads(min(2, os.cpu_count() or 1))

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.fixture
def layout_dir():
    return os.path.join(FIXTURES, "checkpoint_layout")
