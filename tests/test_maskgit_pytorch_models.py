"""MaskGIT-pytorch v1 / Halton-MaskGIT v2 models on reduced widths: both transformers against a per-op restatement of
the official forward (docs/design/maskgit-pytorch-facts.md §2, §3), the training masking of each version with given
draws (§5, §12.9), and the VQGANs' official [-1, 1] interface next to the project's [0, 1] tokenizer contract (§4).
(Layouts and parameter counts of the full-size presets: tests/test_registry.py.)"""
import math

import pytest
import torch
import torch.nn.functional as F

from modeling import build_generator, build_tokenizer
from modeling.maskgit_pytorch import build_transformer, build_vqgan, mask_code
from modeling.registry import preset_config
from modeling.tokenizer import tokenize


def _randomize(model, seed=0):
    """Random values in every parameter (the official inits zero some of them, which would hide terms)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model.eval()


def _layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def _gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def _v1_reference(sd, tokens, labels, drop, K, nclass, heads):
    """The official MaskTransformer forward, op by op from its state dict (facts §2), in float64."""
    sd = {k: v.double() for k, v in sd.items()}
    B, G, _ = tokens.shape
    cls = torch.where(drop, torch.full_like(labels, K + 1 + nclass), labels + K + 1)
    ids = torch.cat([tokens.reshape(B, G * G), cls[:, None]], 1)
    x = sd["tok_emb.weight"][ids] + sd["pos_emb"]

    def lin(x, name):
        return x @ sd[name + ".weight"].T + sd[name + ".bias"]

    x = _layer_norm(x, sd["first_layer.0.weight"], sd["first_layer.0.bias"], 1e-12)
    x = _gelu(lin(x, "first_layer.2"))
    x = _layer_norm(x, sd["first_layer.4.weight"], sd["first_layer.4.bias"], 1e-12)
    x = lin(x, "first_layer.6")
    depth = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("transformer.layers."))
    D = x.shape[-1]
    for i in range(depth):
        p = f"transformer.layers.{i}."
        h = _layer_norm(x, sd[p + "0.norm.weight"], sd[p + "0.norm.bias"], 1e-5)
        qkv = h @ sd[p + "0.fn.mha.in_proj_weight"].T + sd[p + "0.fn.mha.in_proj_bias"]
        q, k, v = (t.reshape(B, -1, heads, D // heads).transpose(1, 2) for t in qkv.split(D, -1))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D // heads), -1) @ v
        x = x + lin(att.transpose(1, 2).reshape(B, -1, D), p + "0.fn.mha.out_proj")
        h = _layer_norm(x, sd[p + "1.norm.weight"], sd[p + "1.norm.bias"], 1e-5)
        x = x + lin(_gelu(lin(h, p + "1.fn.net.0")), p + "1.fn.net.3")
    x = _layer_norm(x, sd["last_layer.0.weight"], sd["last_layer.0.bias"], 1e-12)
    x = _gelu(lin(x, "last_layer.2"))
    x = _layer_norm(x, sd["last_layer.4.weight"], sd["last_layer.4.bias"], 1e-12)
    logits = x @ sd["tok_emb.weight"].T + sd["bias"]
    return logits[:, :G * G, :K + 1]


def _rms(x, eps=1e-5):
    return x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + eps)


def _v2_reference(sd, tokens, labels, drop, K, nclass, heads, register):
    """The official Halton-MaskGIT Transformer forward, op by op from its state dict (facts §3), in float64."""
    sd = {k: v.double() for k, v in sd.items()}
    B, G, _ = tokens.shape
    c = sd["cls_emb.weight"][torch.where(drop, torch.full_like(labels, nclass), labels)]
    x = sd["tok_emb.weight"][tokens.reshape(B, G * G)] + sd["pos_emb.weight"]
    x = torch.cat([x, sd["reg_tokens.weight"].expand(B, register, -1)], 1)
    D = x.shape[-1]
    hd = D // heads
    silu = lambda t: t * torch.sigmoid(t)  # noqa: E731
    depth = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("transformer.layers."))
    for i in range(depth):
        p = f"transformer.layers.{i}."
        mod = silu(c) @ sd[p + "mlp.1.weight"].T + sd[p + "mlp.1.bias"]
        sh1, sc1, g1, sh2, sc2, g2 = (t[:, None] for t in mod.split(D, -1))
        h = _rms(x) * sd[p + "ln1.weight"] * (1 + sc1) + sh1
        q = _rms(h @ sd[p + "attn.wq.weight"].T)  # QK-norm over the whole heads*hd width
        k = _rms(h @ sd[p + "attn.wk.weight"].T)
        v = h @ sd[p + "attn.wv.weight"].T
        q, k, v = (t.reshape(B, -1, heads, hd).transpose(1, 2) for t in (q, k, v))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), -1) @ v
        att = att.transpose(1, 2).reshape(B, -1, heads * hd)
        x = x + g1 * (att @ sd[p + "attn.wo.weight"].T)
        h = _rms(x) * sd[p + "ln2.weight"] * (1 + sc2) + sh2
        ff = silu(h @ sd[p + "ff.w1.weight"].T) * (h @ sd[p + "ff.w3.weight"].T)
        x = x + g2 * (ff @ sd[p + "ff.w2.weight"].T)
    x = x[:, :G * G]
    shift, scale = (silu(c) @ sd["last_norm.mlp.1.weight"].T + sd["last_norm.mlp.1.bias"]).split(D, -1)
    x = (_rms(x) * sd["last_norm.norm_final.weight"] + sd["last_norm.norm_final.bias"]) * (1 + scale[:, None])
    x = x + shift[:, None]
    return x @ sd["tok_emb.weight"].T + sd["head.bias"]


def _inputs(B, G, K, nclass, seed=1):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, K + 1, (B, G, G), generator=g)  # mask id K included
    labels = torch.randint(0, nclass, (B,), generator=g)
    drop = torch.tensor([False, True, False])
    return tokens, labels, drop


def test_v1_forward_equals_the_official_per_op_restatement():
    K, nclass, G, heads = 12, 5, 3, 4
    model = _randomize(build_transformer(dict(version="v1", img_size=48, hidden_dim=32, codebook_size=K, f_factor=G,
                                              depth=2, heads=heads, mlp_dim=48, dropout=0.1, nclass=nclass)))
    tokens, labels, drop = _inputs(3, G, K, nclass)
    before = (tokens.clone(), labels.clone(), drop.clone())
    logits = model(tokens, labels, drop)
    assert logits.shape == (3, G * G, K + 1)
    expected = _v1_reference(model.state_dict(), tokens, labels, drop, K, nclass, heads)
    torch.testing.assert_close(logits.double(), expected, rtol=1e-4, atol=1e-4)
    assert all(torch.equal(a, b) for a, b in zip(before, (tokens, labels, drop)))  # caller's tensors untouched
    # drop_label=None drops nothing here (the official code would drop every label, facts §12.4)
    none = model(tokens, labels, None)
    torch.testing.assert_close(none, model(tokens, labels, torch.zeros(3, dtype=torch.bool)))
    assert not torch.allclose(none[1], logits[1])
    # init: zero head bias, N(0, 1) table (PyTorch default), pos_emb std 0.02
    fresh = build_transformer(dict(version="v1", hidden_dim=64, codebook_size=K, f_factor=8, depth=1, heads=2,
                                   mlp_dim=64, nclass=nclass))
    assert fresh.bias.abs().sum() == 0 and 0.5 < fresh.tok_emb.weight.std() < 1.5
    assert 0.015 < fresh.pos_emb.std() < 0.025


def test_v2_forward_equals_the_official_per_op_restatement_with_attention_narrower_than_width():
    K, nclass, G, heads = 12, 5, 3, 6  # 40 // 6 = 6 per head: attention width 36 < 40 (as the released "small")
    model = _randomize(build_transformer(dict(version="v2", input_size=G, hidden_dim=40, codebook_size=K, depth=2,
                                              heads=heads, mlp_dim=160, dropout=0.1, nclass=nclass, register=1)))
    assert model.transformer.layers[0].attn.wq.weight.shape == (36, 40)
    hidden = 256 * math.ceil(int(2 * 160 / 3) / 256)  # SwiGLU width rule (facts §3.7)
    assert model.transformer.layers[0].ff.w1.weight.shape == (hidden, 40)
    assert model.head.weight is model.tok_emb.weight and {"head.weight", "tok_emb.weight"} <= model.state_dict().keys()
    tokens, labels, drop = _inputs(3, G, K, nclass)
    before = (tokens.clone(), labels.clone(), drop.clone())
    logits = model(tokens, labels, drop)
    assert logits.shape == (3, G * G, K + 1)
    expected = _v2_reference(model.state_dict(), tokens, labels, drop, K, nclass, heads, register=1)
    torch.testing.assert_close(logits.double(), expected, rtol=1e-4, atol=1e-4)
    assert all(torch.equal(a, b) for a, b in zip(before, (tokens, labels, drop)))
    # init: adaLN Linears zero (blocks start as identity), embeddings N(0, 0.02), tied head
    fresh = build_transformer(dict(version="v2", input_size=4, hidden_dim=64, codebook_size=K, depth=2, heads=4,
                                   mlp_dim=256, nclass=nclass))
    assert all(b.mlp[1].weight.abs().sum() == 0 and b.mlp[1].bias.abs().sum() == 0 for b in fresh.transformer.layers)
    assert 0.01 < fresh.tok_emb.weight.std() < 0.03 and fresh.head.bias.abs().sum() == 0
    with pytest.raises(ValueError, match="proj"):
        build_transformer(dict(version="v2", proj=2))
    with pytest.raises(ValueError, match="unknown: \\['f_factor'\\]"):
        build_transformer(dict(version="v2", f_factor=16))


def test_training_masking_of_each_version_with_given_draws():
    code = torch.arange(2 * 9).reshape(2, 3, 3) % 7
    r = torch.tensor([0.3, 0.8])
    u = torch.linspace(0.0, 0.99, 9).repeat(2, 1).reshape(2, 3, 3)
    expected_p = {("v1", "square"): r ** 2, ("v2", "square"): 1 - r ** 2, ("v2", "root"): 1 - r.sqrt(),
                  ("v1", "linear"): r, ("v2", "linear"): 1 - r, ("v1", "cosine"): torch.cos(r * math.pi / 2),
                  ("v2", "arccos"): torch.arccos(r) / (math.pi / 2)}
    for (version, mode), p in expected_p.items():
        masked, mask = mask_code(code, version=version, mode=mode, value=7, r=r, u=u)
        assert torch.equal(mask, u < p[:, None, None]), (version, mode)
        assert torch.equal(masked, torch.where(mask, torch.full_like(code, 7), code))
    assert torch.equal(code, torch.arange(18).reshape(2, 3, 3) % 7)  # not modified
    with pytest.raises(ValueError, match="root"):
        mask_code(code, version="v1", mode="root", value=7, r=r, u=u)
    noise = torch.full_like(code, 5)
    masked, mask = mask_code(code, version="v1", mode="linear", value=-1, r=r, u=u, random_codes=noise)
    assert torch.equal(masked, torch.where(mask, noise, code))
    with pytest.raises(ValueError, match="random codes"):
        mask_code(code, version="v2", mode="linear", value=-1, r=r, u=u, random_codes=noise)


@pytest.mark.parametrize("kind", ["taming", "llamagen"])
def test_vqgan_encode_decode_paths(kind):
    torch.manual_seed(0)
    if kind == "taming":  # attention at 16x16 of a 32 px input, as the release's at 256 px
        vqgan = build_vqgan(dict(kind="taming", codebook_size=24, token_size=8, ch=32, ch_mult=(1, 2),
                                 num_res_blocks=1, resolution=32, z_channels=32))
        assert len(vqgan.encoder.down[1].attn) == 1
    else:
        vqgan = build_vqgan(dict(kind="llamagen", codebook_size=24, codebook_embed_dim=8, ch=32, ch_mult=(1, 2),
                                 num_res_blocks=1, z_channels=32))
        assert torch.allclose(vqgan.quantize.embedding.weight.norm(dim=-1), torch.ones(24))  # normalised at init
    with torch.no_grad():
        vqgan.quantize.embedding.weight.normal_()
    vqgan.eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    z_q, indices = vqgan.encode(x)
    assert z_q.shape == (2, 8, 16, 16) and indices.shape == (2, 16, 16) and indices.dtype == torch.int64
    # indices: nearest codebook row of quant_conv(encoder(x)) (both L2-normalised for LlamaGen)
    z = vqgan.quant_conv(vqgan.encoder(x)).permute(0, 2, 3, 1).double()
    codebook = vqgan.quantize.embedding.weight.double()
    if kind == "llamagen":
        z, codebook = F.normalize(z, dim=-1), F.normalize(codebook, dim=-1)
    assert torch.equal(torch.cdist(z.reshape(-1, 8), codebook).argmin(-1).reshape(2, 16, 16), indices)
    images = vqgan.decode_code(indices)
    assert images.shape == (2, 3, 32, 32)
    torch.testing.assert_close(images, vqgan.decode(z_q), rtol=1e-4, atol=1e-4)
    # the project's [0, 1] contract: tokenize / decode_tokens / forward
    assert torch.equal(tokenize(vqgan, (x + 1) / 2), indices.reshape(2, -1))
    torch.testing.assert_close(vqgan.decode_tokens(indices.reshape(2, -1)), (images + 1) / 2)
    recon, info = vqgan((x + 1) / 2)
    assert torch.equal(info["min_encoding_indices"], indices)
    torch.testing.assert_close(recon, (vqgan.decode(z_q) + 1) / 2)
    if kind == "llamagen":  # the FIFO of recent indices, in training mode only
        vqgan.train()
        vqgan.encode(x)
        assert torch.equal(vqgan.quantize.codebook_used[-512:], indices.reshape(-1).float())
        assert vqgan.quantize.codebook_used[:-512].abs().sum() == 0


def test_config_builders_take_k_and_the_grid_from_the_vqgan():
    reduced = {"hidden_dim": 32, "depth": 1, "heads": 2, "mlp_dim": 64, "model.vq_model.codebook_size": 20,
               "dataset.preprocessing.resolution": 64}
    for name, cls in (("maskgit_pytorch_v1_base_512", "MaskTransformer"), ("maskgit_pytorch_v2_small_384",
                                                                           "HaltonTransformer")):
        with torch.device("meta"):
            model = build_generator(preset_config(name, reduced))
        assert type(model).__name__ == cls and (model.codebook_size, model.grid_size, model.mask_token) == (20, 4, 20)
    with torch.device("meta"):
        vq = build_tokenizer(preset_config("maskgit_pytorch_v2_vqgan_llamagen_vq16"))
    assert (vq.codebook_size, vq.token_bits, vq.token_grid(384)) == (16384, 14, (24, 24))
