"""TiTok in the house: presets, token space, loading a released-format hub folder offline, and clear refusals where
the project does not run TiTok yet (layouts of every preset: tests/test_registry.py)."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modeling import build_generator, create_model, sample, token_space
from modeling.registry import preset_config
from utils.errors import MaskbitError

# a reduced S-128-like TiTok (two-stage layout: pixel decoder included) on 64 px images with 8 latent tokens
SMALL = {"vit_enc_width": 32, "vit_enc_layers": 1, "vit_enc_heads": 2, "vit_dec_width": 32, "vit_dec_layers": 1,
         "vit_dec_heads": 2, "pixel_vqgan_hidden_channels": 32, "num_latent_tokens": 8,
         "dataset.preprocessing.crop_size": 64}


def test_token_space_and_generator_follow_the_tokenizer():
    space = token_space(preset_config("titok_s128"))
    assert (space.codebook_size, space.token_bits, space.grid, space.seq_len) == (4096, 12, (128,), 128)
    assert token_space(preset_config("titok_sl256_vq8k")).grid == (256,)
    with torch.device("meta"):
        generator = build_generator(preset_config("titok_l32"))
    assert (type(generator).__name__, generator.image_seq_len, generator.codebook_size) == ("ImageBert", 32, 4096)
    with pytest.raises(ValueError, match="VAE without a codebook"):
        with torch.device("meta"):
            build_generator(preset_config("titok_maskgit", {"model.vq_model.quantize_mode": "vae",
                                                            "model.vq_model.finetune_decoder": False}))
    with pytest.raises(ValueError, match="image_seq_len"):
        with torch.device("meta"):
            build_generator(preset_config("titok_l32", {"model.generator.image_seq_len": 64}))


def test_official_sampling_defaults_per_model():
    g = {name: preset_config(name).model.generator for name in ("titok_l32", "titok_b64", "titok_s128")}
    assert [(c.num_steps, c.randomize_temperature, c.guidance_scale, c.guidance_decay) for c in g.values()] == [
        (8, 9.5, 4.5, "linear"), (8, 11.0, 3.0, "linear"), (64, 2.8, 6.9, "power-cosine")]
    assert all(c.softmax_temperature_annealing for c in g.values())  # as the official ImageNet sampler


def test_released_hub_folder_loads_offline(tmp_path, monkeypatch):
    """A `yucornetto/tokenizer_titok_*`-style repo (config.json + model.safetensors) in the hub cache loads strictly
    through hf:// without the network."""
    import huggingface_hub.constants

    torch.manual_seed(0)
    model = create_model("titok_s128", **SMALL)
    snapshot = tmp_path / "models--someone--tokenizer_titok_tiny" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    (snapshot / "config.json").write_text(json.dumps({"model": {"vq_model": {"num_latent_tokens": 8}}}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(snapshot / "model.safetensors"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("MASKBIT_OFFLINE", "1")
    loaded = create_model("titok_s128", pretrained="hf://someone/tokenizer_titok_tiny", **SMALL)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.eval()(x)[0], loaded(x)[0])
    with pytest.raises(MaskbitError, match="offline"):
        create_model("titok_s128", pretrained="hf://someone/not_in_the_cache", **SMALL)


def test_what_the_project_does_not_run_yet_says_so(tmp_path, fresh_accelerate_state):
    from training import TokenizerTrainer

    cfg = preset_config("titok_s128", {**SMALL, "experiment.output_dir": str(tmp_path), "experiment.logger": "tensorboard"})
    with pytest.raises(MaskbitError, match="own recipe"):
        TokenizerTrainer(cfg)
    with torch.device("meta"):
        generator = create_model("titok_l32__generator")
    with pytest.raises(MaskbitError, match=r"model.generate"):
        sample(generator, None, [0])


@pytest.mark.parametrize("name", ["titok_s128", "titok_bl64_vae_c16"])
def test_eval_tokenizer_script_evaluates_titok(name, tmp_path):
    """scripts/eval_tokenizer.py on a reduced TiTok (VQ: PSNR, SSIM and codebook metrics; VAE: no codebook)."""
    import importlib.util

    from data import write_synthetic_shards
    from utils.config import save_config

    shards = write_synthetic_shards(str(tmp_path / "data"), num_train=4, num_val=6, resolution=64, seed=0)
    overrides = {**SMALL, "dataset.params.eval_shards_path_or_url": shards["val"],
                 "dataset.params.num_workers_per_gpu": 0, "training.per_gpu_batch_size": 4,
                 "evaluation.compute_inception": False, "evaluation.compute_lpips": False}
    cfg = preset_config(name, overrides)
    torch.save(create_model(name, **SMALL).state_dict(), tmp_path / "tok.bin")
    save_config(cfg, tmp_path / "cfg.yaml")
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("eval_tokenizer", root / "scripts" / "eval_tokenizer.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    metrics = script.main([f"config={tmp_path / 'cfg.yaml'}", f"experiment.vqgan_checkpoint={tmp_path / 'tok.bin'}",
                           f"experiment.output_dir={tmp_path / 'eval'}"])
    assert metrics["PSNR"] > 0 and 0 < metrics["SSIM"] <= 1
    assert ("CodebookUsage" in metrics) == (name == "titok_s128")
    assert (tmp_path / "eval" / "reconstructions.png").is_file()


def test_eval_maskbit_script_samples_titok_generators(tmp_path):
    """scripts/eval_maskbit.py with a reduced TiTok tokenizer + generator: the ADM .npz from `generate` with the
    config's sampling values, the same samples for any evaluation batch size (per-sample seeds)."""
    import importlib.util

    import numpy as np

    from utils.config import save_config

    gen = {"model.generator.hidden_size": 32, "model.generator.num_hidden_layers": 1,
           "model.generator.num_attention_heads": 2, "model.generator.intermediate_size": 64,
           "model.generator.image_seq_len": 8, "model.generator.condition_num_classes": 5,
           "model.generator.num_steps": 4}
    overrides = {**SMALL, **gen, "evaluation.compute_inception": False, "evaluation.num_samples": 6}
    torch.manual_seed(0)
    torch.save(create_model("titok_s128", **SMALL).state_dict(), tmp_path / "tok.bin")
    generator = create_model("titok_s128__generator", **gen, **{"model.vq_model.num_latent_tokens": 8,
                                                                 "dataset.preprocessing.crop_size": 64})
    torch.save(generator.state_dict(), tmp_path / "gen.bin")
    save_config(preset_config("titok_s128", overrides), tmp_path / "cfg.yaml")
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("eval_maskbit", root / "scripts" / "eval_maskbit.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    common = [f"config={tmp_path / 'cfg.yaml'}", f"experiment.vqgan_checkpoint={tmp_path / 'tok.bin'}",
              f"experiment.generator_checkpoint={tmp_path / 'gen.bin'}"]
    runs = {}
    for batch in (2, 3):
        out = tmp_path / f"batch{batch}"
        assert script.main(common + [f"evaluation.batch_size={batch}", f"experiment.output_dir={out}"]) == {
            "NumSamples": 6}
        runs[batch] = np.load(out / "samples_6x64x64x3.npz")
    assert runs[2]["arr_0"].shape == (6, 64, 64, 3) and runs[2]["arr_0"].dtype == np.uint8
    assert np.array_equal(runs[2]["arr_0"], runs[3]["arr_0"]) and np.array_equal(runs[2]["arr_1"], runs[3]["arr_1"])
    manifest = json.loads((tmp_path / "batch2" / "samples" / "manifest.json").read_text())
    assert manifest["sampling"]["guidance_decay"] == "power-cosine" and manifest["num_classes"] == 5
