"""Shared pytest fixtures. Tests run on CPU, make their own data, and never touch ../shared or the network."""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: no spinning threads (see README)

import pytest  # noqa: E402
import torch  # noqa: E402

os.environ.setdefault("MASKBIT_OFFLINE", "1")  # never try to download weights from a test
os.environ.setdefault("WANDB_MODE", "offline")
# Tests use tiny tensors: one intra-op thread is faster than two fighting over 2 cores (and over other
# processes such as the 2-rank accelerate runs some tests start).
torch.set_num_threads(1)

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.fixture
def layout_dir():
    return os.path.join(FIXTURES, "checkpoint_layout")
