"""Iterative sampling: schedule counts, guidance, determinism, batch independence, official procedure."""
import math

import pytest
import torch
from torch import nn

from modeling.generator import BitTokenTransformer
from modeling import sampling_config
from modeling.sampling import (SamplingConfig, guidance_scale_at, num_to_keep_masked, per_sample_generators, sample,
                               sample_grid)




class StandInTokenizer(nn.Module):
    """decode_tokens((B, N) indices) -> (B, 3, h, w) images that encode the indices (for checks)."""

    def __init__(self, bits):
        super().__init__()
        self.bits = bits
        self.calls = []

    def decode_tokens(self, indices):
        self.calls.append(indices.clone())
        side = math.isqrt(indices.shape[1])
        return (indices.float() / 2 ** self.bits).view(-1, 1, side, side).expand(-1, 3, -1, -1)


def tiny_model(seq_len=16, bits=6, seed=0):
    torch.manual_seed(seed)
    model = BitTokenTransformer(bits=bits, codebook_splits=2, seq_len=seq_len, hidden_dim=32, depth=1, heads=4,
                                mlp_dim=64, dropout=0.1, num_classes=10).eval()
    with torch.no_grad():  # peaked, class-dependent predictions instead of near-uniform ones
        model.prediction_layer.weight.mul_(100)
        model.class_emb.weight.mul_(50)
    return model


SETTINGS = dict(num_steps=8, guidance_scale=3.0, guidance_annealing="cosine", scale_pow=2.5,
                randomize_temperature=4.0)


def test_keep_masked_counts_for_64_arccos_steps():
    counts = [num_to_keep_masked(i, 64, 512) for i in range(64)]
    assert counts[:3] == [506, 501, 496] and counts[-5:-1] == [115, 100, 81, 57]
    # the sampler realises exactly these counts (clamped to >= 1) for every sample
    seen = []
    model = tiny_model(seq_len=256)
    sample(model, None, [1, 2], seeds=[0, 1], num_steps=64, guidance_scale=2.0,
           on_step=lambda step, sampled, tokens: seen.append((tokens == model.mask_token).sum(dim=(1, 2)).tolist()))
    assert seen == [[max(c, 1)] * 2 for c in counts]


def test_guidance_schedules():
    assert guidance_scale_at(0, 64, 7.1, "cosine", 3.0) == 0.0  # i/S convention: step 0 unguided
    assert 0 < guidance_scale_at(63, 64, 7.1, "cosine", 3.0) < 7.1
    assert guidance_scale_at(32, 64, 7.1, "cosine", 1.0) == pytest.approx(7.1 / 2, rel=1e-6)
    assert guidance_scale_at(16, 64, 2.0, "linear") == 0.5
    assert guidance_scale_at(0, 64, 2.0, "none") == 2.0
    with pytest.raises(ValueError, match="guidance_annealing"):
        guidance_scale_at(0, 8, 1.0, "exp")


def test_seeded_reproducible_and_decoded():
    model, tokenizer = tiny_model(), StandInTokenizer(6)
    images, tokens = sample(model, tokenizer, [3, 4], seeds=[5, 6], return_tokens=True, **SETTINGS)
    again = sample(model, None, [3, 4], seeds=[5, 6], **SETTINGS)
    other = sample(model, None, [3, 4], seeds=[7, 8], **SETTINGS)
    assert tokens.shape == (2, 16) and tokens.dtype == torch.int64
    assert torch.equal(tokens, again) and not torch.equal(tokens, other)
    assert 0 <= tokens.min() and tokens.max() < 2 ** 6
    assert torch.equal(tokenizer.calls[0], tokens) and images.shape == (2, 3, 4, 4)
    assert not model.training


def test_batch_independence():
    model = tiny_model()
    alone = sample(model, None, [3], seeds=[11], **SETTINGS)
    batch = sample(model, None, [5, 3, 7], seeds=[1, 11, 2], **SETTINGS)
    assert torch.equal(batch[1], alone[0])
    assert not torch.equal(batch[0], batch[1])


def test_skipping_the_unguided_pass_changes_nothing():
    model = tiny_model()
    for annealing in ("cosine", "linear"):
        kwargs = {**SETTINGS, "guidance_annealing": annealing}
        fast = sample(model, None, [1, 2, 3], seeds=0, skip_unguided_pass=True, **kwargs)
        full = sample(model, None, [1, 2, 3], seeds=0, skip_unguided_pass=False, **kwargs)
        assert torch.equal(fast, full)


def test_generator_and_int_seeds():
    gens = per_sample_generators(10, 3)
    assert [g.initial_seed() for g in gens] == [10, 11, 12]
    model = tiny_model()
    a = sample(model, None, [1, 2], seeds=torch.Generator().manual_seed(0), **SETTINGS)
    b = sample(model, None, [1, 2], seeds=torch.Generator().manual_seed(0), **SETTINGS)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="one seed per sample"):
        sample(model, None, [1, 2], seeds=[1], **SETTINGS)
    with pytest.raises(ValueError, match="class ids"):
        sample(model, None, [10], seeds=[1], **SETTINGS)


def test_bf16_autocast_path_runs():
    model = tiny_model()
    tokens = sample(model, None, [1, 2], seeds=0, autocast_dtype=torch.bfloat16, **SETTINGS)
    assert tokens.shape == (2, 16) and 0 <= tokens.min() and tokens.max() < 64


def test_sampling_config_from_config():
    settings = sampling_config({"model": {"mlm_model": {"num_steps": 128, "randomize_temperature": 9.0}}})
    assert settings.num_steps == 128 and settings.randomize_temperature == 9.0
    assert settings.mask_schedule == "arccos" and settings.guidance_annealing == "cosine"
    assert sampling_config({}) == SamplingConfig()  # the schema's defaults are the sampler's defaults


def test_settings_object_and_keyword_overrides_agree():
    model = tiny_model()
    by_object = sample(model, None, [1, 2], seeds=[4, 5], settings=SamplingConfig(**SETTINGS))
    by_keywords = sample(model, None, [1, 2], seeds=[4, 5], **SETTINGS)
    assert torch.equal(by_object, by_keywords)
    with pytest.raises(TypeError, match="unknown sampling settings"):
        sample(model, None, [1], seeds=[0], num_step=4)


def test_sample_grid_is_row_major_and_batch_independent():
    model, tokenizer = tiny_model(), StandInTokenizer(6)
    grid = sample_grid(model, tokenizer, [3, 7], per_class=3, seed=10, batch_size=4, **SETTINGS)
    one_by_one = torch.cat([sample(model, tokenizer, [c], seeds=[10 + k], **SETTINGS)
                            for k, c in enumerate([3, 3, 3, 7, 7, 7])]).clamp(0, 1)
    assert grid.shape == (6, 3, 4, 4) and torch.equal(grid, one_by_one)


def test_noise_hook_is_asked_in_the_official_order_and_shapes():
    model, calls = tiny_model(), []

    def noise(kind, index, shape):
        calls.append((kind, index, shape))
        return torch.zeros(shape) if kind == "confidence" else -torch.log(-torch.log(torch.rand(shape)))

    sample(model, None, [1, 2], settings=SamplingConfig(**SETTINGS), noise=noise)
    expected = []
    for step in range(SETTINGS["num_steps"]):
        expected += [("categorical", step, (2, 16, 2, 8)), ("confidence", step, (2, 16, 2))]
    assert calls == expected
    with pytest.raises(ValueError, match="exactly the requested shape"):
        sample(model, None, [1], noise=lambda kind, index, shape: torch.zeros(3), **SETTINGS)


# ---------------------------------------------------------------- literal transcription of the official sampler
def official_sample(model, labels, draw, num_steps, guidance_scale, guidance_annealing, scale_pow,
                    randomize_temperature, softmax_temperature=1.0):
    """Official procedure (sample-0 shared count, torch.clamp semantics, fp32 guidance). Its two random draws per
    step come from `draw(step, probs) -> (categorical draw (B, N, S), standard Gumbel (B, N, S))`."""
    b, n, s, mask_token = len(labels), model.seq_len, model.splits, model.mask_token
    masked_tokens = torch.full((b, n, s), mask_token)
    mask = masked_tokens == mask_token
    drop = torch.ones(b, dtype=torch.bool)
    for i in range(num_steps):
        progress = (i + 1) / num_steps
        logits = model(torch.cat([masked_tokens, masked_tokens]), torch.cat([labels, labels]), torch.cat([~drop, drop]))
        cond, uncond = logits.chunk(2)
        if guidance_annealing == "none":
            step_scale = 1.0
        elif guidance_annealing == "linear":
            step_scale = i / num_steps
        else:
            step_scale = (1 - torch.cos(((i / num_steps) ** (torch.ones(1) * scale_pow)) * torch.pi)) * 1 / 2
        logits = cond + (guidance_scale * step_scale) * (cond - uncond)
        probs = torch.softmax(logits / softmax_temperature, dim=-1)
        predicted, gumbel = draw(i, probs)
        num_masked = mask.sum(dim=(1, 2))[0]
        predicted = torch.where(mask, predicted, masked_tokens)
        confidence = torch.gather(probs, -1, predicted.unsqueeze(-1)).squeeze(-1)
        confidence = torch.where(mask, confidence, torch.inf)
        confidence = torch.log(confidence) + gumbel * randomize_temperature * (1 - progress)
        ratio = torch.clamp(torch.acos(torch.tensor(progress)) / (math.pi * 0.5), 1e-6, 1.0)
        to_mask = torch.clamp(torch.floor(ratio * n * s), torch.ones_like(num_masked), num_masked - 1).long()
        threshold = torch.sort(confidence.view(b, -1), dim=-1).values[:, to_mask - 1]
        masked_tokens = torch.where(confidence <= threshold[:, None, None], mask_token, predicted)
        mask = masked_tokens == mask_token
    return model.combine_tokens(predicted)


def draws_from_seeded_streams(seeds, n, s):
    """Our default draws: per-sample uniforms, inverse-CDF categorical and Gumbel from the second uniform."""
    gens = per_sample_generators(seeds, len(seeds))
    f32 = torch.finfo(torch.float32)

    def draw(step, probs):
        u = torch.stack([torch.rand((2, n, s), generator=g) for g in gens])
        cdf = probs.cumsum(-1)
        predicted = (cdf <= (u[:, 0] * cdf[..., -1]).unsqueeze(-1)).sum(-1).clamp(max=probs.shape[-1] - 1)
        return predicted, -torch.log(-torch.log(u[:, 1].clamp(f32.tiny, 1 - f32.eps)))
    return draw


def draws_from_noise_tables(tables):
    """The Categorical draw in its Gumbel-max form on supplied noise, and the supplied confidence noise."""
    return lambda step, probs: (torch.argmax(torch.log(probs) + tables["categorical"][step], dim=-1),
                                tables["confidence"][step])


@pytest.mark.parametrize("annealing", ["cosine", "linear", "none"])
def test_default_draws_follow_the_official_procedure(annealing):
    model = tiny_model(seed=3)
    settings = {**SETTINGS, "guidance_annealing": annealing, "num_steps": 12}
    ours = sample(model, None, [1, 4, 9], seeds=[3, 4, 5], skip_unguided_pass=False, **settings)
    expected = official_sample(model, torch.tensor([1, 4, 9]), draws_from_seeded_streams([3, 4, 5], 16, 2), **settings)
    assert torch.equal(ours, expected)


@pytest.mark.parametrize("annealing", ["cosine", "linear", "none"])
def test_matches_official_sampler_on_supplied_noise(annealing):
    """The public noise hook: the same noise in both samplers gives the same tokens (no private function patched)."""
    model = tiny_model(seed=5)
    settings = {**SETTINGS, "guidance_annealing": annealing, "num_steps": 12}
    g = torch.Generator().manual_seed(0)
    gumbel = lambda *shape: -torch.log(-torch.log(torch.rand(shape, generator=g).clamp(1e-20, 1 - 1e-7)))  # noqa: E731
    tables = {"categorical": [gumbel(3, 16, 2, 8) for _ in range(12)], "confidence": [gumbel(3, 16, 2) for _ in range(12)]}
    hook = lambda kind, index, shape: tables[kind][index]  # noqa: E731
    expected = official_sample(model, torch.tensor([1, 4, 9]), draws_from_noise_tables(tables), **settings)
    assert torch.equal(sample(model, None, [1, 4, 9], noise=hook, skip_unguided_pass=False, **settings), expected)
    # skipping the unguided pass where the guidance scale is 0 (a pure speed-up) changes nothing on the same noise
    assert torch.equal(sample(model, None, [1, 4, 9], noise=hook, **settings), expected)
