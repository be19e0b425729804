"""Lookup-free quantizer: bit order, index conversions, losses, straight-through gradients, info dict."""
import pytest
import torch

from modeling import build_quantizer
from modeling.quantizers import LookupFreeQuantizer, bits_to_indices, indices_to_bits
from utils.config import with_defaults

INFO_KEYS = {"quantizer_loss", "commitment_loss", "entropy_loss", "per_sample_entropy", "avg_entropy",
             "min_encoding_indices", "bit_usage"}


def test_bit_order_is_lsb_first_and_zero_maps_to_minus_one():
    quantizer = LookupFreeQuantizer(4)
    z = torch.tensor([0.5, -0.1, 0.0, 2.0]).view(1, 4, 1, 1)  # bits 1, 0, 0, 1 -> 1 + 8
    z_q, info = quantizer(z)
    assert z_q.flatten().tolist() == [1.0, -1.0, -1.0, 1.0]
    assert info["min_encoding_indices"].tolist() == [[[9]]]
    assert info["min_encoding_indices"].dtype == torch.int64
    assert indices_to_bits(torch.tensor(9), 4).tolist() == [1.0, -1.0, -1.0, 1.0]


@pytest.mark.parametrize("bits", [1, 3, 8, 10])
def test_index_round_trip_for_all_codes(bits):
    codes = torch.arange(2 ** bits)
    as_bits = indices_to_bits(codes, bits)
    assert torch.equal(bits_to_indices(as_bits), codes)
    quantizer = LookupFreeQuantizer(bits)
    assert torch.equal(quantizer.codebook, as_bits)
    # the quantizer maps each code's bits back to that code
    _, info = quantizer(as_bits.T.reshape(1, bits, 1, -1))
    assert torch.equal(info["min_encoding_indices"].flatten(), codes)


def test_buffers_match_the_official_layout():
    quantizer = LookupFreeQuantizer(5)
    state = quantizer.state_dict()
    assert list(state) == ["bits_to_indices", "codebook"]
    assert state["bits_to_indices"].dtype == torch.int32 and state["bits_to_indices"].tolist() == [1, 2, 4, 8, 16]
    assert state["codebook"].dtype == torch.float32 and state["codebook"].shape == (32, 5)
    assert len(list(quantizer.parameters())) == 0


def test_commitment_loss_and_straight_through_gradient():
    quantizer = LookupFreeQuantizer(6, commitment_cost=0.25, entropy_loss_weight=0.0).train()
    z = torch.randn(2, 6, 3, 3, requires_grad=True)
    z_q, info = quantizer(z)
    expected = 0.25 * ((torch.where(z > 0, 1.0, -1.0) - z) ** 2).mean()
    assert torch.allclose(info["commitment_loss"], expected)
    assert torch.equal(info["quantizer_loss"], info["commitment_loss"])
    (grad,) = torch.autograd.grad((z_q * torch.arange(6.0).view(1, 6, 1, 1)).sum(), z)
    assert torch.equal(grad, torch.arange(6.0).view(1, 6, 1, 1).expand_as(z))  # identity through the sign


def test_entropy_terms_only_in_training_with_nonzero_weight():
    z = torch.randn(2, 8, 4, 4) * 0.01
    quantizer = LookupFreeQuantizer(8, entropy_loss_weight=0.02)
    _, info = quantizer.eval()(z)
    assert set(info) == INFO_KEYS
    assert all(info[k].item() == 0.0 for k in ("entropy_loss", "per_sample_entropy", "avg_entropy"))
    _, info = LookupFreeQuantizer(8, entropy_loss_weight=0.0).train()(z)
    assert info["avg_entropy"].item() == 0.0
    _, info = quantizer.train()(z)
    assert info["avg_entropy"] > 0 and info["per_sample_entropy"] > 0
    assert torch.allclose(info["entropy_loss"], 0.02 * (info["per_sample_entropy"] - info["avg_entropy"]))
    assert torch.allclose(info["quantizer_loss"], info["commitment_loss"] + info["entropy_loss"])


def test_module_entropy_equals_official_formula():
    z = torch.randn(2, 6, 4, 4, dtype=torch.float64) * 0.01
    quantizer = LookupFreeQuantizer(6, entropy_loss_weight=0.1, entropy_loss_temperature=0.02, entropy_gamma=1.5)
    _, info = quantizer.train()(z)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 6)
    probs = ((2 * flat @ quantizer.codebook.double().T) / 0.02).softmax(-1)
    per_sample = -(probs * probs.clamp(min=1e-5).log()).sum(-1).mean()
    avg = probs.mean(0)
    avg_entropy = 1.5 * -(avg * avg.clamp(min=1e-5).log()).sum()
    assert torch.allclose(info["per_sample_entropy"], per_sample)
    assert torch.allclose(info["avg_entropy"], avg_entropy)
    assert torch.allclose(info["entropy_loss"], 0.1 * (per_sample - avg_entropy))


def test_bit_usage_reports_fraction_of_ones_per_bit():
    z = -torch.ones(2, 3, 2, 2)
    z[:, 0] = 1.0  # bit 0 always on
    z[0, 1, 0, 0] = 1.0  # bit 1 on at one of 8 positions
    _, info = LookupFreeQuantizer(3)(z)
    assert info["bit_usage"].tolist() == [1.0, 0.125, 0.0]
    assert not info["bit_usage"].requires_grad


def test_codebook_entry_and_bf16_input():
    quantizer = LookupFreeQuantizer(4).train()
    assert quantizer.get_codebook_entry(torch.tensor([[3]])).tolist() == [[[1.0, 1.0, -1.0, -1.0]]]
    z = torch.randn(1, 4, 2, 2)
    z_q, info = quantizer(z.bfloat16())
    assert z_q.dtype == torch.float32 and info["entropy_loss"].dtype == torch.float32
    assert torch.equal(info["min_encoding_indices"], quantizer(z)[1]["min_encoding_indices"])


def test_factory_passes_every_setting():
    cfg = with_defaults({"model": {"vq_model": {"quantizer_type": "lookup-free", "token_size": 9,
                                                "commitment_cost": 0.3, "entropy_loss_weight": 0.05,
                                                "entropy_loss_temperature": 0.02, "entropy_gamma": 0.7,
                                                "distributed_entropy": True}}})
    quantizer = build_quantizer(cfg.model.vq_model)
    assert (quantizer.token_size, quantizer.codebook_size, quantizer.commitment_cost) == (9, 512, 0.3)
    assert (quantizer.entropy_loss_weight, quantizer.entropy_loss_temperature) == (0.05, 0.02)
    assert quantizer.entropy_gamma == 0.7 and quantizer.distributed_entropy
