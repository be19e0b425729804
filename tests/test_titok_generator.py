"""TiTok generators (ImageBert / UViTBert): released layouts, forward numerics, training masking, sampling."""
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from modeling.titok.generator import ImageBert, UViTBert, build_titok_generator, keep_masked_target

LAYOUTS = Path(__file__).parent / "fixtures" / "checkpoint_layout_titok"
ARCH_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "dropout",
             "attn_drop", "image_seq_len", "condition_num_classes")
V, C = 16, 10  # reduced codebook and class count


def tiny(cls=ImageBert, seq_len=16, seed=0, layers=2, spread=0.3):
    torch.manual_seed(seed)
    model = cls(image_seq_len=seq_len, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                intermediate_size=64, dropout=0.1, attn_drop=0.1, codebook_size=V, condition_num_classes=C)
    with torch.no_grad():  # every parameter non-trivial (LayerNorm gains/biases, biases, ...)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * spread)
    return model.eval()


def random_ids(batch, seq_len, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (batch, seq_len), generator=g)
    return ids.masked_fill(torch.rand(batch, seq_len, generator=g) < 0.3, V)  # some mask tokens


# ---------------------------------------------------------------------------------------------------- layouts
@pytest.mark.parametrize("name", ["titok_l32", "titok_b64", "titok_s128", "titok_maskgit"])
def test_released_layouts(name):
    manifest = json.loads((LAYOUTS / f"{name}__generator.json").read_text())
    arch = {k: manifest["generator"][k] for k in ARCH_KEYS}
    with torch.device("meta"):
        model = build_titok_generator(codebook_size=manifest["codebook_size"], **arch)
    assert isinstance(model, UViTBert if arch["model_type"] == "UViT" else ImageBert)
    sd = model.state_dict()
    assert [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in sd.items()] == manifest["keys"]
    assert len(sd) == manifest["num_state_dict_entries"]
    assert sum(v.numel() for v in sd.values()) == manifest["params"]
    for prefix, count in manifest["params_by_submodule"].items():
        assert sum(v.numel() for k, v in sd.items() if k == prefix or k.startswith(prefix + ".")) == count, prefix
    assert len(list(model.buffers())) == 0
    assert (model.mask_token_id, model.codebook_size, model.image_seq_len, model.num_classes) == (
        4096, 4096, arch["image_seq_len"], 1000)
    assert model.null_token_id == 5097 and model.vocab_size == 5098


def test_builder_rejects_unknown_model_type():
    with pytest.raises(ValueError, match="model_type"):
        build_titok_generator(model_type="DiT", hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=64, dropout=0.0, attn_drop=0.0, image_seq_len=8,
                              condition_num_classes=C, codebook_size=V)


# ---------------------------------------------------------------------------------------------------- forward
def token_sequence(model, ids, condition, drop):
    null = model.codebook_size + 1 + model.num_classes
    cls = torch.where(drop, torch.full_like(condition, null), condition + model.codebook_size + 1)
    return torch.cat([cls[:, None], ids], dim=1)


def reference_image_bert(model, ids, condition, drop):
    """Post-LN BERT restated with torch's stock TransformerEncoderLayer (norm_first=False, GELU, eps 1e-12)."""
    sd = model.state_dict()
    seq = token_sequence(model, ids, condition, drop)
    e = "model.embeddings."
    x = (sd[e + "word_embeddings.weight"][seq] + sd[e + "token_type_embeddings.weight"][0]
         + sd[e + "position_embeddings.weight"][: seq.shape[1]])
    x = F.layer_norm(x, (32,), sd[e + "LayerNorm.weight"], sd[e + "LayerNorm.bias"], 1e-12)
    for i in range(model.num_hidden_layers):
        p = f"model.encoder.layer.{i}."
        layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, activation="gelu", layer_norm_eps=1e-12,
                                           batch_first=True).eval()
        layer.load_state_dict({
            "self_attn.in_proj_weight": torch.cat([sd[p + f"attention.self.{n}.weight"] for n in ("query", "key", "value")]),
            "self_attn.in_proj_bias": torch.cat([sd[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")]),
            "self_attn.out_proj.weight": sd[p + "attention.output.dense.weight"],
            "self_attn.out_proj.bias": sd[p + "attention.output.dense.bias"],
            "linear1.weight": sd[p + "intermediate.dense.weight"], "linear1.bias": sd[p + "intermediate.dense.bias"],
            "linear2.weight": sd[p + "output.dense.weight"], "linear2.bias": sd[p + "output.dense.bias"],
            "norm1.weight": sd[p + "attention.output.LayerNorm.weight"],
            "norm1.bias": sd[p + "attention.output.LayerNorm.bias"],
            "norm2.weight": sd[p + "output.LayerNorm.weight"], "norm2.bias": sd[p + "output.LayerNorm.bias"]})
        x = layer(x)
    return F.linear(x[:, 1:], sd["model.lm_head.weight"], sd["model.lm_head.bias"])


def reference_uvit(model, ids, condition, drop):
    """Pre-LN U-ViT restated with nn.MultiheadAttention (zero q/k/v bias) and explicit skip indices."""
    sd = model.state_dict()
    seq = token_sequence(model, ids, condition, drop)
    x = sd["embeddings.weight"][seq] + sd["pos_embed"][:, : seq.shape[1]]
    half = model.num_hidden_layers // 2

    def block(p, x, skip=None):
        if skip is not None:
            x = F.linear(torch.cat([x, skip], -1), sd[p + "skip_linear.weight"], sd[p + "skip_linear.bias"])
        attn = nn.MultiheadAttention(32, 4, batch_first=True).eval()
        attn.load_state_dict({"in_proj_weight": sd[p + "attn.qkv.weight"], "in_proj_bias": torch.zeros(96),
                              "out_proj.weight": sd[p + "attn.proj.weight"], "out_proj.bias": sd[p + "attn.proj.bias"]})
        h = F.layer_norm(x, (32,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], 1e-5)
        x = x + attn(h, h, h, need_weights=False)[0]
        h = F.layer_norm(x, (32,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], 1e-5)
        h = F.linear(F.gelu(F.linear(h, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"])),
                     sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])
        return x + h

    ins = []
    for i in range(half):
        x = block(f"in_blocks.{i}.", x)
        ins.append(x)
    x = block("mid_block.", x)
    for j in range(half):
        x = block(f"out_blocks.{j}.", x, ins[half - 1 - j])  # first out block takes the last in block
    x = F.layer_norm(x, (32,), sd["norm.weight"], sd["norm.bias"], 1e-5)
    return F.linear(x[:, 1:], sd["lm_head.weight"], sd["lm_head.bias"])


@pytest.mark.parametrize("cls,reference,layers", [(ImageBert, reference_image_bert, 2), (UViTBert, reference_uvit, 4)])
def test_forward_matches_restatement_and_leaves_inputs_alone(cls, reference, layers):
    model = tiny(cls, seq_len=12, layers=layers)
    ids, condition = random_ids(3, 12), torch.tensor([0, 4, 9])
    drop = torch.tensor([False, True, False])
    ids_before, condition_before = ids.clone(), condition.clone()
    with torch.no_grad():
        logits = model(ids, condition, drop_mask=drop)
        expected = reference(model, ids, condition, drop)
        model(ids, condition, cond_drop_prob=1.0)
    assert logits.shape == (3, 12, V) and logits.dtype == torch.float32
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    assert torch.equal(ids, ids_before) and torch.equal(condition, condition_before)


def test_class_dropping_draw_and_null_class():
    model = tiny()
    ids, condition = random_ids(6, 16), torch.arange(6)
    torch.manual_seed(7)
    expected_drop = torch.rand(6) < 0.5
    torch.manual_seed(7)
    with torch.no_grad():
        drawn = model(ids, condition, cond_drop_prob=0.5)
        assert torch.equal(drawn, model(ids, condition, drop_mask=expected_drop))
        # a dropped sample ignores its class; cond_drop_prob 0 / 1 equal no / all dropping
        all_dropped = model(ids, condition, drop_mask=torch.ones(6, dtype=torch.bool))
        assert torch.equal(all_dropped, model(ids, (condition + 3) % C, drop_mask=torch.ones(6, dtype=torch.bool)))
        assert torch.equal(all_dropped, model(ids, condition, cond_drop_prob=1.0))
        kept = model(ids, condition, drop_mask=torch.zeros(6, dtype=torch.bool))
        assert torch.equal(kept, model(ids, condition, cond_drop_prob=0.0)) and not torch.equal(kept, all_dropped)
    # the draw is consumed even for cond_drop_prob 0 (official RNG consumption)
    torch.manual_seed(3)
    with torch.no_grad():
        model(ids, condition, cond_drop_prob=0.0)
    after = torch.rand(1)
    torch.manual_seed(3)
    torch.rand(6)
    assert torch.equal(after, torch.rand(1))


def test_uvit_ignores_dropout_and_imagebert_uses_it():
    ids, condition, keep = random_ids(2, 16), torch.tensor([1, 2]), torch.zeros(2, dtype=torch.bool)
    uvit = tiny(UViTBert)
    with torch.no_grad():
        assert torch.equal(uvit.train()(ids, condition, drop_mask=keep), uvit.eval()(ids, condition, drop_mask=keep))
        bert = tiny(ImageBert)
        assert not torch.equal(bert.train()(ids, condition, drop_mask=keep), bert.eval()(ids, condition, drop_mask=keep))


# ---------------------------------------------------------------------------------------------------- masking
def reference_masking(tokens, t, u, mask_id):
    """count = max(round_half_even(N * clamp(acos(t)/(pi/2), 1e-6, 1)), 1); mask j iff argsort(u)[j] < count."""
    n = tokens.shape[1]
    masks = torch.zeros_like(tokens, dtype=torch.bool)
    for b in range(tokens.shape[0]):
        ratio = min(max(math.acos(float(t[b])) / (math.pi / 2), 1e-6), 1.0)
        count = max(round(n * ratio), 1)  # Python's round is half to even, like torch.round
        perm = sorted(range(n), key=lambda j: float(u[b, j]))  # perm[j] = index of the j-th smallest draw
        for j in range(n):
            masks[b, j] = perm[j] < count
    return torch.where(masks, mask_id, tokens), masks


def test_masking_input_tokens_reproduces_the_argsort_quirk():
    model = tiny()
    tokens = torch.tensor([[3, 4, 5, 6]])
    u = torch.tensor([[0.9, 0.1, 0.5, 0.3]])
    t = torch.tensor([math.cos(0.45 * math.pi / 2)])  # ratio 0.45 -> round(1.8) = 2 masked
    masked, masks = model.masking_input_tokens(tokens, timesteps=t, noise=u)
    # argsort(u) = [1, 3, 2, 0]: positions 0 and 3 (not the two smallest draws, positions 1 and 3)
    assert masks.tolist() == [[True, False, False, True]]
    assert masked.tolist() == [[V, 4, 5, V]] and tokens.tolist() == [[3, 4, 5, 6]]

    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, V, (64, 16), generator=g)
    t = torch.rand(64, generator=g)
    t[:3] = torch.tensor([0.0, 1.0, 0.999999])  # all masked, at least one, at least one
    u = torch.rand(64, 16, generator=g)
    masked, masks = model.masking_input_tokens(tokens, timesteps=t, noise=u)
    expected_masked, expected_masks = reference_masking(tokens, t, u, V)
    assert torch.equal(masks, expected_masks) and torch.equal(masked, expected_masked)
    assert masks[0].all() and masks[1].sum() == 1 and masks[2].sum() == 1
    ranks = u.argsort(-1).argsort(-1)  # the non-quirk variant: same counts, other positions
    assert torch.equal(masks.sum(-1), (ranks < masks.sum(-1, keepdim=True)).sum(-1))
    assert not torch.equal(masks, ranks < masks.sum(-1, keepdim=True))


def test_masking_input_tokens_draws_like_the_official():
    model, tokens = tiny(), torch.randint(0, V, (5, 16))
    torch.manual_seed(11)
    t, u = torch.rand(5), torch.rand(5, 16)
    torch.manual_seed(11)
    drawn = model.masking_input_tokens(tokens)
    given = model.masking_input_tokens(tokens, timesteps=t, noise=u)
    assert torch.equal(drawn[0], given[0]) and torch.equal(drawn[1], given[1])


# ---------------------------------------------------------------------------------------------------- sampling
def official_gumbel(u):
    return -torch.log((-torch.log(u.clamp(min=1e-20))).clamp(min=1e-20))


def noise_tables(batch, seq_len, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"categorical": [official_gumbel(torch.rand(batch, seq_len, V, generator=g)) for _ in range(steps)],
            "confidence": [official_gumbel(torch.rand(batch, seq_len, generator=g)) for _ in range(steps)]}


def official_generate(model, condition, tables, guidance_scale, guidance_decay, guidance_scale_pow,
                      randomize_temperature, softmax_temperature_annealing, num_sample_steps):
    """titok-facts §6.5 restated: separate cond / uncond forwards (drawn dropping with p 0 / 1), Gumbel-max
    with the annealed temperature, sample-0 keep-masked count, ties at the cut-off re-masked."""
    b, n, mask_id, steps = len(condition), model.image_seq_len, model.mask_token_id, num_sample_steps
    ids = torch.full((b, n), mask_id)
    cfg = guidance_scale if guidance_decay == "constant" else 0.0
    for i in range(steps):
        r = (i + 1) / steps
        temp = randomize_temperature * (1.0 - r)
        is_mask = ids == mask_id
        if guidance_decay == "power-cosine":
            exponent = torch.ones(1) * guidance_scale_pow
            cfg = (guidance_scale - 1) * ((1 - torch.cos((i / steps) ** exponent * torch.pi)) * 1 / 2) + 1
        if cfg != 0:
            cond, uncond = model(ids, condition, cond_drop_prob=0.0), model(ids, condition, cond_drop_prob=1.0)
            logits = uncond + (cond - uncond) * cfg if guidance_decay == "power-cosine" else cond + (cond - uncond) * cfg
        else:
            logits = model(ids, condition, cond_drop_prob=0.0)
        if softmax_temperature_annealing:
            logits = logits / (0.5 + 0.8 * (1 - r))
        sampled = (logits + temp * tables["categorical"][i]).argmax(-1)
        score = torch.gather(logits, -1, sampled[..., None])[..., 0]
        sampled = torch.where(is_mask, sampled, ids)
        score = torch.where(is_mask, score, torch.inf)
        count = max(1, min(int(is_mask[0].sum()) - 1, math.floor(n * math.acos(r) / (math.pi * 0.5))))
        confidence = score + temp * tables["confidence"][i]
        cut_off = torch.sort(confidence, dim=-1).values[:, count - 1:count]
        ids = sampled if i == steps - 1 else torch.where(confidence <= cut_off, mask_id, sampled)
        if guidance_decay == "linear":
            cfg = r * guidance_scale
    return ids


SAMPLING = dict(guidance_scale=2.5, guidance_scale_pow=2.0, randomize_temperature=3.0, num_sample_steps=8)


@pytest.mark.parametrize("annealing", [False, True])
@pytest.mark.parametrize("decay", ["constant", "linear", "power-cosine"])
def test_generate_matches_official_on_supplied_noise(decay, annealing):
    model, condition = tiny(seed=2), torch.tensor([1, 4, 9])
    tables = noise_tables(3, 16, 8)
    settings = dict(SAMPLING, guidance_decay=decay, softmax_temperature_annealing=annealing)
    with torch.no_grad():
        expected = official_generate(model, condition, tables, **settings)
    hook = lambda kind, index, shape: tables[kind][index]  # noqa: E731
    for shared in (False, True):  # no ties here: per-sample and sample-0 counts agree
        ids = model.generate(condition, noise=hook, shared_count=shared, **settings)
        assert ids.dtype == torch.int64 and torch.equal(ids, expected)
    assert ids.max() < V


def test_uvit_generate_matches_official_on_supplied_noise():
    model, condition = tiny(UViTBert, seed=4, layers=4), torch.tensor([0, 7])
    tables = noise_tables(2, 16, 8, seed=3)
    settings = dict(SAMPLING, guidance_decay="power-cosine", softmax_temperature_annealing=True)
    with torch.no_grad():
        expected = official_generate(model, condition, tables, **settings)
    hook = lambda kind, index, shape: tables[kind][index]  # noqa: E731
    assert torch.equal(model.generate(condition, noise=hook, **settings), expected)


def test_noise_hook_order_shapes_and_validation():
    model, calls = tiny(), []

    def hook(kind, index, shape):
        calls.append((kind, index, shape))
        return official_gumbel(torch.rand(shape))

    model.generate([1, 2], noise=hook, **SAMPLING)
    assert calls == [c for i in range(8) for c in (("categorical", i, (2, 16, V)), ("confidence", i, (2, 16)))]
    with pytest.raises(ValueError, match="exactly the requested shape"):
        model.generate([1], noise=lambda kind, index, shape: torch.zeros(3), **SAMPLING)
    with pytest.raises(ValueError, match="guidance_decay"):
        model.generate([1], guidance_decay="cosine")
    with pytest.raises(ValueError, match="class ids"):
        model.generate([C])


@pytest.mark.parametrize("seq_len,steps,head,tail", [
    (32, 8, [29, 26, 24, 21, 18, 14, 10, 0], []),
    (64, 8, [58, 53, 48, 42, 36, 29, 20, 0], []),
    (128, 64, [126, 125, 124, 122], [25, 20, 14, 0]),
])
def test_still_masked_counts(seq_len, steps, head, tail):
    model = tiny(seq_len=seq_len, layers=1)
    ids, history = model.generate([1, 2], seeds=[0, 1], num_sample_steps=steps, guidance_decay="linear",
                                  return_steps=True)
    counts = [(h == V).sum(-1).tolist() for h in history]
    assert all(a == b for a, b in counts) and len(counts) == steps  # identical for every sample
    counts = [a for a, _ in counts]
    assert counts[:len(head)] == head and counts[len(counts) - len(tail):] == tail
    expected = [max(1, math.floor(seq_len * math.acos((i + 1) / steps) / (math.pi / 2))) for i in range(steps - 1)]
    assert counts == expected + [0]
    assert [keep_masked_target(i, steps, seq_len) for i in range(steps - 1)] == expected
    assert torch.equal(ids, history[-1]) and (ids < V).all()


def test_shared_count_option_reproduces_sample_zero_counting_under_ties():
    """Zero logits and zero confidence noise for sample 0: all its positions tie and stay masked, so its masked
    count differs from sample 1's; only then do sample-0 and per-sample counting part."""
    model = tiny(seq_len=8)
    with torch.no_grad():
        model.model.lm_head.weight.zero_()
        model.model.lm_head.bias.zero_()
    settings = dict(SAMPLING, num_sample_steps=16, guidance_decay="constant", softmax_temperature_annealing=False)
    tables = noise_tables(2, 8, 16, seed=5)
    for table in tables["confidence"]:
        table[0] = 0.0
    hook = lambda kind, index, shape: tables[kind][index]  # noqa: E731
    with torch.no_grad():
        expected = official_generate(model, torch.tensor([1, 2]), tables, **settings)
    shared, shared_steps = model.generate([1, 2], noise=hook, shared_count=True, return_steps=True, **settings)
    assert torch.equal(shared, expected)
    per_sample, steps = model.generate([1, 2], noise=hook, return_steps=True, **settings)
    assert [(s[0] == V).sum().item() for s in steps[:-1]] == [8] * 15  # sample 0 never commits before the end
    alone_tables = {k: [t[1:] for t in v] for k, v in tables.items()}
    alone = model.generate([2], noise=lambda kind, index, shape: alone_tables[kind][index], **settings)
    assert torch.equal(per_sample[1], alone[0])  # per-sample counting: batch-independent
    assert [(s[1] == V).sum().item() for s in steps] != [(s[1] == V).sum().item() for s in shared_steps]


def test_seeded_reproducible_and_batch_independent():
    model = tiny(seed=6)
    settings = dict(SAMPLING, guidance_decay="linear", softmax_temperature_annealing=True)
    model.train()
    a = model.generate([3, 4], seeds=[5, 6], **settings)
    assert model.training  # mode restored
    b = model.generate(torch.tensor([3, 4]), seeds=[5, 6], **settings)
    other = model.generate([3, 4], seeds=[7, 8], **settings)
    assert torch.equal(a, b) and not torch.equal(a, other)
    alone = model.generate([3], seeds=[11], **settings)
    batch = model.generate([5, 3, 7], seeds=[1, 11, 2], **settings)
    assert torch.equal(batch[1], alone[0]) and not torch.equal(batch[0], batch[1])
    torch.manual_seed(0)
    c = model.generate([3, 4], **settings)
    torch.manual_seed(0)
    assert torch.equal(c, model.generate([3, 4], **settings))  # seeds None: from the global RNG


def test_default_categorical_draw_has_the_gumbel_max_law():
    """Without a hook each position draws from softmax(logits / T) by inverse CDF: the law of the official
    argmax(logits + T * G)."""
    logits, temperature, n = torch.tensor([2.0, 0.5, -1.0, 1.0, 0.0]), 1.7, 40000
    g = torch.Generator().manual_seed(0)
    ours = ImageBert._draw(logits.expand(1, n, 5), temperature, torch.rand(1, n, generator=g))
    gumbel_max = (logits + temperature * official_gumbel(torch.rand(n, 5, generator=g))).argmax(-1)
    target = torch.softmax(logits / temperature, -1)
    for draws in (ours.flatten(), gumbel_max):
        freq = torch.bincount(draws, minlength=5).float() / n
        torch.testing.assert_close(freq, target, atol=0.01, rtol=0)
    assert torch.equal(ImageBert._draw(logits.expand(1, 3, 5), 0.0, torch.rand(1, 3)), torch.zeros(1, 3).long())
