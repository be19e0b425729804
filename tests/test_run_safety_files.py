"""Atomic files (issue 18, item 1): a write that dies leaves the previous file or nothing, never a partial file;
the quickstart trusts only its stage markers and `--fresh` removes only what the quickstart wrote."""

import pytest
import torch

from train_utils import load_script
from utils.atomic import atomic_path, atomic_torch_save, atomic_write_json, atomic_write_text


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "weights.bin"
    atomic_torch_save({"w": torch.ones(3)}, path)
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"\0" * 10)  # half a file, then the writer dies
            raise RuntimeError("killed")
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.bin"]
    atomic_write_json(tmp_path / "m.json", {"a": 1})
    atomic_write_text(tmp_path / "m.json", "replaced")
    assert (tmp_path / "m.json").read_text() == "replaced"


def test_a_zero_byte_export_is_not_a_finished_quickstart_stage(tmp_path):
    qs = load_script("quickstart")
    weights = tmp_path / "tokenizer" / "pytorch_model.bin"
    weights.parent.mkdir()
    weights.write_bytes(b"")  # what a kill during a non-atomic torch.save used to leave
    assert not qs.stage_done(tmp_path, "tokenizer", weights)
    qs.mark_stage_done(tmp_path, "tokenizer", weights, 1.0)
    assert qs.stage_done(tmp_path, "tokenizer", weights)
    weights.unlink()  # a marker without its output is not done either
    assert not qs.stage_done(tmp_path, "tokenizer", weights)


def test_fresh_removes_only_the_quickstarts_own_outputs(tmp_path):
    qs = load_script("quickstart")
    for name in ("data/train/x.tar", "tokenizer/checkpoint-2/metadata.json", ".quickstart/data.done",
                 "metrics.json", "samples.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / "my_notes.txt").write_text("keep me")
    (tmp_path / "other_run").mkdir()
    qs.remove_own_outputs(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my_notes.txt", "other_run"]
    assert (tmp_path / "my_notes.txt").read_text() == "keep me"
