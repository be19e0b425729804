"""Stage-II training with two CPU processes: ranks stay identical, and SIGKILL + resume is exact (bitwise)."""
import shutil
import time

import pytest

from data import write_synthetic_shards
from helpers_generator_training import (REPO, generator_config, kill_group, launch_command, load,  # noqa: F401
                                        make_token_folder, run, save_random_tokenizer, start)
from train_utils import assert_bitwise_equal, write_yaml

N = 4  # checkpoint every N steps; runs go to 2N


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("generator_ddp")
    shards = write_synthetic_shards(str(root / "shards"), num_train=48, num_val=4, resolution=16, seed=0)
    base = generator_config(root / "unused", shards, root / "tokenizer.bin", root / "tokens",
                            experiment={"save_every": N, "generate_every": N, "log_every": 2},
                            training={"max_train_steps": 2 * N})
    save_random_tokenizer(base, root / "tokenizer.bin")
    make_token_folder(base)
    return root, base


def config_file(setup, name):
    root, base = setup
    cfg = {**base, "experiment": {**base["experiment"], "output_dir": str(root / name)}}
    return root / name, f"config={write_yaml(cfg, root / f'{name}.yaml')}"


def test_two_processes_stay_identical_and_resume_exactly(setup):
    straight, straight_cfg = config_file(setup, "straight")
    result = run(launch_command(REPO / "tests" / "helpers" / "train_generator_and_dump_ranks.py", [straight_cfg]))
    assert result.returncode == 0, result.stderr[-4000:]
    rank0, rank1 = load(straight / "rank0.pt"), load(straight / "rank1.pt")
    assert_bitwise_equal(rank0, rank1, "rank weights")
    assert "2 process(es)" in (straight / "logs" / "log.txt").read_text()
    assert sorted(p.name for p in (straight / "train_generated_images").iterdir()) == ["00000004.png", "00000008.png"]

    killed, killed_cfg = config_file(setup, "killed")
    command = launch_command(REPO / "scripts" / "train_maskbit.py", [killed_cfg])
    process = start(command)
    deadline = time.time() + 240
    while not (killed / f"checkpoint-{N}" / "metadata.json").exists():
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "no checkpoint written in time"
        time.sleep(0.01)
    kill_group(process)
    # whatever the kill interrupted after checkpoint N (maybe the whole run), resume from N
    shutil.rmtree(killed / f"checkpoint-{2 * N}", ignore_errors=True)
    (killed / "pytorch_model.bin").unlink(missing_ok=True)

    resumed = run(command)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert f"Resumed from {killed / f'checkpoint-{N}'} at step {N}" in resumed.stdout
    a, b = straight / f"checkpoint-{2 * N}", killed / f"checkpoint-{2 * N}"
    for name in ("unwrapped_model/pytorch_model.bin", "ema_model/pytorch_model.bin", "training_state.pt",
                 "random_states_0.pt", "random_states_1.pt"):
        assert_bitwise_equal(load(a / name), load(b / name), name)
    assert_bitwise_equal(load(straight / "pytorch_model.bin"), load(killed / "pytorch_model.bin"), "export")
