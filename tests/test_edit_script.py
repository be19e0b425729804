"""scripts/edit.py end to end on a tiny random tokenizer + generator saved in the test, and its one-line errors."""
import importlib.util
import os

import numpy as np
import pytest
import torch
from PIL import Image

from modeling import build_generator, build_tokenizer
from utils.config import load_config
from utils.errors import MaskbitError, run_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["model.vq_model.token_size=6", "model.vq_model.hidden_channels=32", "model.vq_model.channel_mult=[1,2]",
        "model.vq_model.num_resolutions=2", "model.vq_model.num_res_blocks=1", "model.mlm_model.hidden_dim=32",
        "model.mlm_model.depth=1", "model.mlm_model.heads=4", "model.mlm_model.mlp_dim=64",
        "model.mlm_model.num_classes=10", "model.mlm_model.num_steps=3", "dataset.preprocessing.resolution=16",
        "edit.device=cpu"]


def _script():
    spec = importlib.util.spec_from_file_location("edit_script", os.path.join(ROOT, "scripts", "edit.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Checkpoints, a 20x24 input image (resized and centre-cropped to the model's 16x16 view) and masks."""
    root = tmp_path_factory.mktemp("edit")
    cfg = load_config(TINY)
    torch.manual_seed(0)
    torch.save(build_tokenizer(cfg).state_dict(), root / "tokenizer.bin")
    torch.save(build_generator(cfg).state_dict(), root / "generator.bin")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / "in.png")
    mask = np.zeros((20, 24), dtype=np.uint8)
    mask[5:12, 8:15] = 255
    Image.fromarray(mask).save(root / "mask.png")
    Image.fromarray(np.zeros((20, 24), dtype=np.uint8)).save(root / "black.png")
    Image.fromarray(np.full((9, 9), 255, dtype=np.uint8)).save(root / "small.png")
    args = TINY + [f"experiment.vqgan_checkpoint={root / 'tokenizer.bin'}",
                   f"experiment.generator_checkpoint={root / 'generator.bin'}", f"edit.image={root / 'in.png'}"]
    return root, args


def test_edit_script_writes_grid_and_panels(setup, capsys):
    from eval_stand_ins import assert_throughput_line

    root, args = setup
    script = _script()
    for name, option in [("box", "edit.box=[3,5,5,3]"), ("mask", f"edit.mask={root / 'mask.png'}"),
                         ("outpaint", "edit.outpaint=[0,0,4,2]")]:
        out = script.main(args + [option, "edit.class_id=7", "edit.num_samples=3", "edit.batch_size=2",
                                  f"edit.output={root / name}"])
        assert Image.open(out / "grid.png").size == (2 + 6 * 18, 2 + 18)  # input, overlay, reconstruction, 3 edits
        for panel in ["input", "mask_overlay", "reconstruction", "edit_0", "edit_1", "edit_2"]:
            assert Image.open(out / "in" / f"{panel}.png").size == (16, 16), (name, panel)
        assert assert_throughput_line(capsys.readouterr().out, 1).startswith("edited images: 1 input(s) x 3,")
    edits = [np.asarray(Image.open(root / "box" / "in" / f"edit_{k}.png")) for k in range(3)]
    assert not np.array_equal(edits[0], edits[1])  # a seed per edit
    overlay = np.asarray(Image.open(root / "box" / "in" / "mask_overlay.png")).astype(int)
    source = np.asarray(Image.open(root / "box" / "in" / "input.png")).astype(int)
    assert (overlay != source).any(axis=2)[3:8, 5:8].all() and not (overlay != source)[8:].any()


@pytest.mark.parametrize("extra,message", [
    (["edit.box=[3,5,5,3]", "edit.class_id=10"], "edit.class_id=10 is outside [0, 10)"),
    (["edit.box=[16,0,4,4]", "edit.class_id=1"], "covers nothing of the 16x16 image"),
    (["edit.mask=MASK/black.png", "edit.class_id=1"], "selects no pixel to regenerate"),
    (["edit.mask=MASK/small.png", "edit.class_id=1"], "edit.mask is 9x9 (width x height) but 'in.png' is 24x20"),
    (["edit.box=[3,5,5,3]"], "set edit.class_id=ID"),
    (["edit.box=[3,5,5,3]", "edit.outpaint=[0,0,4,2]", "edit.class_id=1"], "set exactly one of edit.mask"),
    (["config=configs/titok/titok_l32.yaml", "edit.box=[3,5,5,3]", "edit.class_id=1"], "no spatial layout"),
])
def test_edit_script_errors_are_one_line(setup, capsys, extra, message):
    root, args = setup
    script = _script()
    extra = [e.replace("MASK", str(root)).replace("config=", f"config={ROOT}/") for e in extra]
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: script.main(args + extra + [f"edit.output={root / 'err'}"]), prog="edit.py")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("edit.py: error: ") and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_two_processes_write_the_same_pngs_as_one(setup, tmp_path):
    """A folder under `accelerate launch` (2 CPU processes, gloo): each edit depends only on its seed."""
    import socket
    import subprocess
    import sys

    root, args = setup
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in ["a.png", "b.png", "sub/c.png"]:
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / name)
    common = [a for a in args if not a.startswith("edit.image=")] + [
        f"edit.image={folder}", "edit.box=[4,4,6,6]", "edit.class_id=3", "edit.num_samples=2"]
    one = _script().main(common + [f"edit.output={tmp_path / 'one'}"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
               str(port), os.path.join(ROOT, "scripts", "edit.py")] + common + [f"edit.output={tmp_path / 'two'}"]
    env = dict(os.environ, ACCELERATE_USE_CPU="1", PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    from eval_stand_ins import assert_throughput_line
    assert assert_throughput_line(result.stdout, 2).startswith("edited images: 3 input(s) x 2,")
    written = sorted(p.relative_to(one) for p in one.rglob("*.png"))
    assert len(written) == 1 + 3 * 5 and (one / "sub__c" / "edit_1.png").is_file()
    for path in written:
        assert (one / path).read_bytes() == (tmp_path / "two" / path).read_bytes(), path


V2_TINY = [f"config={ROOT}/configs/maskgit_pytorch/maskgit_pytorch_v2_tiny_256.yaml", "model.maskgit.hidden_dim=32",
           "model.maskgit.depth=1", "model.maskgit.heads=2", "model.maskgit.mlp_dim=64", "model.maskgit.nclass=10",
           "model.vq_model.codebook_size=64", "model.vq_model.hidden_channels=32", "model.vq_model.channel_mult=[1,2]",
           "model.vq_model.num_res_blocks=1", "dataset.preprocessing.resolution=16", "model.maskgit_sampler.step=4",
           "edit.device=cpu"]


def test_edit_script_with_a_halton_maskgit_v2(setup, tmp_path):
    """The CLI end to end with a reduced Halton-MaskGIT v2 transformer + LlamaGen VQ: the box is regenerated with
    the Halton sampler of `model.maskgit_sampler`, everything farther than one token from it is the
    reconstruction."""
    root, _ = setup
    cfg = load_config(V2_TINY)
    torch.manual_seed(0)
    torch.save(build_tokenizer(cfg).state_dict(), tmp_path / "vq.bin")
    torch.save(build_generator(cfg).state_dict(), tmp_path / "v2.bin")
    args = V2_TINY + [f"experiment.vqgan_checkpoint={tmp_path / 'vq.bin'}",
                      f"experiment.generator_checkpoint={tmp_path / 'v2.bin'}", f"edit.image={root / 'in.png'}",
                      "edit.box=[4,4,6,6]", "edit.class_id=7", "edit.num_samples=2", f"edit.output={tmp_path / 'out'}"]
    out = _script().main(args)
    assert Image.open(out / "grid.png").size == (2 + 5 * 18, 2 + 18)
    panels = {name: np.asarray(Image.open(out / "in" / f"{name}.png")).astype(int)
              for name in ["reconstruction", "edit_0", "edit_1"]}
    far = np.ones((16, 16), dtype=bool)
    far[4 - 2:10 + 2, 4 - 2:10 + 2] = False  # the regenerated tokens cover pixels 4-9; blending reaches 2 px out
    for k in range(2):
        assert (panels[f"edit_{k}"][far] == panels["reconstruction"][far]).all()
    assert (panels["edit_0"] != panels["edit_1"]).any()  # a seed per edit
    with pytest.raises(MaskbitError, match="no bit splits"):
        _script().main(args + ["edit.splits=[0]"])
