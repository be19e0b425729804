"""Runs that cannot be mixed up (issue 18, items 2-5), on the tiny tokenizer: run.json and resume rules, overwrite,
the one-writer lock, config hyper-parameters on resume, the NaN advice, corrupt checkpoints, the parameter guard.
Each case checks the error or behaviour and that nothing already written was lost or changed."""
import json
import subprocess
import sys
import time

import pytest
import torch

from conftest import reset_accelerate_state
from data import write_synthetic_shards
from training import NonFiniteLossError, TokenizerTrainer
from training.run_identity import RunMismatchError
from training.run_lock import LOCK_FILE, RunLockedError
from train_utils import REPO, assert_bitwise_equal, run_script, subprocess_env, tiny_config, write_yaml

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")
QUIET = {"eval_every": 100, "generate_every": 100, "log_every": 3}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_synthetic_shards(str(tmp_path_factory.mktemp("shards")), num_train=48, num_val=4, resolution=16,
                                  seed=0)


def train(shards, out, steps=3, experiment=None, **sections):
    cfg = tiny_config(shards, out, experiment={**QUIET, "save_every": 3, **(experiment or {})},
                      training={"max_train_steps": steps, **sections.pop("training", {})}, **sections)
    trainer = TokenizerTrainer(cfg)
    try:
        trainer.train()
    finally:
        reset_accelerate_state()
    return trainer


def snapshot(folder):
    """{relative path: (size, mtime_ns)} of every file below `folder`."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def log_text(out):
    return (out / "logs" / "log.txt").read_text()


def test_run_json_and_an_allowed_change_on_resume(shards, tmp_path):
    out = tmp_path / "run"
    train(shards, out, steps=3)
    first = json.loads((out / "run.json").read_text())
    assert {"run_id", "config_hash", "code_version", "created", "last_resumed"} <= first.keys()
    assert first["history"][0]["event"] == "started" and first["last_resumed"] is None
    train(shards, out, steps=6, optimizer={"params": {"learning_rate": 5e-4, "discriminator_learning_rate": 1e-3}})
    second = json.loads((out / "run.json").read_text())
    assert second["run_id"] == first["run_id"] and second["config_hash"] == first["config_hash"]
    event = second["history"][-1]
    assert event["event"] == "resumed" and event["step"] == 3 and second["last_resumed"]
    assert event["changes"]["optimizer.params.learning_rate"] == {"before": 1e-3, "now": 5e-4}
    assert event["changes"]["training.max_train_steps"] == {"before": 3, "now": 6}
    assert "Config change on resume: optimizer.params.learning_rate: 0.001 -> 0.0005" in log_text(out)
    assert (out / "checkpoint-6").is_dir()


def test_architecture_change_stops_before_writing_anything(shards, tmp_path):
    out = tmp_path / "run"
    train(shards, out, steps=3)
    before = snapshot(out)
    config_bytes = (out / "config.yaml").read_bytes()
    cfg = tiny_config(shards, out, experiment=QUIET, training={"max_train_steps": 6})
    cfg["model"]["vq_model"]["hidden_channels"] = 16
    with pytest.raises(RunMismatchError, match=r"model\.vq_model\.hidden_channels: 32 in the run, 16 now"):
        TokenizerTrainer(cfg)
    assert snapshot(out) == before and (out / "config.yaml").read_bytes() == config_bytes
    assert not (out / LOCK_FILE).exists()  # released on the error

    # the script form: exit code 2, one line naming the key, no traceback, and still nothing written
    result = run_script([f"config={write_yaml(cfg, tmp_path / 'changed.yaml')}"], timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "model.vq_model.hidden_channels" in result.stderr and "Traceback" not in result.stderr
    assert snapshot(out) == before


def test_resume_false_refuses_and_overwrite_moves_the_old_run_aside(shards, tmp_path):
    out = tmp_path / "run"
    train(shards, out, steps=3)
    old_weights = (out / "pytorch_model.bin").read_bytes()
    before = snapshot(out)
    with pytest.raises(RunMismatchError, match="experiment.overwrite=true"):
        train(shards, out, steps=3, experiment={"resume": False})
    assert snapshot(out) == before
    train(shards, out, steps=6, experiment={"resume": False, "overwrite": True, "save_every": 6})
    moved = [p for p in tmp_path.iterdir() if p.name.startswith("run.replaced-")]
    assert len(moved) == 1 and (moved[0] / "pytorch_model.bin").read_bytes() == old_weights
    assert (moved[0] / "checkpoint-3").is_dir() and snapshot(moved[0]).keys() == before.keys()
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-6"]  # nothing of the old run mixed in
    record = json.loads((out / "run.json").read_text())
    assert record["history"][-1]["previous_run_moved_to"] == str(moved[0])


def test_second_writer_fails_at_once_naming_the_holder_and_stale_locks_are_taken_over(shards, tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from training.run_lock import RunLock; "
                               "RunLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(60)", str(out)],
        cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        start = time.time()
        with pytest.raises(RunLockedError, match=rf"pid {holder.pid} on host "):
            train(shards, out, steps=3)
        assert time.time() - start < 30
        assert not any(out.glob("checkpoint-*")) and not (out / "run.json").exists()
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    # the killed holder left its lock file: the next run detects it as stale, says so and proceeds
    assert (out / LOCK_FILE).exists()
    train(shards, out, steps=3)
    assert f"Took over the stale lock of a run that ended without releasing it: pid {holder.pid}" in log_text(out)
    assert (out / "checkpoint-3").is_dir() and not (out / LOCK_FILE).exists()


def test_config_hyper_parameters_apply_on_resume_unless_checkpoint_is_asked(shards, tmp_path):
    out = tmp_path / "run"
    train(shards, out, steps=3, training={"max_train_steps": 3})
    lr, wd = 3e-4, 0.05
    changed = dict(optimizer={"params": {"learning_rate": lr, "discriminator_learning_rate": lr, "weight_decay": wd}})
    cfg = tiny_config(shards, out, experiment=QUIET, training={"max_train_steps": 10}, **changed)
    trainer = TokenizerTrainer(cfg)
    assert trainer.resume() and trainer.global_step == 3
    scheduler = trainer.schedulers["tokenizer"]
    group = trainer.optimizers["tokenizer"].param_groups[0]
    assert scheduler.base_lrs == [lr] and group["weight_decay"] == wd
    assert group["lr"] == lr * scheduler.lr_lambdas[0](3)  # this config's 10-step schedule at the restored step
    assert "peak lr 0.0003 (checkpoint 0.001, config 0.0003)" in log_text(out) and "from the config" in log_text(out)
    trainer.release()
    reset_accelerate_state()

    cfg["experiment"]["resume_optimizer_hparams"] = "checkpoint"
    trainer = TokenizerTrainer(cfg)
    assert trainer.resume()
    group = trainer.optimizers["tokenizer"].param_groups[0]
    assert trainer.schedulers["tokenizer"].base_lrs == [1e-3] and group["weight_decay"] == 1e-4
    trainer.release()


def test_the_nan_advice_works_as_written(shards, tmp_path):
    """A resume with an absurd lr diverges; the message says to lower the lr and resume, and doing so works."""
    out = tmp_path / "run"
    train(shards, out, steps=3)
    with pytest.raises(NonFiniteLossError, match="Lower the learning rate") as err:
        train(shards, out, steps=6, optimizer={"params": {"learning_rate": 1e30}})
    assert "then resume" in str(err.value)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3"]  # nothing diverged was saved
    train(shards, out, steps=6, optimizer={"params": {"learning_rate": 1e-3}})
    state = torch.load(out / "checkpoint-6" / "unwrapped_model" / "pytorch_model.bin", weights_only=True)
    assert all(v.isfinite().all() for v in state.values() if v.is_floating_point())


def test_a_damaged_checkpoint_is_moved_aside_and_the_previous_one_resumes_bitwise(shards, tmp_path):
    straight, damaged = tmp_path / "straight", tmp_path / "damaged"
    train(shards, straight, steps=6)
    train(shards, damaged, steps=6)
    state_file = damaged / "checkpoint-6" / "training_state.pt"
    state_file.write_bytes(state_file.read_bytes()[:1000])  # truncated on disk
    (damaged / "pytorch_model.bin").unlink()
    train(shards, damaged, steps=6)
    assert (damaged / "corrupt-checkpoint-6" / "training_state.pt").stat().st_size == 1000  # kept for inspection
    log = log_text(damaged)
    assert f"Checkpoint {damaged / 'checkpoint-6'} could not be loaded" in log
    assert f"Resumed from {damaged / 'checkpoint-3'} at step 3" in log
    load = lambda p: torch.load(p, map_location="cpu", weights_only=True)  # noqa: E731
    assert_bitwise_equal(load(straight / "pytorch_model.bin"), load(damaged / "pytorch_model.bin"), "export")


def test_non_finite_parameters_are_never_checkpointed(shards, tmp_path):
    out = tmp_path / "run"
    trainer = TokenizerTrainer(tiny_config(shards, out, experiment=QUIET))
    with torch.no_grad():
        next(trainer.unwrap("tokenizer").parameters()).view(-1)[0] = float("inf")
    with pytest.raises(NonFiniteLossError, match="Non-finite parameters in the tokenizer model"):
        trainer.save_checkpoint()
    assert not list(out.glob("*checkpoint-*"))
    trainer.release()
