"""MaskGIT-pytorch v1 / Halton-MaskGIT v2 end to end: the family's real (reduced, random) transformers sampled by
each of their samplers through the registered recipe (`modeling.build_sampler`), decoded by the family's reduced
VQGANs; with injected noise, each run equals the restated official procedure of test_maskgit_pytorch_sampling."""
import pytest
import torch

from modeling import build_generator, build_sampler, build_tokenizer, generation_settings
from modeling.maskgit_pytorch import sample
from modeling.maskgit_pytorch.sampling_recipe import FIELDS
from modeling.registry import preset_config
from test_maskgit_pytorch_sampling import (G, K, assert_same_run, make_noise, official_halton, official_v1,
                                           official_v2_confidence)

PRESETS = {1: "maskgit_pytorch_v1_base_256", 2: "maskgit_pytorch_v2_tiny_256"}
# K codes on a G x G grid: 16 px images through 3 VQGAN levels (downsampling 4)
REDUCED = {"hidden_dim": 32, "depth": 2, "heads": 2, "mlp_dim": 64, "nclass": 5, "model.vq_model.codebook_size": K,
           "model.vq_model.hidden_channels": 32, "model.vq_model.channel_mult": [1, 2, 2],
           "model.vq_model.num_res_blocks": 1, "dataset.preprocessing.resolution": 4 * G}
LABELS = torch.tensor([0, 3, 4])


def reduced_models(version: int, scheduler: str, mask_value=None, **sampler):
    config = preset_config(PRESETS[version], {**REDUCED, "mask_value": mask_value,
                                              "model.maskgit_sampler.scheduler": scheduler,
                                              **{f"model.maskgit_sampler.{k}": v for k, v in sampler.items()}})
    torch.manual_seed(version)
    generator, vqgan = build_generator(config).eval(), build_tokenizer(config).eval()
    with torch.no_grad():  # sharper logits than the init, so that the draws depend on the context
        for p in generator.parameters():
            p.normal_(0, 0.5)
    return config, generator, vqgan


@pytest.mark.parametrize("version,scheduler,mask_value", [
    (1, "confidence", None), (1, "confidence", -1), (2, "confidence", None), (2, "halton", None)])
def test_registered_sampler_on_the_real_transformers(version, scheduler, mask_value):
    """mask_value -1: a v1 "noise" model (run_noise_big.sh), which starts from random codes."""
    config, generator, vqgan = reduced_models(version, scheduler, mask_value, step=4, w=1.5)
    assert (generator.codebook_size, generator.grid_size) == (K, G)
    settings = generation_settings(config)
    assert (settings["version"], settings["scheduler"], settings["step"], settings["w"]) == (version, scheduler, 4, 1.5)

    # the recipe: seeded samples, clamped to [0, K-1], decoded to [0, 1] (v2 also clamps the images)
    images = build_sampler(config, generator, vqgan)(LABELS, [7, 8, 9])
    options = {k: settings[k] for k in ("version", "scheduler", *FIELDS) if k in settings}
    code = sample(generator, LABELS, seeds=[7, 8, 9], mask_value=mask_value, **options)["code"]
    with torch.no_grad():
        expected = (vqgan.decode_code(code.clamp(0, K - 1)) + 1) / 2
    expected = expected.clamp(0, 1) if version == 2 else expected
    assert images.shape == (3, 3, 4 * G, 4 * G)
    torch.testing.assert_close(images, expected, rtol=0, atol=0)

    # the same settings with injected noise, step by step against the restated official sampler
    noise = make_noise(seed=version)
    ours = sample(generator, LABELS, noise=noise, mask_value=mask_value, **options)
    with torch.no_grad():  # sm_temp 1.0, r_temp 4.5: the official defaults
        if scheduler == "halton":
            reference = official_halton(generator, LABELS, noise, 4, 1.5)
        elif version == 1:
            reference = official_v1(generator, LABELS, noise, 4, 1.5, 1.0, 4.5, random_start=mask_value is not None)
        else:
            reference = official_v2_confidence(generator, LABELS, noise, 4, 1.5, 1.0, 4.5)
    assert_same_run(ours, reference)
    assert len({tuple(c.flatten().tolist()) for c in ours["codes"]}) > 1  # the steps do draw different tokens


def test_eval_script_samples_a_v1_transformer_with_its_protocol(tmp_path):
    """scripts/eval_maskbit.py on a reduced v1 config: the recipe's settings recorded, samples written as the ADM
    .npz, evaluation.protocol=maskgit_v1 (per-image min-max) applied to them."""
    import json
    import os
    import sys

    import numpy as np

    from utils.config import save_config

    config, generator, vqgan = reduced_models(1, "confidence", step=3, w=1.0)
    torch.save(vqgan.state_dict(), tmp_path / "vq.bin")
    torch.save({"iter": 1, "model_state_dict": generator.state_dict()}, tmp_path / "MaskGIT_ImageNet_256.pth")
    save_config(config, tmp_path / "v1.yaml")
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
    import eval_maskbit

    eval_maskbit.main([f"config={tmp_path / 'v1.yaml'}", f"experiment.vqgan_checkpoint={tmp_path / 'vq.bin'}",
                       f"experiment.generator_checkpoint={tmp_path / 'MaskGIT_ImageNet_256.pth'}",
                       "evaluation.num_samples=3", "evaluation.batch_size=2", "evaluation.compute_inception=false",
                       "evaluation.protocol=maskgit_v1", f"experiment.output_dir={tmp_path}"])
    samples = np.load(tmp_path / f"samples_3x{4 * G}x{4 * G}x3.npz")["arr_0"]
    assert samples.dtype == np.uint8 and all(s.min() == 0 and s.max() == 255 for s in samples)  # min-max per image
    manifest = json.loads((tmp_path / "samples" / "manifest.json").read_text())
    assert manifest["protocol"] == "maskgit_v1"
    assert {k: manifest["sampling"][k] for k in ("version", "scheduler", "step", "w")} == dict(
        version=1, scheduler="confidence", step=3, w=1.0)
