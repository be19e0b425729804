"""Taming VQGAN at a tiny width: [-1, 1] pixel mapping, attention, token decoding."""
import torch

from modeling import TamingVQGAN
from modeling.taming import TamingAttention




def tiny_taming():
    torch.manual_seed(0)
    return TamingVQGAN(codebook_size=16, token_size=8, ch=32, ch_mult=(1, 2), num_res_blocks=1,
                       attn_resolutions=(8,), resolution=16, z_channels=32).eval()


def test_structure_follows_taming():
    model = tiny_taming()
    assert len(model.encoder.down[1].attn) == 1 and len(model.encoder.down[0].attn) == 0  # attention at 8x8
    assert len(model.decoder.up[1].block) == 2 and hasattr(model.decoder.up[1], "upsample")  # num_res_blocks + 1
    assert model.encoder.down[1].block[0].nin_shortcut.weight.shape == (64, 32, 1, 1)  # shortcut on the input
    assert list(model.state_dict())[-4:] == ["quant_conv.weight", "quant_conv.bias", "post_quant_conv.weight",
                                             "post_quant_conv.bias"]


def test_pixels_are_mapped_to_and_from_minus_one_one():
    model = tiny_taming()
    seen = {}
    model.encoder.register_forward_pre_hook(lambda m, args: seen.setdefault("in", args[0]))
    model.decoder.register_forward_hook(lambda m, args, out: seen.setdefault("out", out))
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        x_rec, info = model(x)
    assert torch.allclose(seen["in"], x * 2 - 1)
    assert torch.allclose(x_rec, (seen["out"] + 1) / 2)
    assert info["min_encoding_indices"].shape == (2, 8, 8)
    assert torch.allclose(model.decode_tokens(info["min_encoding_indices"].flatten(1)), x_rec, atol=1e-6)
    assert model.get_last_layer() is model.decoder.conv_out.weight


def test_attention_is_single_head_softmax_over_positions():
    torch.manual_seed(0)
    attention = TamingAttention(32)
    x = torch.randn(2, 32, 3, 5)
    h = attention.norm(x)
    q, k, v = (proj(h).flatten(2) for proj in (attention.q, attention.k, attention.v))  # (b, c, hw)
    weights = torch.softmax(torch.einsum("bci,bcj->bij", q, k) * 32 ** -0.5, dim=2)
    expected = x + attention.proj_out(torch.einsum("bcj,bij->bci", v, weights).reshape(2, 32, 3, 5))
    assert torch.allclose(attention(x), expected, atol=1e-5)
