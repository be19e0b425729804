"""Checkpoint folders: atomic writes, newest complete lookup, pruning, RNG round trip, weights-only loading."""
import json
import random

import numpy as np
import pytest
import torch
from accelerate import Accelerator

from training import CheckpointManager, NonFiniteGuard, NonFiniteLossError, latest_checkpoint, list_checkpoints
from training.checkpoint import CheckpointNotFoundError


@pytest.fixture(scope="module")
def accelerator():
    return Accelerator(cpu=True)


def save(manager, step, value=0.0):
    return manager.save(step, {"w": torch.full((2,), value)}, {"optimizers": {}, "step": step},
                        ema_state={"w": torch.full((2,), value + 1)})


def test_save_writes_the_layout_and_load_reads_it_back(tmp_path, accelerator):
    manager = CheckpointManager(tmp_path, accelerator, keep_last=0)
    path = save(manager, 3, value=1.5)
    assert path.name == "checkpoint-3"
    assert json.loads((path / "metadata.json").read_text()) == {"global_step": 3}
    for name in ("unwrapped_model/pytorch_model.bin", "ema_model/pytorch_model.bin", "training_state.pt",
                 "random_states_0.pt"):
        assert (path / name).is_file(), name
    state = manager.load(path)
    assert state["global_step"] == 3 and torch.equal(state["model"]["w"], torch.full((2,), 1.5))
    assert torch.equal(state["ema"]["w"], torch.full((2,), 2.5)) and state["training_state"]["step"] == 3
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no partial folder left behind


def test_rng_states_round_trip(tmp_path, accelerator):
    manager = CheckpointManager(tmp_path, accelerator)
    torch.manual_seed(1), random.seed(1), np.random.seed(1)
    save(manager, 1)
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(99), random.seed(99), np.random.seed(99)
    manager.load(tmp_path / "checkpoint-1")
    assert torch.equal(torch.rand(3), expected[0])
    assert random.random() == expected[1] and np.random.rand() == expected[2]


def test_keep_last_prunes_oldest_and_latest_is_newest(tmp_path, accelerator):
    manager = CheckpointManager(tmp_path, accelerator, keep_last=2)
    for step in (2, 10, 4):
        save(manager, step)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [4, 10]
    assert latest_checkpoint(tmp_path).name == "checkpoint-10"
    assert save(manager, 10).name == "checkpoint-10"  # saving an existing step is a no-op


def test_crash_while_saving_leaves_no_checkpoint(tmp_path, accelerator, monkeypatch):
    manager = CheckpointManager(tmp_path, accelerator)
    save(manager, 1)
    real_save = torch.save

    def failing_save(obj, f, *args, **kwargs):
        if "training_state.pt" in str(f):  # also its temporary name (atomic write)
            raise OSError("disk full")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError):
        save(manager, 2)
    monkeypatch.undo()
    assert latest_checkpoint(tmp_path).name == "checkpoint-1"  # the half-written step 2 is invisible
    assert (tmp_path / ".checkpoint-2.partial").is_dir()
    save(manager, 3)
    assert not (tmp_path / ".checkpoint-2.partial").exists()  # cleaned by the next save


def test_incomplete_folder_is_ignored_and_refused(tmp_path, accelerator):
    (tmp_path / "checkpoint-7").mkdir()  # e.g. copied by hand, no metadata.json
    assert latest_checkpoint(tmp_path) is None
    with pytest.raises(CheckpointNotFoundError, match="not a complete training checkpoint"):
        CheckpointManager(tmp_path, accelerator).load(tmp_path / "checkpoint-7")


def test_pickled_objects_are_refused(tmp_path, accelerator):
    path = save(CheckpointManager(tmp_path, accelerator), 1)
    torch.save({"evil": object()}, path / "training_state.pt")
    with pytest.raises(Exception, match="(?i)weights"):
        CheckpointManager(tmp_path, accelerator).load(path)


def test_nonfinite_guard_names_step_and_terms():
    guard = NonFiniteGuard()
    guard.observe(4, {"total_loss": torch.tensor(1.0), "gan_loss": torch.tensor(0.5)})
    guard.check()
    guard.observe(5, {"total_loss": torch.tensor(float("nan")), "gan_loss": torch.tensor(0.5)})
    guard.observe(6, {"total_loss": torch.tensor(float("inf")), "gan_loss": torch.tensor(0.5)})
    with pytest.raises(NonFiniteLossError, match=r"step 5: total_loss=nan <-- non-finite, gan_loss=0.5"):
        guard.check()


class _TwoRankAccelerator:
    """Stands in for a 2-process accelerator whose other rank agrees: counts the verdict all-reduces."""
    num_processes, device = 2, torch.device("cpu")

    def __init__(self):
        self.reductions = 0

    def reduce(self, tensor, reduction):
        self.reductions += 1
        return tensor * 2


def test_nonfinite_guard_all_reduces_once_every_sync_every_iterations():
    accelerator = _TwoRankAccelerator()
    guard = NonFiniteGuard(accelerator, sync_every=10)
    for step in range(1, 10):  # iterations 1-9: no collective
        guard.check_due()
        guard.observe(step, {"loss": torch.tensor(1.0)})
    assert accelerator.reductions == 0
    guard.check_due()  # iteration 10
    assert accelerator.reductions == 1
    guard.observe(10, {"loss": torch.tensor(float("nan"))})
    for _ in range(9):  # found late, at the next synchronising iteration, naming the bad step
        guard.check_due()
    with pytest.raises(NonFiniteLossError, match=r"step 10: loss=nan"):
        guard.check_due()
    guard.observe(21, {"loss": torch.tensor(float("inf"))})
    with pytest.raises(NonFiniteLossError, match=r"step 21"):  # before a checkpoint: always, at once
        guard.check()


def test_nonfinite_guard_checks_every_iteration_on_one_process():
    guard = NonFiniteGuard()
    guard.observe(1, {"loss": torch.tensor(float("nan"))})
    with pytest.raises(NonFiniteLossError, match=r"step 1"):
        guard.check_due()
