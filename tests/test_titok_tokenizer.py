"""TiTok tokenizer and its MaskGIT-VQGAN: released key layouts (meta device, full size) and numerics on reduced
widths against independent restatements (functional ViT, explicit legacy head formula, hand-computed VQ)."""
import inspect
import json
import math
from collections import defaultdict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from modeling.titok import DiagonalGaussianDistribution, TiTok, build_maskgit_vqgan, build_titok
from modeling.tokenizer import tokenize

LAYOUTS = Path(__file__).parent / "fixtures" / "checkpoint_layout_titok"
TOKENIZER_MANIFESTS = ["titok_l32", "titok_b64", "titok_s128", "titok_l32_stage1", "titok_b64_stage1",
                       "titok_s128_stage1", "titok_bl64_vq8k", "titok_bl128_vq8k", "titok_sl256_vq8k",
                       "titok_ll32_vae_c16", "titok_bl64_vae_c16", "titok_bl128_vae_c16"]
# official constructor defaults for the keys an infer yaml may leave out
OFFICIAL_DEFAULTS = dict(codebook_size=4096, use_l2_norm=True, commitment_cost=0.25, quantize_mode="vq",
                         is_legacy=True)


def manifest(name):
    return json.loads((LAYOUTS / f"{name}.json").read_text())


def layout_of(model):
    keys = [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in model.state_dict().items()]
    by_submodule = defaultdict(int)
    for name, p in model.named_parameters():
        by_submodule[name.split(".")[0]] += p.numel()
    return dict(keys=keys, params=sum(p.numel() for p in model.parameters()),
                params_by_submodule=dict(by_submodule), buffer_elements=sum(b.numel() for b in model.buffers()))


def assert_layout(model, expected):
    got = layout_of(model)
    assert got["keys"] == expected["keys"]
    assert got["params"] == expected["params"]
    assert got["params_by_submodule"] == expected["params_by_submodule"]
    assert got["buffer_elements"] == expected["buffer_elements"]


@pytest.mark.parametrize("name", TOKENIZER_MANIFESTS)
def test_titok_state_dict_matches_the_released_layout(name):
    expected = manifest(name)
    # the model keys of the yaml (training-only keys such as pretrained_tokenizer_weight are not architecture)
    accepted = inspect.signature(build_titok).parameters
    config = {k: v for k, v in {**OFFICIAL_DEFAULTS, **expected["vq_model"]}.items() if k in accepted}
    with torch.device("meta"):
        model = build_titok(image_size=256, **config)
    assert_layout(model, expected)
    assert model.token_grid(256) == (config["num_latent_tokens"],)


def test_maskgit_vqgan_state_dict_matches_the_released_layout():
    with torch.device("meta"):
        model = build_maskgit_vqgan()
    assert_layout(model, manifest("titok_maskgit_vqgan"))
    assert model.codebook_size == 1024 and model.token_bits == 10
    assert model.token_grid(256) == (16, 16)


# ---------------------------------------------------------------------------------------------------------------
# reduced models
SMALL = dict(vit_enc_model_size="small", vit_dec_model_size="small", vit_enc_width=64, vit_enc_layers=2,
             vit_enc_heads=4, vit_dec_width=32, vit_dec_layers=2, vit_dec_heads=2, vit_enc_patch_size=16,
             vit_dec_patch_size=16, image_size=64, num_latent_tokens=6, commitment_cost=0.25,
             pixel_vqgan_hidden_channels=32)


def small_titok(seed=0, **overrides):
    torch.manual_seed(seed)
    kwargs = dict(SMALL, codebook_size=16, token_size=5, use_l2_norm=True, quantize_mode="vq",
                  finetune_decoder=False, is_legacy=True)
    kwargs.update(overrides)
    model = build_titok(**kwargs)
    with torch.no_grad():  # make the LayerNorm affines non-trivial
        for name, p in model.named_parameters():
            if ".ln" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def images(batch=2, size=64, seed=1):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def reference_vit_blocks(sd, prefix, x, num_layers, num_heads):
    """Pre-norm blocks written out: x (B, L, W); attention by explicit per-head softmax(q k^T / sqrt(d)) v."""
    b, length, width = x.shape
    d = width // num_heads
    for i in range(num_layers):
        p = f"{prefix}transformer.{i}."
        h = F.layer_norm(x, (width,), sd[p + "ln_1.weight"], sd[p + "ln_1.bias"], 1e-5)
        q, k, v = F.linear(h, sd[p + "attn.in_proj_weight"], sd[p + "attn.in_proj_bias"]).split(width, dim=-1)
        q, k, v = (t.reshape(b, length, num_heads, d).transpose(1, 2) for t in (q, k, v))
        attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1) @ v
        attn = attn.transpose(1, 2).reshape(b, length, width)
        x = x + F.linear(attn, sd[p + "attn.out_proj.weight"], sd[p + "attn.out_proj.bias"])
        h = F.layer_norm(x, (width,), sd[p + "ln_2.weight"], sd[p + "ln_2.bias"], 1e-5)
        h = F.linear(F.gelu(F.linear(h, sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_fc.bias"])),
                     sd[p + "mlp.c_proj.weight"], sd[p + "mlp.c_proj.bias"])
        x = x + h
    return x


def reference_encoder_latents(model, x):
    """The encoder up to ln_post, restated: (B, N, W)."""
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    width = sd["encoder.class_embedding"].shape[1]
    b = x.shape[0]
    patches = F.conv2d(x, sd["encoder.patch_embed.weight"], sd["encoder.patch_embed.bias"], stride=16)
    patches = patches.flatten(2).transpose(1, 2)  # (B, 16, W) row-major
    seq = torch.cat([sd["encoder.class_embedding"].expand(b, 1, width), patches], 1)
    seq = seq + sd["encoder.positional_embedding"]
    latents = sd["latent_tokens"] + sd["encoder.latent_token_positional_embedding"]
    seq = torch.cat([seq, latents.expand(b, -1, -1)], 1)
    seq = F.layer_norm(seq, (width,), sd["encoder.ln_pre.weight"], sd["encoder.ln_pre.bias"], 1e-5)
    seq = reference_vit_blocks(sd, "encoder.", seq, len(model.encoder.transformer), 4)
    n = sd["latent_tokens"].shape[0]
    return F.layer_norm(seq[:, -n:], (width,), sd["encoder.ln_post.weight"], sd["encoder.ln_post.bias"], 1e-5)


def legacy_head(latents, weight, bias):
    """The legacy 1x1 head as a per-element formula: channel-input k at position n is flat element k*N + n of the
    row-major (N, W) latent block, i.e. feature (k*N + n) % W of token (k*N + n) // W."""
    b, n, width = latents.shape
    out = torch.empty(b, weight.shape[0], 1, n, dtype=torch.float64)
    w2 = weight[:, :, 0, 0].double()
    for pos in range(n):
        flat = torch.arange(width) * n + pos
        column = latents[:, flat // width, flat % width].double()  # (B, W): what the conv sees at this position
        out[:, :, 0, pos] = column @ w2.T + bias.double()
    return out


@pytest.mark.parametrize("is_legacy", [True, False])
def test_encoder_matches_an_independent_restatement(is_legacy):
    model = small_titok(is_legacy=is_legacy)
    x = images()
    latents = reference_encoder_latents(model, x)
    with torch.no_grad():
        z = model.encoder(x, model.latent_tokens)
    w, bias = model.encoder.conv_out.weight.detach(), model.encoder.conv_out.bias.detach()
    if is_legacy:
        expected = legacy_head(latents, w, bias)
    else:
        expected = (torch.einsum("bnw,cw->bcn", latents.double(), w[:, :, 0, 0].double()) + bias.double()[:, None])
        expected = expected[:, :, None, :]
    assert z.shape == (2, 5, 1, 6)
    torch.testing.assert_close(z.double(), expected, rtol=1e-4, atol=1e-5)


def test_legacy_reshape_mixes_tokens_and_differs_from_the_transpose():
    model = small_titok(is_legacy=True)
    x = images()
    latents = reference_encoder_latents(model, x)
    w, bias = model.encoder.conv_out.weight.detach(), model.encoder.conv_out.bias.detach()
    proper = torch.einsum("bnw,cw->bcn", latents, w[:, :, 0, 0]) + bias[:, None]
    legacy = legacy_head(latents, w, bias)[:, :, 0].float()
    assert not torch.allclose(proper, legacy, atol=1e-3)
    # the legacy head at position 0 reads token 0's features 0, N, 2N, ... then token 1's, ...
    width, n = latents.shape[2], latents.shape[1]
    flat = torch.arange(width) * n
    assert (flat // width).tolist()[:2] == [0, 0] and (flat // width).max() == n - 1


def reference_decoder(model, z_q):
    """The ViT decoder restated: z_q (B, C, 1, N) -> logits (legacy) or pixels."""
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    p = "decoder."
    width = sd[p + "class_embedding"].shape[1]
    b, c, _, n = z_q.shape
    grid = model.decoder.grid_size
    lat = F.linear(z_q[:, :, 0].transpose(1, 2), sd[p + "decoder_embed.weight"], sd[p + "decoder_embed.bias"])
    lat = lat + sd[p + "latent_token_positional_embedding"][:n]
    queries = torch.cat([sd[p + "class_embedding"].expand(b, 1, width),
                         sd[p + "mask_token"].expand(b, grid * grid, width)], 1) + sd[p + "positional_embedding"]
    seq = F.layer_norm(torch.cat([queries, lat], 1), (width,), sd[p + "ln_pre.weight"], sd[p + "ln_pre.bias"], 1e-5)
    seq = reference_vit_blocks(sd, p, seq, len(model.decoder.transformer), 2)
    cells = F.layer_norm(seq[:, 1:1 + grid * grid], (width,), sd[p + "ln_post.weight"], sd[p + "ln_post.bias"], 1e-5)
    fmap = cells.transpose(1, 2).reshape(b, width, grid, grid)
    if model.is_legacy:
        h = torch.tanh(F.conv2d(fmap, sd[p + "ffn.0.weight"], sd[p + "ffn.0.bias"]))
        return F.conv2d(h, sd[p + "ffn.2.weight"], sd[p + "ffn.2.bias"])
    ch = F.conv2d(fmap, sd[p + "ffn.0.weight"], sd[p + "ffn.0.bias"])  # (B, P*P*3, grid, grid)
    size = 16
    pix = torch.empty(b, 3, grid * size, grid * size)
    for p1 in range(size):
        for p2 in range(size):
            for colour in range(3):
                pix[:, colour, p1::size, p2::size] = ch[:, (p1 * size + p2) * 3 + colour]
    return F.conv2d(pix, sd[p + "conv_out.weight"], sd[p + "conv_out.bias"], padding=1)


@pytest.mark.parametrize("is_legacy", [True, False])
def test_decoder_matches_an_independent_restatement(is_legacy):
    model = small_titok(is_legacy=is_legacy)
    z_q = torch.randn(2, 5, 1, 6, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = model.decode(z_q)
    expected = reference_decoder(model, z_q)
    assert out.shape == ((2, 1024, 4, 4) if is_legacy else (2, 3, 64, 64))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("use_l2_norm", [True, False])
def test_vq_path_indices_losses_and_decode_tokens(use_l2_norm):
    model = small_titok(use_l2_norm=use_l2_norm, is_legacy=False)
    x = images()
    with torch.no_grad():
        z = model.encoder(x, model.latent_tokens)
        z_q, info = model.quantize(z)
    flat = z[:, :, 0].transpose(1, 2).reshape(-1, 5).double()
    codebook = model.quantize.embedding.weight.detach().double()
    if use_l2_norm:
        flat, codebook = flat / flat.norm(dim=1, keepdim=True), codebook / codebook.norm(dim=1, keepdim=True)
    indices = torch.cdist(flat, codebook).argmin(1)
    assert info["min_encoding_indices"].shape == (2, 1, 6) and info["min_encoding_indices"].dtype == torch.int64
    assert info["min_encoding_indices"].reshape(-1).tolist() == indices.tolist()
    mse = ((codebook[indices] - flat) ** 2).mean()
    torch.testing.assert_close(info["commitment_loss"].double(), 0.25 * mse)
    torch.testing.assert_close(info["codebook_loss"].double(), mse)
    torch.testing.assert_close(info["quantizer_loss"].double(), 1.25 * mse)
    expected_zq = codebook[indices].reshape(2, 6, 5).transpose(1, 2)[:, :, None]
    torch.testing.assert_close(z_q.double(), expected_zq, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        decoded, result = model(x)
        tokens = tokenize(model, x)
        assert tokens.shape == (2, 6)
        torch.testing.assert_close(model.decode_tokens(result["min_encoding_indices"]), decoded, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model.decode_tokens(tokens), decoded, rtol=1e-4, atol=1e-5)


def test_quantization_runs_in_float32_under_autocast():
    model = small_titok(finetune_decoder=True)
    vae = small_titok(quantize_mode="vae", is_legacy=False)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.encoder(images(), model.latent_tokens).dtype == torch.bfloat16
        z_q, info = model.encode(images())
        sample, posterior = vae.encode(images())
        decoded, _ = model(images())
    assert z_q.dtype == torch.float32 and info["quantizer_loss"].dtype == torch.float32
    assert sample.dtype == posterior.mean.dtype == torch.float32
    assert decoded.shape == (2, 3, 64, 64)


def test_vae_posterior_sample_mode_and_kl():
    model = small_titok(quantize_mode="vae", is_legacy=False, token_size=4)
    assert model.codebook_size is None and model.token_bits is None
    assert not any(k.startswith("quantize") for k in model.state_dict())
    x = images()
    with torch.no_grad():
        z = model.encoder(x, model.latent_tokens)
    assert z.shape == (2, 8, 1, 6)
    posterior = model.quantize(z)
    assert isinstance(posterior, DiagonalGaussianDistribution)
    mean, logvar = z[:, :4].float(), z[:, 4:].float().clamp(-30, 20)
    torch.testing.assert_close(posterior.mean, mean)
    torch.testing.assert_close(posterior.logvar, logvar)
    torch.testing.assert_close(posterior.std, torch.exp(logvar / 2))
    torch.testing.assert_close(posterior.var, torch.exp(logvar))
    noise = torch.randn(2, 4, 1, 6)
    torch.testing.assert_close(posterior.sample(noise), mean + torch.exp(logvar / 2) * noise)
    assert posterior.mode() is posterior.mean
    kl = posterior.kl()
    assert kl.shape == (2, 6)
    expected = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).sum(dim=(1, 2))
    torch.testing.assert_close(kl, expected)
    torch.manual_seed(5)
    drawn = posterior.sample()
    torch.manual_seed(5)
    torch.testing.assert_close(drawn, mean + posterior.std * torch.randn(2, 4, 1, 6))
    # logvar clamp
    extreme = DiagonalGaussianDistribution(torch.cat([torch.zeros(1, 1, 1, 2), torch.tensor([[[[-50.0, 50.0]]]])], 1))
    assert extreme.logvar.flatten().tolist() == [-30.0, 20.0]
    with torch.no_grad():
        torch.manual_seed(0)
        decoded, result = model(x)
        assert isinstance(result, DiagonalGaussianDistribution) and decoded.shape == (2, 3, 64, 64)
        torch.testing.assert_close(model.decode_tokens(result.mean), model.decode(result.mean))


def test_finetune_decoder_freezes_the_encoder_side_and_decodes_through_the_pixel_decoder():
    model = small_titok(finetune_decoder=True, is_legacy=True)
    assert not model.latent_tokens.requires_grad
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert not any(p.requires_grad for p in model.quantize.parameters())
    assert all(p.requires_grad for m in (model.decoder, model.pixel_quantize, model.pixel_decoder)
               for p in m.parameters())
    model.train()
    x = images()
    decoded, result = model(x)
    assert not model.encoder.training and not model.quantize.training and model.decoder.training
    assert decoded.shape == (2, 3, 64, 64)
    assert all(result[k].item() == 0.0 for k in ("quantizer_loss", "commitment_loss", "codebook_loss"))
    # decode = pixel decoder of the softmax-weighted MaskGIT codebook
    model.eval()
    with torch.no_grad():
        z_q, _ = model.encode(x)
        logits = model.decoder(z_q)
        soft = torch.einsum("bkhw,kd->bdhw", logits.softmax(1), model.pixel_quantize.embedding.weight)
        torch.testing.assert_close(model.decode(z_q), model.pixel_decoder(soft))
    model.train()
    decoded, _ = model(x)
    decoded.square().mean().backward()
    assert model.pixel_quantize.embedding.weight.grad is not None and model.decoder.ffn[0].weight.grad is not None
    assert model.encoder.patch_embed.weight.grad is None and model.latent_tokens.grad is None
    assert model.get_last_layer() is model.pixel_decoder.conv_out.weight


def test_interface_properties_and_errors():
    model = small_titok()
    assert model.codebook_size == 16 and model.token_bits == 4
    assert model.token_grid(64) == (6,)
    with pytest.raises(ValueError, match="built for 64px"):
        model.token_grid(256)
    assert model.get_last_layer() is model.decoder.ffn[2].weight
    non_legacy = small_titok(is_legacy=False, codebook_size=12)
    assert non_legacy.get_last_layer() is non_legacy.decoder.conv_out.weight
    assert non_legacy.token_bits is None
    with torch.device("meta"):
        assert build_titok(**dict(SMALL, codebook_size=8192, token_size=64, use_l2_norm=False, quantize_mode="vq",
                                  finetune_decoder=False, is_legacy=False)).token_bits == 13
    with pytest.raises(ValueError, match="only defined for quantize_mode 'vq'"):
        small_titok(quantize_mode="vae", finetune_decoder=True)
    with pytest.raises(ValueError, match="Unknown TiTok ViT size"):
        small_titok(vit_enc_model_size="huge")
    with pytest.raises(ValueError, match="decode_tokens expects"):
        model.decode_tokens(torch.zeros(2, 2, 6, dtype=torch.long))
    assert isinstance(model, TiTok)


def test_maskgit_vqgan_round_trip_and_equivalence_with_the_maskbit_maskgit_tokenizer():
    from modeling.quantizers import VectorQuantizer
    from modeling.vqgan_plus import VQGANPlusTokenizer

    torch.manual_seed(0)
    vqgan = build_maskgit_vqgan(hidden_channels=32).eval()
    x = images(batch=2, size=64)
    codes = vqgan.encode(x)
    assert codes.shape == (2, 16) and codes.dtype == torch.int64
    assert vqgan.token_grid(64) == (4, 4)
    out = vqgan.decode(codes)
    assert out.shape == (2, 3, 64, 64) and out.min() >= 0.0 and out.max() <= 1.0
    assert not out.requires_grad
    with torch.no_grad():
        raw = vqgan.decoder(vqgan.quantize.get_codebook_entry(codes))
    assert (raw < 0).any() or (raw > 1).any()  # the clamp is doing something
    torch.testing.assert_close(out, raw.clamp(0, 1))
    # hand nearest-code lookup
    with torch.no_grad():
        z = vqgan.encoder(x)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 256).double()
    assert codes.reshape(-1).tolist() == torch.cdist(flat, vqgan.quantize.embedding.weight.double()).argmin(1).tolist()

    # the same network as MaskBit's MaskGIT tokenizer; only stage names differ (block vs res_blocks)
    maskbit = VQGANPlusTokenizer(VectorQuantizer(1024, 256), token_size=256, hidden_channels=32,
                                 sample_with_conv=False, legacy_decoder=True).eval()
    renamed = {k.replace(".block.", ".res_blocks.").replace("mid.", "mid.res_blocks."): v
               for k, v in vqgan.state_dict().items()}
    maskbit.load_state_dict(renamed, strict=True)
    with torch.no_grad():
        z_maskbit, info = maskbit.encode(x)
        torch.testing.assert_close(maskbit.encoder(x), z)
        assert info["min_encoding_indices"].reshape(2, -1).tolist() == codes.tolist()
        torch.testing.assert_close(maskbit.decode_tokens(codes).clamp(0, 1), out)


def test_stage2_init_mapping_fills_exactly_the_pixel_parts():
    vqgan = build_maskgit_vqgan(hidden_channels=32)
    model = small_titok(finetune_decoder=True)
    mapped = {"pixel_" + k: v for k, v in vqgan.state_dict().items() if "encoder." not in k}
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    assert unexpected == []
    assert sorted(set(model.state_dict()) - set(missing)) == sorted(mapped)
    assert {k.split(".")[0] for k in mapped} == {"pixel_quantize", "pixel_decoder"}
