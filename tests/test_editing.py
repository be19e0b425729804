"""modeling.edit with MaskBit's sampler and the MaskGIT-pytorch v1 / Halton-MaskGIT v2 samplers: the invariant at
every step (bit tokens with 1-3 splits, VQ tokens; v1 confidence, v2 confidence, Halton), the schedule over the masked
region only, pixel-to-token mapping, outpainting, per-sample seeds, the noise hook, low-bits-only edits, blending and
the errors."""
import pytest
import torch
from torch import nn

from modeling import build_generator, build_tokenizer, create_model, edit
from modeling.editing import EditError, blend_weights, canvas_and_mask, decode, reconstruct, token_mask
from modeling.maskgit_pytorch.schedules import confidence_schedule, halton_counts
from modeling.registry import preset_config
from modeling.sampling import num_to_keep_masked
from modeling.tokenizer import tokenize
from utils.config import load_config
from utils.errors import MaskbitError

TINY = ["model.vq_model.token_size=6", "model.vq_model.hidden_channels=32", "model.vq_model.channel_mult=[1,2]",
        "model.vq_model.num_resolutions=2", "model.vq_model.num_res_blocks=1", "model.mlm_model.hidden_dim=32",
        "model.mlm_model.depth=1", "model.mlm_model.heads=4", "model.mlm_model.mlp_dim=64",
        "model.mlm_model.num_classes=10", "dataset.preprocessing.resolution=16"]  # 16 px, 8x8 tokens of 2x2 px
VQ = ["model.vq_model.quantizer_type=lookup", "model.vq_model.codebook_size=64", "model.mlm_model.model_cls=bert"]
# MaskGIT-pytorch transformers (v1 with a reduced Taming VQGAN, v2 with a reduced LlamaGen VQ), 64 codes, 8x8 tokens
MGP_PRESETS = {"v1": "maskgit_pytorch_v1_base_256", "v2": "maskgit_pytorch_v2_tiny_256"}
MGP_TINY = {"hidden_dim": 32, "depth": 1, "heads": 2, "mlp_dim": 64, "nclass": 10, "model.vq_model.codebook_size": 64,
            "model.vq_model.hidden_channels": 32, "model.vq_model.channel_mult": [1, 2],
            "model.vq_model.num_res_blocks": 1, "dataset.preprocessing.resolution": 16}
STEPS = 6
_CACHE = {}


def models(kind="lfq_bert", splits=2):
    """(generator, tokenizer), reduced widths, random weights, eval mode (built once per module). kind "v1" / "v2":
    a MaskGIT-pytorch transformer whose mask-id logit is pushed down, so that no step draws the mask id and the
    mask ids left in a step's code count exactly the undecided tokens."""
    key = kind if kind in MGP_PRESETS else (kind, splits)
    if key not in _CACHE:
        torch.manual_seed(0)
        if kind in MGP_PRESETS:
            cfg = preset_config(MGP_PRESETS[kind], MGP_TINY)
            generator = build_generator(cfg).eval()
            with torch.no_grad():
                (generator.bias[:, generator.mask_token] if kind == "v1" else
                 generator.head.bias[generator.mask_token:]).fill_(-1e4)
        else:
            cfg = load_config(TINY + (VQ if kind == "bert" else []) + [f"model.mlm_model.codebook_splits={splits}"])
            generator = build_generator(cfg).eval()
        _CACHE[key] = generator, build_tokenizer(cfg).eval()
    return _CACHE[key]


def images(n=2, seed=0):
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def two_masks():
    """(2, 16, 16): an odd box (rows 3-7, cols 5-7) and an L-shaped pixel region."""
    mask = torch.zeros(2, 16, 16, dtype=torch.bool)
    mask[0, 3:8, 5:8] = True
    mask[1, 10:16, 0:3] = True
    mask[1, 15, 0:12] = True
    return mask


def expected_masked_counts(maskable: int, num_steps: int):
    """Masked elements after each step when the schedule runs over `maskable` elements (no confidence ties)."""
    counts, masked = [], maskable
    for step in range(num_steps):
        keep = min(masked - 1, max(num_to_keep_masked(step, num_steps, maskable), 1))
        masked = keep if keep > 0 else 0
        counts.append(masked)
    return counts


def expected_undecided_counts(kind: str, scheduler: str, editable: int, num_steps: int):
    """MaskGIT-pytorch samplers: undecided tokens after each step when the schedule runs over `editable` tokens
    (v1: revealed counts, clamped to what is left; v2: cumulative targets max(t_i, i+1); Halton: cumulative
    counts of its order). v1 stops when the batch has nothing left: the test cuts the list there."""
    if scheduler == "halton":
        return [editable - min(editable, r) for r in halton_counts(num_steps, 8, cells=editable)]
    if kind == "v2":
        targets = confidence_schedule(num_steps, 8, "arccos", version=2, cells=editable)
        return [editable - min(editable, max(t, i + 1)) for i, t in enumerate(targets)]
    counts, left = [], editable
    for c in confidence_schedule(num_steps, 8, "arccos", version=1, cells=editable):
        left -= min(max(c, 0), left)
        counts.append(left)
    return counts


@pytest.mark.parametrize("kind,variant", [("lfq_bert", 1), ("lfq_bert", 2), ("lfq_bert", 3), ("bert", 2),
                                          ("v1", "confidence"), ("v2", "confidence"), ("v2", "halton"),
                                          ("lfq_bert", "halton")])
def test_tokens_outside_the_mask_never_change_and_schedule_runs_over_the_mask(kind, variant):
    """variant: MaskBit's number of splits, or the MaskGIT-pytorch scheduler (for MaskBit's generator: its
    `model.mlm_model.sampler` switch, whole tokens through BitTokenGrid)."""
    maskgit = isinstance(variant, str)
    generator, tokenizer = models(kind, 2 if maskgit else variant)
    if maskgit:
        splits, as_split = 1, (lambda t: t.unsqueeze(-1))  # (B, N) -> (B, N, 1)
        mask_id = generator.mask_token if kind in MGP_PRESETS else 2 ** generator.bits
        settings = dict(step=STEPS, **(dict(scheduler=variant) if kind in MGP_PRESETS else dict(sampler=variant)))
    else:
        splits, as_split, mask_id = variant, generator.split_tokens, generator.mask_token
        settings = dict(num_steps=STEPS)
    x, mask = images(), two_masks()
    original = as_split(tokenize(tokenizer, x))  # (2, 64, S)
    editable = token_mask(mask, 2).flatten(1)  # (2, 64)
    outside = ~editable.unsqueeze(-1).expand_as(original)
    seen = []

    def on_step(step, sampled, kept):
        sampled, kept = (as_split(sampled), as_split(kept)) if maskgit else (sampled, kept)
        assert torch.equal(sampled[outside], original[outside]) and torch.equal(kept[outside], original[outside])
        seen.append((kept == mask_id).sum(dim=(1, 2)).tolist())

    out, tokens = edit(generator, tokenizer, x, mask, [3, 7], seeds=[0, 1], on_step=on_step, return_tokens=True,
                       **settings)
    assert out.shape == (2, 3, 16, 16) and tokens.shape == (2, 64)
    assert torch.equal(as_split(tokens)[outside], original[outside])
    maskable = (editable.sum(1) * splits).tolist()
    assert maskable == [3 * 2 * splits, (3 * 2 + 4) * splits]  # 3x2 tokens; 2x3 + 4 more along the bottom row
    if maskgit:
        rows = [list(c) for c in zip(*(expected_undecided_counts(kind, variant, m, STEPS) for m in maskable))]
        done = next(i for i, row in enumerate(rows) if not any(row))  # v1 stops once the batch has all revealed
        assert seen == rows[:done + 1] and (kind == "v1" or done == STEPS - 1), seen
    else:
        assert seen == [list(c) for c in zip(*(expected_masked_counts(m, STEPS) for m in maskable))]
    assert not generator.training  # the sampler leaves the generator's mode as it found it


def test_pixel_mask_to_tokens_odd_boxes_and_grow():
    mask = canvas_and_mask(images(1), dict(box=(3, 5, 5, 3)), 16)[1]  # pixels rows 3-7, cols 5-7
    tokens = token_mask(mask, 2)
    brute = torch.tensor([[bool(mask[0, 2 * i:2 * i + 2, 2 * j:2 * j + 2].any()) for j in range(8)] for i in range(8)])
    assert torch.equal(tokens[0], brute)
    assert torch.equal(brute.nonzero()[:, 0].unique(), torch.tensor([1, 2, 3]))
    assert torch.equal(brute.nonzero()[:, 1].unique(), torch.tensor([2, 3]))
    grown = token_mask(mask, 2, grow=1)[0]
    assert grown.sum() == 5 * 4 and grown[0:5, 1:5].all()
    clipped = token_mask(canvas_and_mask(images(1), dict(box=(-3, 14, 5, 9)), 16)[1], 2)[0]  # clipped to the image
    assert clipped.nonzero().tolist() == [[0, 7]]
    keep = canvas_and_mask(images(1), dict(keep=(3, 5, 5, 3)), 16)[1]
    assert torch.equal(keep, ~mask)


def test_outpainting_canvas_mask_and_edit():
    image = images(1)[:, :, :15, :11]
    canvas, mask = canvas_and_mask(image, dict(outpaint=(1, 0, 3, 2)), 16)  # top, bottom, left, right
    assert canvas.shape == (1, 3, 16, 16) and torch.equal(canvas[:, :, 1:, 3:14], image)
    assert torch.equal(canvas[:, :, 0, 3:14], image[:, :, 0])  # padding repeats the edge pixels
    assert mask.sum() == 16 * 16 - 15 * 11 and not mask[0, 1:, 3:14].any()
    tokens = token_mask(mask, 2)[0]
    assert tokens[0].all() and tokens[:, :2].all() and tokens[:, 7].all() and tokens[1:, 2:7].sum() == 0

    centred = canvas_and_mask(images(1)[:, :, :12, :10], dict(extend=(16, 16)), 16)[1]
    assert torch.equal(centred, canvas_and_mask(images(1)[:, :, :12, :10], dict(outpaint=(2, 2, 3, 3)), 16)[1])

    generator, tokenizer = models()
    out, edited = edit(generator, tokenizer, image, dict(outpaint=(1, 0, 3, 2)), 4, seeds=[0], num_steps=4,
                       return_tokens=True)
    kept = ~tokens.flatten()
    assert out.shape == (1, 3, 16, 16)
    assert torch.equal(edited[0, kept], tokenize(tokenizer, canvas)[0, kept])


def test_per_sample_seeds_and_noise_hook():
    generator, tokenizer = models()
    x, mask = images(), two_masks()
    pair = edit(generator, tokenizer, x, mask, [3, 7], seeds=[5, 6], num_steps=4, return_tokens=True)[1]
    alone = edit(generator, tokenizer, x[1:], mask[1:], 7, seeds=[6], num_steps=4, return_tokens=True)[1]
    other = edit(generator, tokenizer, x[1:], mask[1:], 7, seeds=[9], num_steps=4, return_tokens=True)[1]
    assert torch.equal(pair[1:], alone) and not torch.equal(alone, other)
    # one image, several seeds: the image and mask broadcast along the seeds
    many = edit(generator, tokenizer, x[1:], mask[1:], 7, seeds=[6, 9], num_steps=4, return_tokens=True)[1]
    assert torch.equal(many, torch.cat([alone, other]))

    def noise(kind, index, shape):
        g = torch.Generator().manual_seed(hash((kind, index)) % 2 ** 31)
        return -torch.log(-torch.log(torch.rand(shape, generator=g).clamp(1e-9, 1 - 1e-7)))

    a = edit(generator, tokenizer, x, mask, [3, 7], seeds=[0, 1], noise=noise, num_steps=4, return_tokens=True)[1]
    b = edit(generator, tokenizer, x, mask, [3, 7], seeds=[8, 9], noise=noise, num_steps=4, return_tokens=True)[1]
    assert torch.equal(a, b)  # the hook supplies every draw: seeds are unused


def test_maskgit_pytorch_seeds_noise_hook_and_errors():
    generator, tokenizer = models("v2")  # Halton, its order rolled per sample
    x, mask = images(), two_masks()
    opts = dict(step=4, randomize=True, return_tokens=True)
    pair = edit(generator, tokenizer, x, mask, [3, 7], seeds=[5, 6], **opts)[1]
    alone = edit(generator, tokenizer, x[1:], mask[1:], 7, seeds=[6], **opts)[1]
    other = edit(generator, tokenizer, x[1:], mask[1:], 7, seeds=[9], **opts)[1]
    assert torch.equal(pair[1:], alone) and not torch.equal(alone, other)

    asked = []

    def noise(kind, index, shape):
        asked.append((kind, index, shape))
        g = torch.Generator().manual_seed(hash((kind, index)) % 2 ** 31)
        if kind == "roll":
            return torch.randint(0, 64, shape, generator=g)
        return -torch.log(-torch.log(torch.rand(shape, generator=g).clamp(1e-9, 1 - 1e-7)))

    a = edit(generator, tokenizer, x, mask, [3, 7], seeds=[0, 1], noise=noise, **opts)[1]
    b = edit(generator, tokenizer, x, mask, [3, 7], seeds=[8, 9], noise=noise, **opts)[1]
    assert torch.equal(a, b)  # the hook supplies every draw, full-grid shapes as `sample` asks them
    assert asked[:5] == [("roll", 0, (2,))] + [("categorical", i, (2, 64, 65)) for i in range(4)]
    with pytest.raises(MaskbitError, match="no bit splits"):
        edit(generator, tokenizer, x, mask, 3, splits=[0], step=2)
    with pytest.raises(MaskbitError, match="has no setting"):
        edit(generator, tokenizer, x, mask, 3, num_steps=2)


def test_low_bits_only():
    generator, tokenizer = models("lfq_bert", 2)  # 6-bit tokens: split 0 = bits 0-2, split 1 = bits 3-5
    x, mask = images(), two_masks()
    original = tokenize(tokenizer, x)
    editable = token_mask(mask, 2).flatten(1)
    masked_counts = []
    out, tokens = edit(generator, tokenizer, x, mask, [3, 7], seeds=[0, 1], splits=[0], num_steps=STEPS,
                       return_tokens=True, on_step=lambda s, sampled, kept: masked_counts.append(
                           (kept == generator.mask_token).sum(dim=(1, 2)).tolist()))
    assert torch.equal(tokens >> 3, original >> 3)  # high bits of every token kept
    assert torch.equal(tokens[~editable], original[~editable])
    assert ((tokens != original) & editable).any()  # some low bits were regenerated
    assert masked_counts[0] == [expected_masked_counts(m, STEPS)[0] for m in editable.sum(1).tolist()]
    with pytest.raises(MaskbitError, match="split indices"):
        edit(generator, tokenizer, x, mask, 3, splits=[2], num_steps=2)


def test_blending_rule():
    generator, tokenizer = models()
    x, mask = images(1), canvas_and_mask(images(1), dict(box=(6, 6, 4, 4)), 16)[1]
    raw, tokens = edit(generator, tokenizer, x, mask, 2, seeds=[3], num_steps=4, blend=False, return_tokens=True)
    blended = edit(generator, tokenizer, x, mask, 2, seeds=[3], num_steps=4, blend_pixels=2)
    recon = reconstruct(tokenizer, x)[1]
    assert torch.equal(raw, decode(tokenizer, tokens))
    weights = blend_weights(token_mask(mask, 2), 2, 2)
    assert torch.equal(blended, torch.lerp(recon, raw, weights))
    far = torch.ones(16, 16, dtype=torch.bool)
    far[6 - 2:10 + 2, 6 - 2:10 + 2] = False  # farther than 2 px from the regenerated tokens' pixels 6-9
    assert torch.equal(blended[..., far], recon[..., far]) and torch.equal(blended[..., 6:10, 6:10],
                                                                           raw[..., 6:10, 6:10])
    assert weights[0, 0, 5, 8] == pytest.approx(2 / 3) and weights[0, 0, 4, 4] == pytest.approx(1 / 3)


def test_errors_name_the_fix():
    generator, tokenizer = models()
    x = images(1)
    cases = [
        (torch.ones(8, 8, dtype=torch.bool), 1, x, "mask is 8x8 but the image is 16x16"),
        (torch.zeros(16, 16, dtype=torch.bool), 1, x, "selects no pixel"),
        (dict(box=(16, 0, 4, 4)), 1, x, "covers nothing"),
        (dict(keep=(0, 0, 16, 16)), 1, x, "selects no pixel"),
        (dict(box=(0, 0, 4, 4)), 10, x, r"class ids must be in \[0, 10\)"),
        (dict(box=(0, 0, 4, 4)), 1, images(1)[..., :12, :12], "resize the image to 16x16"),
        (dict(outpaint=(0, 0, 4, 4)), 1, x, "resize the image to 16x8"),
        (dict(circle=3), 1, x, "exactly one key"),
    ]
    for mask, class_id, image, message in cases:
        with pytest.raises(EditError, match=message):
            edit(generator, tokenizer, image, mask, class_id, num_steps=2)
    with torch.device("meta"):
        titok = create_model("titok_l32")
    with pytest.raises(EditError, match="no spatial layout"):
        edit(generator, titok, x, dict(box=(0, 0, 4, 4)), 1)

    class Unregistered(nn.Linear):
        seq_len, num_classes = 64, 10
    with pytest.raises(EditError, match="no infill step"):
        edit(Unregistered(1, 1), tokenizer, x, dict(box=(0, 0, 4, 4)), 1)
