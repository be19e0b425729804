"""load_pretrained: every accepted format round-trips; mismatches and unsafe pickles give clear errors."""
import sys
import types

import pytest
import torch
from safetensors.torch import save_file

from modeling import CheckpointMismatchError, build_tokenizer, load_pretrained
from modeling.taming import TamingVQGAN
from utils.weights import MissingWeightsError




def tiny(token_size=6, seed=0, **vq):
    torch.manual_seed(seed)
    cfg = dict(quantizer_type="lookup-free", token_size=token_size, hidden_channels=32, channel_mult=[1, 2],
               num_resolutions=2, num_res_blocks=1)
    cfg.update(vq)
    return build_tokenizer({"model": {"vq_model": cfg}})


def assert_same_weights(model, reference):
    ours, theirs = model.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


@pytest.mark.parametrize("filename", ["weights.bin", "weights.pt", "weights.safetensors"])
def test_plain_state_dict_files(tmp_path, filename):
    source = tiny(seed=1)
    path = tmp_path / filename
    if filename.endswith(".safetensors"):
        save_file(source.state_dict(), path)
    else:
        torch.save(source.state_dict(), path)
    model = load_pretrained(tiny(seed=2).train(), path)
    assert_same_weights(model, source)
    assert not model.training


@pytest.mark.parametrize("weights_name", ["pytorch_model.bin", "model.safetensors"])
def test_folder_with_weights(tmp_path, weights_name):
    source = tiny(seed=1)
    if weights_name.endswith(".bin"):
        torch.save(source.state_dict(), tmp_path / weights_name)
    else:
        save_file(source.state_dict(), tmp_path / weights_name)
    assert_same_weights(load_pretrained(tiny(seed=2), str(tmp_path)), source)


def test_accelerate_checkpoint_folder_prefers_ema(tmp_path):
    ema, raw = tiny(seed=1), tiny(seed=2)
    folder = tmp_path / "checkpoint-20000"
    for sub, model in (("ema_model", ema), ("unwrapped_model", raw)):
        (folder / sub).mkdir(parents=True)
        torch.save(model.state_dict(), folder / sub / "pytorch_model.bin")
    save_file(tiny(seed=3).state_dict(), folder / "model.safetensors")  # accelerate's own copy of the raw model
    (folder / "metadata.json").write_text('{"global_step": 20000}')
    assert_same_weights(load_pretrained(tiny(seed=4), folder), ema)
    (folder / "ema_model" / "pytorch_model.bin").unlink()
    assert_same_weights(load_pretrained(tiny(seed=4), folder), raw)


def _fake_lightning_class():
    """A class that pickles as pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint."""
    name = "pytorch_lightning.callbacks.model_checkpoint"
    module = types.ModuleType(name)
    cls = type("ModelCheckpoint", (), {"__module__": name})
    module.ModelCheckpoint = cls
    return name, module, cls


def test_taming_lightning_ckpt_drops_loss_weights(tmp_path, monkeypatch):
    source = TamingVQGAN(codebook_size=16, token_size=8, ch=32, ch_mult=(1, 2), num_res_blocks=1,
                         attn_resolutions=(8,), resolution=16, z_channels=32)
    name, module, cls = _fake_lightning_class()
    callback = cls()
    callback.best_model_score = torch.tensor(0.5)
    with monkeypatch.context() as patch:
        for parent in ("pytorch_lightning", "pytorch_lightning.callbacks"):
            patch.setitem(sys.modules, parent, types.ModuleType(parent))
        patch.setitem(sys.modules, name, module)
        checkpoint = {"state_dict": {**source.state_dict(), "loss.discriminator.main.0.weight": torch.ones(2)},
                      "global_step": 7, "callbacks": {cls: {"best": 1.0}}, "checkpoint_callback": callback}
        torch.save(checkpoint, tmp_path / "last.ckpt")
    assert "pytorch_lightning.callbacks.model_checkpoint" not in sys.modules  # the loader never imports it
    target = TamingVQGAN(codebook_size=16, token_size=8, ch=32, ch_mult=(1, 2), num_res_blocks=1,
                         attn_resolutions=(8,), resolution=16, z_channels=32)
    assert_same_weights(load_pretrained(target, tmp_path / "last.ckpt"), source)


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize("suffix", [".bin", ".ckpt"])
def test_pickled_objects_are_refused(tmp_path, suffix, capsys):
    path = tmp_path / f"evil{suffix}"
    torch.save({"state_dict": tiny().state_dict(), "payload": Payload()}, path)
    with pytest.raises(ValueError, match="refused|weights-only"):
        load_pretrained(tiny(), path)
    assert "must never run" not in capsys.readouterr().out


def test_wrong_config_error_names_the_right_config(tmp_path):
    torch.save(tiny(token_size=6).state_dict(), tmp_path / "six_bits.bin")
    with pytest.raises(CheckpointMismatchError) as err:
        load_pretrained(tiny(token_size=7), tmp_path / "six_bits.bin")
    message = str(err.value)
    assert "encoder.conv_out.weight: checkpoint (6, 64, 1, 1) vs model (7, 64, 1, 1)" in message
    assert "lookup-free" in message and "model.vq_model.token_size=6" in message
    vq = tiny(quantizer_type="lookup", codebook_size=16, token_size=8)
    with pytest.raises(CheckpointMismatchError, match="missing keys.*quantize.codebook"):
        load_pretrained(tiny(), _save(vq, tmp_path / "vq.bin"))


def test_official_checkpoint_is_recognised(tmp_path):
    with torch.device("meta"):
        official = build_tokenizer({"model": {"vq_model": {"token_size": 14}}}).state_dict()
    from modeling.checkpoint_inspect import describe_checkpoint
    assert "configs/tokenizer/maskbit_tokenizer_14bit.yaml" in describe_checkpoint(official)


def _save(model, path):
    torch.save(model.state_dict(), path)
    return path


def test_rename_keys_and_wrapper_prefixes(tmp_path):
    source = tiny(seed=1)
    renamed = {k.replace("encoder.", "old_encoder.", 1): v for k, v in source.state_dict().items()}
    torch.save(renamed, tmp_path / "renamed.bin")
    assert_same_weights(load_pretrained(tiny(), tmp_path / "renamed.bin", rename_keys={"old_encoder": "encoder"}),
                        source)
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, tmp_path / "ddp.bin")
    assert_same_weights(load_pretrained(tiny(), tmp_path / "ddp.bin"), source)


def test_missing_paths_and_offline_hub_give_actionable_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pretrained(tiny(), tmp_path / "nope.bin")
    with pytest.raises(FileNotFoundError, match="ema_model/pytorch_model.bin"):
        load_pretrained(tiny(), tmp_path)
    monkeypatch.setenv("MASKBIT_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(MissingWeightsError, match="maskbit_tokenizer_12bit.bin.*local path"):
        load_pretrained(tiny(), "hf://markweberdev/maskbit/maskbit_tokenizer_12bit.bin")
