"""Generator sizes, token factorisation, embedding-free input and forward contract (layouts: test_registry.py)."""
import pytest
import torch

from modeling import build_generator, load_pretrained
from modeling.generator import BitTokenTransformer, EmbeddingTokenTransformer
from modeling.token_splits import combine_tokens, split_tokens
TINY = dict(model=dict(mlm_model=dict(hidden_dim=32, depth=2, heads=4, mlp_dim=64)),
            dataset=dict(preprocessing=dict(resolution=64)))  # 4x4 latent grid


def _tiny(bits=6, **overrides):
    cfg = {"model": {"vq_model": {"token_size": bits}, "mlm_model": dict(TINY["model"]["mlm_model"])},
           "dataset": TINY["dataset"]}
    cfg["model"]["mlm_model"].update(overrides)
    return build_generator(cfg)


@pytest.mark.parametrize("bits,splits", [(6, 2), (8, 1), (9, 3)])
def test_split_combine_round_trip_all_codes(bits, splits):
    codes = torch.arange(2 ** bits).view(1, -1)
    parts = split_tokens(codes, bits, splits)
    width = bits // splits
    assert parts.dtype == torch.int64 and parts.shape == (1, 2 ** bits, splits)
    assert torch.equal(parts[..., 0], codes % (2 ** width))  # split 0 = low bits
    back = combine_tokens(parts, bits, splits)
    assert back.dtype == torch.int64 and torch.equal(back, codes)


def test_split_rejects_indivisible_bits():
    with pytest.raises(ValueError, match="divisible"):
        split_tokens(torch.zeros(1, 4, dtype=torch.long), 7, 2)


def test_embedding_free_input_is_lfq_latent_with_masked_groups_zeroed():
    model = _tiny(bits=10)  # 2 splits of 5 bits
    g = torch.Generator().manual_seed(0)
    full = torch.randint(0, 2 ** 10, (3, 16), generator=g)
    # the tokenizer's latent for these indices: channel i = bit i (LSB first), +1 for 1 and -1 for 0
    latent = torch.stack([((full >> i) & 1).float() * 2 - 1 for i in range(10)], dim=-1)
    split = model.split_tokens(full)
    mask = torch.rand(split.shape, generator=g) < 0.5
    masked = split.masked_fill(mask, model.mask_token)
    expected = latent.view(3, 16, 2, 5).masked_fill(mask.unsqueeze(-1), 0.0).view(3, 16, 10)
    assert torch.equal(model.tokens_to_bits(masked), expected)
    assert torch.equal(model.tokens_to_bits(split), latent)


def test_forward_never_modifies_inputs_and_none_keeps_labels():
    model = _tiny().eval()
    tokens = torch.randint(0, model.mask_token + 1, (3, 16, 2))
    labels = torch.tensor([1, 2, 3])
    drop = torch.tensor([True, False, True])
    copies = [t.clone() for t in (tokens, labels, drop)]
    model(tokens, labels, drop)
    for original, copy in zip((tokens, labels, drop), copies):
        assert torch.equal(original, copy)
    keep_all = model(tokens, labels, None)
    torch.testing.assert_close(keep_all, model(tokens, labels, torch.zeros(3, dtype=torch.bool)))
    dropped = model(tokens, labels, torch.ones(3, dtype=torch.bool))
    assert not torch.allclose(keep_all, dropped)
    torch.testing.assert_close(dropped, model(tokens, torch.full((3,), model.null_class), None))


def test_forward_rejects_bad_inputs():
    model = _tiny()
    tokens = torch.zeros(2, 16, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"\(B, 16, 2\)"):
        model(torch.zeros(2, 16, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        model(tokens.float(), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="one class id per sample"):
        model(tokens, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="bool"):
        model(tokens, torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long))


def test_build_generator_variants_and_errors():
    lfq = _tiny(bits=12)
    assert isinstance(lfq, BitTokenTransformer)
    assert lfq.input_proj.weight.shape == (32, 12) and lfq.bits_to_indices.tolist() == [1, 2, 4, 8, 16, 32]
    vq = build_generator({"model": {"vq_model": {"quantizer_type": "lookup", "codebook_size": 1024, "token_size": 256},
                                    "mlm_model": {**TINY["model"]["mlm_model"], "model_cls": "bert",
                                                  "codebook_splits": 1}},
                          "dataset": TINY["dataset"]})
    assert isinstance(vq, EmbeddingTokenTransformer)
    assert vq.tok_emb_list[0].weight.shape == (1025, 32) and vq.bias[0].shape == (16, 1024)
    assert vq(torch.randint(0, 1025, (2, 16, 1)), torch.tensor([0, 1])).shape == (2, 16, 1, 1024)
    with pytest.raises(ValueError, match="divisible by codebook_splits"):
        _tiny(bits=7)
    with pytest.raises(ValueError, match="model_cls"):
        _tiny(model_cls="gpt")


def test_prenorm_variant_has_final_norm():
    model = _tiny(use_prenorm=True)
    assert "norm_after_transformer.weight" in model.state_dict()
    assert model(torch.zeros(1, 16, 2, dtype=torch.long), torch.tensor([0])).isfinite().all()


def test_released_checkpoint_with_token_emb_keys_loads(tmp_path):
    source = _tiny(bits=12).eval()
    released = {("token_emb" + k[len("input_proj"):] if k.startswith("input_proj") else k): v
                for k, v in source.state_dict().items()}
    assert "token_emb.weight" in released and "input_proj.weight" not in released
    torch.save(released, tmp_path / "maskbit_generator_tiny.bin")
    torch.manual_seed(99)
    target = _tiny(bits=12).train()
    loaded = load_pretrained(target, tmp_path / "maskbit_generator_tiny.bin")
    assert loaded is target and not target.training
    tokens, labels = torch.randint(0, 65, (2, 16, 2)), torch.tensor([3, 4])
    assert torch.equal(target(tokens, labels), source(tokens, labels))
