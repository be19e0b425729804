"""VQGAN+ / MaskBit / MaskGIT tokenizers at tiny widths: reference computation, token API, formats, errors."""
import pytest
import torch
import torch.nn.functional as F

from modeling import VQGANPlusTokenizer, build_tokenizer
from modeling.layers import same_padding




def tiny_config(**vq):
    base = dict(quantizer_type="lookup-free", token_size=6, hidden_channels=32, channel_mult=[1, 2, 2],
                num_resolutions=3, num_res_blocks=1)
    base.update(vq)
    return {"model": {"vq_model": base}}


def tiny_model(seed=0, **vq):
    torch.manual_seed(seed)
    model = build_tokenizer(tiny_config(**vq))
    with torch.no_grad():  # non-trivial norms and biases so that ordering mistakes show
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


# --- a functional re-statement of the official computation, read straight off the state dict -----------------
def ref_conv(x, sd, name, stride=1):
    weight, bias = sd[name + ".weight"], sd.get(name + ".bias")
    (top, bottom), (left, right) = (same_padding(x.shape[d], weight.shape[d], stride) for d in (-2, -1))
    return F.conv2d(F.pad(x, [left, right, top, bottom]), weight, bias, stride)


def ref_norm_act(x, sd, name):
    return F.silu(F.group_norm(x, 32, sd[name + ".weight"], sd[name + ".bias"], eps=1e-6))


def ref_stage(x, sd, prefix):
    i = 0
    while f"{prefix}.res_blocks.{i}.conv1.weight" in sd:
        p = f"{prefix}.res_blocks.{i}"
        h = ref_conv(ref_norm_act(x, sd, p + ".norm1"), sd, p + ".conv1")
        h = ref_conv(ref_norm_act(h, sd, p + ".norm2"), sd, p + ".conv2")
        x = h + (ref_conv(h, sd, p + ".nin_shortcut") if p + ".nin_shortcut.weight" in sd else x)
        i += 1
    return x


def ref_encoder(x, sd, levels):
    h = ref_conv(x, sd, "encoder.conv_in")
    for level in range(levels):
        h = ref_stage(h, sd, f"encoder.down.{level}")
        if level < levels - 1:
            has_conv = f"encoder.down.{level}.down_conv.weight" in sd
            h = ref_conv(h, sd, f"encoder.down.{level}.down_conv", 2) if has_conv else F.avg_pool2d(h, 2)
    h = ref_stage(h, sd, "encoder.mid")
    return ref_conv(ref_norm_act(h, sd, "encoder.norm_out"), sd, "encoder.conv_out")


def ref_decoder(z, sd, levels, legacy):
    h = ref_stage(ref_conv(z, sd, "decoder.conv_in"), sd, "decoder.mid")
    for step in range(levels):
        level = levels - 1 - step
        prefix = f"decoder.up.{level if legacy else step}"
        h = ref_stage(h, sd, prefix)
        if level > 0:
            h = ref_conv(F.interpolate(h, scale_factor=2.0, mode="nearest"), sd, prefix + ".upsample_conv")
    return ref_conv(ref_norm_act(h, sd, "decoder.norm_out"), sd, "decoder.conv_out")


@pytest.mark.parametrize("vq", [dict(), dict(model_class="maskgit", quantizer_type="lookup", codebook_size=32,
                                            token_size=8, sample_with_conv=False)])
def test_matches_reference_computation(vq):
    model = tiny_model(**vq).eval()
    sd = model.state_dict()
    x = torch.rand(2, 3, 16, 16)
    z = model.encoder(x)
    assert torch.allclose(z, ref_encoder(x, sd, 3), atol=1e-5)
    assert torch.allclose(model.decoder(z), ref_decoder(z, sd, 3, legacy=vq.get("model_class") == "maskgit"),
                          atol=1e-5)


def test_maskgit_layout_stores_decoder_levels_in_legacy_order():
    keys = tiny_model(model_class="maskgit", quantizer_type="lookup", codebook_size=32, token_size=8,
                      sample_with_conv=False).state_dict()
    assert not any("down_conv" in k for k in keys)
    assert "decoder.up.0.upsample_conv.weight" not in keys and "decoder.up.2.upsample_conv.weight" in keys
    assert keys["decoder.up.0.res_blocks.0.conv1.weight"].shape == (32, 64, 3, 3)  # level 0: 64 -> 32


def test_forward_info_and_token_round_trip():
    model = tiny_model().eval()
    x = torch.rand(2, 3, 16, 16)
    x_rec, info = model(x)
    assert x_rec.shape == x.shape
    assert {"quantizer_loss", "commitment_loss", "entropy_loss", "per_sample_entropy", "avg_entropy",
            "min_encoding_indices", "bit_usage"} <= set(info)
    tokens = info["min_encoding_indices"]
    assert tokens.shape == (2, 4, 4) and tokens.dtype == torch.int64
    z_q, _ = model.encode(x)
    assert torch.equal(z_q.abs(), torch.ones_like(z_q))
    assert torch.allclose(model.decode(z_q), x_rec)
    assert torch.allclose(model.decode_tokens(tokens), x_rec, atol=1e-6)
    assert torch.allclose(model.decode_tokens(tokens.flatten(1)), x_rec, atol=1e-6)
    assert model.get_last_layer() is model.decoder.conv_out.weight
    assert model.codebook_size == 64 and model.downsample_factor == 4


def test_vq_tokens_decode_to_codebook_rows():
    model = tiny_model(quantizer_type="lookup", codebook_size=16, token_size=4).eval()
    x = torch.rand(1, 3, 16, 16)
    x_rec, info = model(x)
    assert "codebook_loss" in info
    assert torch.allclose(model.decode_tokens(info["min_encoding_indices"].flatten(1)), x_rec, atol=1e-5)


def test_training_mode_gives_entropy_and_gradients():
    model = tiny_model().train()
    x_rec, info = model(torch.rand(2, 3, 16, 16))
    assert info["entropy_loss"] != 0
    (F.mse_loss(x_rec, torch.zeros_like(x_rec)) + info["quantizer_loss"]).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_decoder_block_override():
    model = tiny_model(num_res_blocks_decoder=2)
    assert len(model.encoder.down[0].res_blocks) == 1
    assert all(len(stage.res_blocks) == 2 for stage in model.decoder.up) and len(model.decoder.mid.res_blocks) == 2


def test_channels_last_gives_the_same_result():
    model = tiny_model().eval()
    x = torch.rand(2, 3, 16, 16)
    x_rec, info = model(x)
    model_cl = tiny_model().eval().to(memory_format=torch.channels_last)
    x_rec_cl, info_cl = model_cl(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(x_rec_cl, x_rec, atol=1e-5)
    assert torch.equal(info_cl["min_encoding_indices"], info["min_encoding_indices"])


def test_bf16_autocast_runs_and_leaves_fp32_untouched():
    model = tiny_model().train()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        z, (x_rec, _) = model.encoder(x), model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            z_bf16, x_rec_bf16 = model.encoder(x), model.decode(model.encode(x)[0])
            _, info = model(x)
            entropy_bf16 = model.quantize(z_bf16)[1]["per_sample_entropy"]
        assert torch.equal(model(x)[0], x_rec)  # autocast left no state behind
        entropy_fp32 = model.quantize(z_bf16.float())[1]["per_sample_entropy"]
    assert z_bf16.dtype == torch.bfloat16 and torch.isfinite(x_rec_bf16).all()
    assert (z_bf16.float() - z).abs().max() < 0.05 * z.abs().max()
    for key in ("quantizer_loss", "entropy_loss", "per_sample_entropy", "avg_entropy"):
        assert info[key].dtype == torch.float32 and torch.isfinite(info[key])
    assert torch.equal(entropy_bf16, entropy_fp32)  # the quantizer computes in fp32 under autocast


def test_helpful_errors():
    with pytest.raises(ValueError, match="num_resolutions"):
        build_tokenizer(tiny_config(num_resolutions=4))
    with pytest.raises(ValueError, match="model_class"):
        build_tokenizer(tiny_config(model_class="vqgan++"))
    with pytest.raises(ValueError, match="quantizer_type 'vae'"):
        build_tokenizer(tiny_config(quantizer_type="vae"))
    with pytest.raises(ValueError, match="divisible by 32"):
        build_tokenizer(tiny_config(hidden_channels=48))
    with pytest.raises(ValueError, match="square"):
        tiny_model().decode_tokens(torch.zeros(1, 12, dtype=torch.long))
    assert isinstance(build_tokenizer(tiny_config()), VQGANPlusTokenizer)
