"""Evaluation protocols (evaluation/protocols.py) against hand computations on small random images."""
import numpy as np
import pytest
import torch

from evaluation.protocols import bicubic299_uint8, minmax_uint8, pil_bicubic_float, to_uint8_protocol


def test_minmax_by_hand():
    image = torch.tensor([0.2, 0.6, 0.4, 1.0]).view(1, 1, 2, 2).expand(1, 3, 2, 2).clone()
    image[0, 2, 0, 0] = 0.1  # the minimum over all channels
    # (x - 0.1) / 0.9 * 255: 0.2 -> 28.33, 0.6 -> 141.67, 1.0 -> 255, 0.1 -> 0 (0.4 -> 85 up to rounding: not checked)
    out = minmax_uint8(image)
    assert out.dtype == torch.uint8
    assert out[0, 0].flatten().tolist()[:2] == [28, 141] and out[0, 0, 1, 1] == 255 and out[0, 2, 0, 0] == 0
    x = torch.rand(4, 3, 5, 5) * 3 - 1  # any range: each image is normalised on its own
    out = minmax_uint8(x)
    for b in range(4):
        expected = ((x[b] - x[b].min()) / (x[b].max() - x[b].min()) * 255).floor()
        assert torch.equal(out[b].float(), expected) and out[b].min() == 0 and out[b].max() == 255


def cubic(x, a=-0.5):
    x = abs(x)
    if x < 1:
        return ((a + 2) * x - (a + 3)) * x * x + 1
    if x < 2:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def resample_axis(rows, out_size):
    """Pillow's separable resampling of each row (float64 sums, float32 result), bicubic support 2 x scale."""
    in_size = rows.shape[1]
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    out = np.zeros((rows.shape[0], out_size), dtype=np.float32)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        weights = np.array([cubic((x - center + 0.5) / filterscale) for x in range(xmin, xmax)])
        weights /= weights.sum()
        out[:, xx] = rows[:, xmin:xmax].astype(np.float64) @ weights
    return out


@pytest.mark.parametrize("size_in,size_out", [(6, 15), (16, 7)])
def test_pil_bicubic_float_matches_a_restatement(size_in, size_out):
    image = np.random.default_rng(0).uniform(0, 255, (size_in, size_in)).astype(np.float32)
    expected = resample_axis(resample_axis(image, size_out).T, size_out).T.clip(0, 255)  # horizontal, then vertical
    np.testing.assert_allclose(pil_bicubic_float(image, size_out), expected, atol=2e-3)


def test_maskgit_v2_protocol_resizes_in_float_then_truncates():
    images = torch.rand(2, 3, 8, 8)
    out = bicubic299_uint8(images)
    assert out.shape == (2, 3, 299, 299) and out.dtype == torch.uint8
    channel = (images[1, 2] * 255).clip(0, 255).numpy()
    expected = np.floor(resample_axis(resample_axis(channel, 299).T, 299).T.clip(0, 255))
    near_integer = np.abs(expected - np.round(expected)) < 1e-2  # where float rounding could flip a truncation
    assert np.array_equal(out[1, 2].numpy()[~near_integer], expected[~near_integer])
    flat = torch.full((1, 3, 5, 5), 0.3)  # a constant image stays constant: 0.3 * 255 = 76.5 -> 76
    assert bicubic299_uint8(flat).unique().tolist() == [76]
    # overshoot of the cubic kernel at a sharp edge is clipped before the cast (no wrap-around)
    edge = torch.zeros(1, 3, 4, 4)
    edge[..., 2:] = 1.0
    out = bicubic299_uint8(edge)
    assert out.min() == 0 and out.max() == 255


def test_protocol_dispatch():
    images = torch.rand(2, 3, 4, 4)
    assert torch.equal(to_uint8_protocol(images, "adm"), (images * 255).to(torch.uint8))
    assert torch.equal(to_uint8_protocol(images, "maskgit_v1"), minmax_uint8(images))
    with pytest.raises(ValueError, match="protocol"):
        to_uint8_protocol(images, "clean")


def test_eval_script_with_protocol_and_maskbit_sampler_switch(tmp_path):
    """scripts/eval_maskbit.py: evaluation.protocol=maskgit_v2 stores 299 px uint8 samples; the MaskBit generator
    sampled by the Halton sampler (model.mlm_model.sampler=halton); both recorded in the chunk manifest."""
    import json
    import os
    import sys

    from modeling import build_generator, build_tokenizer
    from utils.errors import MaskbitError

    tiny = {"model": {"vq_model": {"hidden_channels": 32, "channel_mult": [1, 2], "num_resolutions": 2,
                                   "num_res_blocks": 1, "token_size": 4},
                      "mlm_model": {"hidden_dim": 32, "depth": 1, "heads": 2, "mlp_dim": 64, "num_classes": 4,
                                    "sampler": "halton"},
                      "maskgit_sampler": {"step": 3, "w": 1.0}},
            "dataset": {"preprocessing": {"resolution": 16}}}
    torch.manual_seed(0)
    torch.save(build_tokenizer(tiny).state_dict(), tmp_path / "tok.bin")
    torch.save(build_generator(tiny).state_dict(), tmp_path / "gen.bin")
    (tmp_path / "tiny.yaml").write_text(json.dumps(tiny))
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
    import eval_maskbit

    args = [f"config={tmp_path / 'tiny.yaml'}", f"experiment.vqgan_checkpoint={tmp_path / 'tok.bin'}",
            f"experiment.generator_checkpoint={tmp_path / 'gen.bin'}", "evaluation.num_samples=3",
            "evaluation.batch_size=2", "evaluation.compute_inception=false", f"experiment.output_dir={tmp_path}"]
    eval_maskbit.main(args + ["evaluation.protocol=maskgit_v2"])
    samples = np.load(tmp_path / "samples_3x299x299x3.npz")["arr_0"]
    assert samples.shape == (3, 299, 299, 3) and samples.dtype == np.uint8 and samples.std() > 0
    manifest = json.loads((tmp_path / "samples" / "manifest.json").read_text())
    assert manifest["protocol"] == "maskgit_v2" and manifest["sampling"]["scheduler"] == "halton"
    with pytest.raises(MaskbitError, match="another run"):  # same folder, other protocol: refused, nothing mixed
        eval_maskbit.main(args + ["evaluation.protocol=maskgit_v1"])
    with pytest.raises(Exception, match="evaluation.protocol"):
        eval_maskbit.main(args[:-1] + ["evaluation.protocol=clean", f"experiment.output_dir={tmp_path / 'x'}"])
