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


def reset_accelerate_state() -> None:
    """Forget the process-wide accelerate singletons, so the next Trainer builds its Accelerator afresh."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


@pytest.fixture
def fresh_accelerate_state():
    """Tests that build trainers: reset accelerate's process-wide state afterwards."""
    yield
    reset_accelerate_state()
