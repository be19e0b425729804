"""MaskGIT-pytorch (v1) / Halton-MaskGIT (v2) samplers: schedules, Halton order, the three samplers step by step
against restatements of the official procedures (facts §6-8, written here independently of the module), seeded
batch independence, and the MaskBit sampler switch."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from modeling.generator import BitTokenTransformer
from modeling.maskgit_pytorch import BitTokenGrid, confidence_schedule, halton_order, halton_schedule, sample
from modeling.maskgit_pytorch.sampler import SamplerSettingError, official_defaults

K, G = 11, 4  # codebook size (mask id K), grid side


class StandIn(nn.Module):
    """model(tokens [B,G,G], labels, drop) -> logits [B, G*G, K+1] that depend on the context, class and position."""

    def __init__(self, codebook_size=K, grid=G, classes=5, dim=16, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.codebook_size, self.grid_size, self.classes = codebook_size, grid, classes
        self.tok = nn.Embedding(codebook_size + 1, dim)
        self.cls = nn.Embedding(classes + 1, dim)
        self.pos = nn.Parameter(torch.randn(grid * grid, dim))
        self.head = nn.Linear(dim, codebook_size + 1)
        self.calls = 0

    def forward(self, tokens, labels, drop):
        self.calls += 1
        h = self.tok(tokens.flatten(1))
        h = h + h.mean(1, keepdim=True) + self.pos + self.cls(labels.masked_fill(drop, self.classes)).unsqueeze(1)
        return 3 * self.head(torch.tanh(h))


def make_noise(seed=0, grid=G):
    """The noise hook: the same (kind, index) always returns the same draw."""
    cache = {}
    kinds = {"categorical": 1, "topk_categorical": 2, "confidence": 3, "uniform": 4, "roll": 5, "random_code": 6}

    def noise(kind, index, shape):
        key = (kind, index, tuple(shape))
        if key not in cache:
            g = torch.Generator().manual_seed(seed * 100_000 + kinds[kind] * 1000 + index)
            if kind in ("categorical", "topk_categorical"):
                cache[key] = -torch.log(-torch.log(torch.rand(shape, generator=g).clamp(1e-12, 1 - 1e-7)))
            elif kind == "confidence":
                cache[key] = -torch.log(-torch.log(torch.rand(shape, generator=g, dtype=torch.float64)))
            elif kind == "uniform":
                cache[key] = torch.rand(shape, generator=g)
            else:
                cache[key] = torch.randint(0, grid * grid if kind == "roll" else K, shape, generator=g)
        return cache[key]
    return noise


def gumbel_max(prob, gumbel):
    """The categorical draw the noise hook stands for (Gumbel-max for Categorical(prob).sample())."""
    return (prob.log() + gumbel).argmax(-1)


# ---------------------------------------------------------------------------------------------- schedules

def test_confidence_schedules_match_the_official_counts():
    assert confidence_schedule(8, 16, "arccos", version=1) == [1, 18, 26, 32, 38, 43, 48, 50]
    assert confidence_schedule(8, 16, "cosine", version=1) == [1, 12, 22, 32, 41, 47, 51, 50]
    v1_64 = confidence_schedule(64, 16, "arccos", version=1)
    assert sum(v1_64) == 256 and v1_64[-3:] == [6, 6, 5]  # the last-step correction can go below its neighbour
    for mode in ("root", "linear", "square", "cosine", "arccos"):
        assert sum(confidence_schedule(12, 24, mode, version=1)) == 576
    assert confidence_schedule(8, 16, "arccos", version=2) == [0, 23, 47, 72, 99, 129, 167, 256]
    # v2 square is v^2 (cumulative): trunc(256 * (i/7)^2)
    assert confidence_schedule(8, 16, "square", version=2) == [int(256 * (i / 7) ** 2) for i in range(8)]
    assert confidence_schedule(3, 4, [5, 5, 6], version=1) == [5, 5, 6]
    with pytest.raises(ValueError, match="mode"):
        confidence_schedule(8, 16, "exp", version=1)


def test_halton_schedule_counts_and_slices():
    bounds = halton_schedule(8, 16)
    assert [stop for _, stop in bounds] == [20, 41, 62, 85, 110, 138, 173, 256]
    assert [start for start, _ in bounds] == [0, 20, 41, 62, 85, 110, 138, 173]
    stops = [stop for _, stop in halton_schedule(32, 24)]
    assert stops[:4] == [11, 22, 34, 45] and stops[-4:] == [415, 445, 484, 576]
    assert halton_schedule(8, 16, cumulative=True) == [(0, stop) for _, stop in bounds]
    assert [stop for _, stop in halton_schedule(20, 2)] == list(range(1, 21))  # max(i + 1, .) dominates


def test_halton_order_first_cells_and_coverage():
    # radical inverses of n = 1..5: base 2: 1/2, 1/4, 3/4, 1/8, 5/8; base 3: 1/3, 2/3, 1/9, 4/9, 7/9.
    # x 16, floored: rows 8, 4, 12, 2, 10; columns 5 (5.33), 10 (10.67), 1 (1.78), 7 (7.11), 12 (12.44).
    assert halton_order(16)[:5].tolist() == [[8, 5], [4, 10], [12, 1], [2, 7], [10, 12]]
    assert halton_order(16)[5:10].tolist() == [[6, 3], [14, 8], [1, 14], [9, 0], [5, 5]]  # facts §7.2
    # grid 4: n=1 (1/2,1/3)->(2,1); n=2 (1/4,2/3)->(1,2); n=3 (3/4,1/9)->(3,0); n=4 (1/8,4/9)->(0,1)
    assert halton_order(4)[:4].tolist() == [[2, 1], [1, 2], [3, 0], [0, 1]]
    for grid in (4, 16, 24, 48):
        order = halton_order(grid)
        assert order.shape == (grid * grid, 2)
        assert len({tuple(c) for c in order.tolist()}) == grid * grid  # every cell exactly once
    assert len(halton_order(64)) == 4090  # 10,000 points miss 6 cells of a 64x64 grid, as officially


def restated_halton_order(grid, points=10_000):
    def radical_inverse(n, b):  # integer digit reversal: n = sum d_k b^k -> (sum d_k b^(m-1-k)) / b^m
        num, den = 0, 1
        while n:
            n, d = divmod(n, b)
            num, den = num * b + d, den * b
        return num / den
    xy = torch.tensor([[radical_inverse(n, 2), radical_inverse(n, 3)] for n in range(1, points + 1)]) * grid
    cells = torch.floor(xy).long().numpy()
    first = np.unique(cells, return_index=True, axis=0)[1]
    return torch.from_numpy(cells[np.sort(first)])


def test_halton_order_equals_restatement():
    for grid in (8, 24):
        assert torch.equal(halton_order(grid), restated_halton_order(grid))


# ------------------------------------------------------------------------------- official procedures, restated

def guided(model, code, labels, w):
    drop = torch.ones_like(labels, dtype=torch.bool)
    if w == 0:
        return model(code.clone(), labels, ~drop), None
    logit = model(torch.cat([code.clone(), code.clone()]), torch.cat([labels, labels]), torch.cat([~drop, drop]))
    return torch.chunk(logit, 2, dim=0)


def official_v1(model, labels, noise, step, w, sm_temp, r_temp, sched_mode="arccos", init_code=None,
                random_start=False):
    """Facts §6 (MaskGIT.sample, randomize='linear'; random_start: mask_value < 0, the "noise" models)."""
    B, N = len(labels), G * G
    v = torch.linspace(1, 0, step)
    val = torch.arccos(v) / (math.pi * 0.5) if sched_mode == "arccos" else 1 - v
    sche = (val / val.sum()) * N
    sche = sche.round()
    sche[sche == 0] = 1
    sche[-1] += N - sche.sum()
    if init_code is not None:
        code = init_code.clone()
        mask = (init_code == K).float().view(B, N)
    else:
        code = noise("random_code", 0, (B, G, G)).clone() if random_start else torch.full((B, G, G), K)
        mask = torch.ones(B, N)
    l_codes, l_mask = [], []
    for indice, t in enumerate(sche.int().tolist()):
        if mask.sum() < t:
            t = int(mask.sum().item())
        if mask.sum() == 0:
            break
        logit_c, logit_u = guided(model, code, labels, w)
        _w = w * (indice / (len(sche) - 1))
        logit = (1 + _w) * logit_c - _w * logit_u
        prob = torch.softmax(logit * sm_temp, -1)
        pred_code = gumbel_max(prob, noise("categorical", indice, tuple(prob.shape)))
        conf = torch.gather(prob, 2, pred_code.view(B, N, 1))
        ratio = indice / (len(sche) - 1)
        rand = r_temp * noise("confidence", indice, (B, N)).numpy() * (1 - ratio)
        conf = torch.log(conf.squeeze(-1)) + torch.from_numpy(rand)
        conf[~mask.bool()] = -math.inf
        tresh_conf, indice_mask = torch.topk(conf.view(B, -1), k=t, dim=-1)
        tresh_conf = tresh_conf[:, -1]
        conf = (conf >= tresh_conf.unsqueeze(-1)).view(B, G, G)
        f_mask = (mask.view(B, G, G).float() * conf.view(B, G, G).float()).bool()
        code[f_mask] = pred_code.view(B, G, G)[f_mask]
        for i_mask, ind_mask in enumerate(indice_mask):
            mask[i_mask, ind_mask] = 0
        l_codes.append(pred_code.view(B, G, G).clone())
        l_mask.append(mask.view(B, G, G).clone())
    return code, l_codes, l_mask


def official_v2_confidence(model, labels, noise, step, w, sm_temp, r_temp, init_code=None, randomize="linear"):
    """Facts §7.1 (ConfidenceSampler, arccos; randomize 'linear', 'warm_up' or 'none')."""
    B, N = len(labels), G * G
    v = torch.linspace(0, 1, step)
    sche = ((1 - torch.arccos(v) / (math.pi * 0.5)) * N).long().tolist()
    code = init_code.clone().view(B, N) if init_code is not None else torch.full((B, N), K)
    mask = code == K
    l_codes, l_mask = [], []
    for indice, t in enumerate(sche):
        t = max(t, indice + 1)
        logit_c, logit_u = guided(model, code.view(B, G, G), labels, w)
        _w = w * (indice / (step - 1))
        logit = (1 + _w) * logit_c - _w * logit_u
        prob = torch.softmax(logit * sm_temp, -1)
        pred_code = gumbel_max(prob, noise("categorical", indice, tuple(prob.shape)))
        conf = torch.gather(prob, 2, pred_code.view(B, N, 1)).squeeze(-1)
        if randomize == "linear":
            rand = r_temp * noise("confidence", indice, (B, N)).numpy() * (1 - indice / (step - 1))
            conf = torch.log(conf) + torch.from_numpy(rand)
        elif randomize == "warm_up" and indice < 2:
            conf = noise("uniform", indice, (B, N)).clone()
        conf[~mask] = math.inf
        tresh_conf = torch.topk(conf, k=t, dim=-1).values[:, -1:]
        f_mask = conf >= tresh_conf
        code[f_mask] = pred_code[f_mask]
        mask = code == K
        l_codes.append(pred_code.view(B, G, G).clone())
        l_mask.append(mask.view(B, G, G).clone())
    return code.view(B, G, G), l_codes, l_mask


def official_halton(model, labels, noise, step, w, sm_temp_min=1.0, sm_temp_max=1.0, temp_pow=1.0, temp_warmup=0,
                    top_k=-1, randomize=False, cumulative=False, init_code=None):
    """Facts §7.2 (HaltonSampler at f61b0a1) and §7.3 (cumulative, 5ffd61f)."""
    B, N = len(labels), G * G
    base = restated_halton_order(G)
    if randomize:
        offsets = noise("roll", 0, (B,))
        halton_mask = torch.stack([torch.roll(base.clone(), int(offsets[i]), 0) for i in range(B)])
    else:
        halton_mask = base.unsqueeze(0).expand(B, N, 2)
    code = init_code.clone() if init_code is not None else torch.full((B, G, G), K)
    temperature = torch.linspace(sm_temp_min, sm_temp_max, step)
    l_codes, l_mask, prev = [], [], 0
    for index in range(step):
        r = 1 - (torch.arccos(torch.tensor((index + 1) / step)) / (math.pi * 0.5))
        r = max(index + 1, int(r * N))
        _mask = halton_mask[:, (0 if cumulative else prev):r]
        prev = r
        mask = torch.zeros(B, G, G, dtype=torch.long)
        for i_mask in range(B):
            mask[i_mask, _mask[i_mask, :, 0], _mask[i_mask, :, 1]] = 1
        mask = mask.bool()
        _temp = temperature[index] ** temp_pow
        if index < temp_warmup:
            _temp *= 0.5
        logit_c, logit_u = guided(model, code, labels, w)
        logit = logit_c if w == 0 else (1 + w) * logit_c - w * logit_u
        prob = torch.softmax(logit * _temp, -1)
        if top_k > 0:
            top_k_probs, top_k_indices = torch.topk(prob, top_k)
            top_k_probs /= top_k_probs.sum(dim=-1, keepdim=True)
            flat = top_k_probs.view(-1, top_k)
            nxt = gumbel_max(flat, noise("topk_categorical", index, tuple(flat.shape)))
            pred_code = top_k_indices.gather(-1, nxt.view(B, N, 1))
        else:
            pred_code = gumbel_max(prob, noise("categorical", index, tuple(prob.shape)))
        code[mask] = pred_code.view(B, G, G)[mask]
        l_codes.append(pred_code.view(B, G, G).clone())
        l_mask.append(mask.clone())
    return code, l_codes, l_mask


def assert_same_run(ours, official):
    code, codes, masks = official
    assert len(ours["codes"]) == len(codes)
    for step, (a, b, ma, mb) in enumerate(zip(ours["codes"], codes, ours["masks"], masks)):
        assert torch.equal(a, b), f"step {step}: drawn tokens differ"
        assert torch.equal(ma, mb.bool()), f"step {step}: masks differ"
    assert torch.equal(ours["code"], code)


LABELS = torch.tensor([0, 3, 4])


def test_v1_confidence_matches_official_step_by_step():
    model = StandIn().eval()
    for w, steps, mode in ((3.0, 6, "arccos"), (0.5, 5, "linear")):
        noise = make_noise(seed=steps)
        ours = sample(model, LABELS, version=1, scheduler="confidence", step=steps, w=w, sm_temp=1.3, r_temp=2.0,
                      sched_mode=mode, noise=noise)
        assert_same_run(ours, official_v1(model, LABELS, noise, steps, w, 1.3, 2.0, sched_mode=mode))
        assert not ours["masks"][-1].any()
    noise = make_noise(seed=3)  # mask_value < 0: start from random codes, all positions still to decide
    ours = sample(model, LABELS, version=1, scheduler="confidence", step=4, w=1.0, mask_value=-1, noise=noise)
    assert_same_run(ours, official_v1(model, LABELS, noise, 4, 1.0, 1.0, 4.5, random_start=True))


def test_v1_inpainting_keeps_known_tokens_and_stops_early():
    model, noise = StandIn().eval(), make_noise(seed=7)
    init = torch.randint(0, K, (3, G, G), generator=torch.Generator().manual_seed(0))
    init[:, 1:3, 1:3] = K  # 4 tokens to generate per sample (12 in the batch), 8 steps scheduled
    before = init.clone()
    ours = sample(model, LABELS, version=1, scheduler="confidence", step=8, w=2.0, r_temp=3.0, init_code=init,
                  noise=noise)
    assert torch.equal(init, before)  # the caller's tensor is untouched
    assert_same_run(ours, official_v1(model, LABELS, noise, 8, 2.0, 1.0, 3.0, init_code=before))
    known = before != K
    assert torch.equal(ours["code"][known], before[known]) and len(ours["codes"]) < 8


def test_v2_confidence_matches_official_step_by_step():
    model = StandIn().eval()
    noise = make_noise(seed=11)
    ours = sample(model, LABELS, version=2, scheduler="confidence", step=6, w=2.0, sm_temp=0.8, r_temp=4.5,
                  noise=noise)
    official = official_v2_confidence(model, LABELS, noise, 6, 2.0, 0.8, 4.5)
    assert_same_run(ours, official)
    assert torch.equal(ours["code"], ours["codes"][-1])  # the result is the last step's full draw
    # init_code: known tokens are decided (+inf) and re-sampled, not preserved
    init = torch.full((3, G, G), K)
    init[:, 0] = 2
    noise = make_noise(seed=12)
    ours = sample(model, LABELS, version=2, scheduler="confidence", step=5, w=1.0, init_code=init, noise=noise)
    assert_same_run(ours, official_v2_confidence(model, LABELS, noise, 5, 1.0, 1.0, 4.5, init_code=init))
    for mode in ("warm_up", "none"):  # uniform confidence at steps 0 and 1, then the raw probability
        noise = make_noise(seed=13)
        ours = sample(model, LABELS, version=2, scheduler="confidence", step=5, w=1.0, randomize=mode, noise=noise)
        assert_same_run(ours, official_v2_confidence(model, LABELS, noise, 5, 1.0, 1.0, 4.5, randomize=mode))


@pytest.mark.parametrize("options", [
    dict(step=5, w=2.0),
    dict(step=4, w=1.0, cumulative=True),
    dict(step=6, w=0.0, randomize=True, sm_temp_min=0.8, sm_temp_max=1.4, temp_pow=2.0, temp_warmup=2),
    dict(step=5, w=1.5, top_k=3, randomize=True),
])
def test_halton_matches_official_step_by_step(options):
    model, noise = StandIn().eval(), make_noise(seed=len(options))
    init = torch.randint(0, K + 1, (3, G, G), generator=torch.Generator().manual_seed(1))
    for start in (None, init):
        ours = sample(model, LABELS, version=2, scheduler="halton", noise=noise, init_code=start, **options)
        assert_same_run(ours, official_halton(model, LABELS, noise, init_code=start, **options))
        if not options.get("cumulative"):  # each cell written exactly once
            assert torch.equal(torch.stack(ours["masks"]).sum(0), torch.ones(3, G, G, dtype=torch.long))


def test_halton_forward_count_and_no_guidance_pass_at_w0():
    model = StandIn().eval()
    sample(model, LABELS, version=2, scheduler="halton", step=4, w=0.0, seeds=0)
    assert model.calls == 4


@pytest.mark.parametrize("version,scheduler", [(1, "confidence"), (2, "confidence"), (2, "halton")])
def test_seeded_samples_do_not_depend_on_their_batch(version, scheduler):
    model = StandIn().eval()
    options = dict(version=version, scheduler=scheduler, step=5, w=1.0)
    if scheduler == "halton":
        options.update(randomize=True, top_k=4)
    alone = sample(model, [3], seeds=[21], **options)
    batch = sample(model, [1, 3, 4], seeds=[5, 21, 9], **options)
    again = sample(model, [1, 3, 4], seeds=[5, 21, 9], **options)
    assert torch.equal(alone["code"][0], batch["code"][1])
    assert all(torch.equal(a[0], b[1]) for a, b in zip(alone["codes"], batch["codes"]))
    assert torch.equal(batch["code"], again["code"])
    assert not torch.equal(sample(model, [3], seeds=[22], **options)["code"], alone["code"])


def test_settings_defaults_and_errors():
    assert official_defaults(1, "confidence")["step"] == 8 and official_defaults(2, "halton")["randomize"] is False
    model = StandIn()
    with pytest.raises(SamplerSettingError, match="top_k"):
        sample(model, [0], version=2, scheduler="confidence", top_k=5)
    with pytest.raises(SamplerSettingError, match="version"):
        sample(model, [0], version=1, scheduler="halton")
    with pytest.raises(SamplerSettingError, match="randomize"):
        sample(model, [0], version=2, scheduler="halton", randomize="linear")
    with pytest.raises(ValueError, match="noise"):
        sample(model, [0], version=2, scheduler="halton", step=2, noise=lambda kind, i, shape: torch.zeros(1))


# --------------------------------------------------------------------------------------- the MaskBit switch

def tiny_maskbit(seq_len=16, bits=4):
    torch.manual_seed(0)
    return BitTokenTransformer(bits=bits, codebook_splits=2, seq_len=seq_len, hidden_dim=32, depth=1, heads=4,
                               mlp_dim=64, dropout=0.0, num_classes=10).eval()


def test_bit_token_grid_is_the_joint_of_the_split_predictions():
    generator = tiny_maskbit()
    grid_model = BitTokenGrid(generator)
    tokens = torch.tensor([[[3, 16, 15, 0], [16, 16, 7, 9], [1, 2, 16, 4], [5, 6, 8, 16]]])  # 16 = mask id
    labels, keep = torch.tensor([2]), torch.tensor([False])
    logits = grid_model(tokens, labels, keep)
    assert logits.shape == (1, 16, 17)
    split = generator.split_tokens(tokens.view(1, 16).clamp(max=15))
    split[tokens.view(1, 16) == 16] = generator.mask_token
    log_split = torch.log_softmax(generator(split, labels, keep), -1)  # [1, 16, 2, 4]
    joint = torch.log_softmax(logits, -1)
    for k in (0, 5, 11, 15):  # k = low 2 bits + 4 * high 2 bits
        expected = log_split[0, :, 0, k % 4] + log_split[0, :, 1, k // 4]
        torch.testing.assert_close(joint[0, :, k], expected, rtol=0, atol=1e-5)
    assert torch.exp(joint[..., 16]).max() == 0


def test_maskbit_sampler_switch():
    import modeling
    from utils.config import with_defaults

    class Decoder(nn.Module):
        def decode_tokens(self, tokens):
            return tokens.float().view(tokens.shape[0], 1, G, G).expand(-1, 3, -1, -1) / 15

    generator, decoder = tiny_maskbit(), Decoder()
    default = with_defaults({}, {"model": {"mlm_model": {"num_steps": 4}}})
    images = modeling.build_sampler(default, generator, decoder)(torch.tensor([1, 2]), torch.tensor([0, 1]))
    reference = modeling.sample(generator, decoder, [1, 2], seeds=[0, 1], num_steps=4)
    assert torch.equal(images, reference)  # default: MaskBit's own sampler, unchanged
    assert "sampler" not in modeling.generation_settings(default)
    for choice, version, scheduler in (("halton", 2, "halton"), ("confidence_v1", 1, "confidence")):
        config = with_defaults({}, {"model": {"mlm_model": {"sampler": choice},
                                              "maskgit_sampler": {"step": 4, "w": 1.0}}})
        settings = modeling.generation_settings(config)
        assert settings["sampler"] == choice and settings["scheduler"] == scheduler and settings["step"] == 4
        images = modeling.build_sampler(config, generator, decoder)(torch.tensor([1, 2]), torch.tensor([0, 1]))
        code = sample(BitTokenGrid(generator), [1, 2], seeds=[0, 1], version=version, scheduler=scheduler,
                      step=4, w=1.0)["code"]
        expected = decoder.decode_tokens(code.clamp(0, 15))
        torch.testing.assert_close(images, expected.clamp(0, 1) if version == 2 else expected, rtol=0, atol=0)
    bad = with_defaults({}, {"model": {"mlm_model": {"sampler": "halton"}, "maskgit_sampler": {"top_k": 2,
                                                                                                "r_temp": 1.0}}})
    with pytest.raises(SamplerSettingError, match="r_temp"):
        modeling.generation_settings(bad)
