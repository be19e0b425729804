"""Vector quantizer (official SimpleVectorizer): init, nearest code, losses, gradients, L2 option, entropy."""
import pytest
import torch

from modeling.quantizers import VectorQuantizer


def test_init_range_and_layout():
    quantizer = VectorQuantizer(64, 8)
    weight = quantizer.embedding.weight
    assert list(quantizer.state_dict()) == ["embedding.weight"] and weight.shape == (64, 8)
    assert weight.abs().max() <= 1 / 64 and weight.abs().max() > 0.5 / 64


def test_nearest_code_indices_and_losses():
    torch.manual_seed(0)
    quantizer = VectorQuantizer(16, 4).train()
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    z_q, info = quantizer(z)
    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, 4)
    expected = torch.cdist(flat, quantizer.embedding.weight.detach()).argmin(1)
    assert torch.equal(info["min_encoding_indices"].flatten(), expected)
    assert info["min_encoding_indices"].shape == (2, 3, 3) and info["min_encoding_indices"].dtype == torch.int64
    chosen = quantizer.embedding.weight.detach()[expected]
    assert torch.allclose(z_q.detach().permute(0, 2, 3, 1).reshape(-1, 4), chosen, atol=1e-6)
    mse = ((chosen - flat) ** 2).mean()
    assert torch.allclose(info["commitment_loss"], 0.25 * mse) and torch.allclose(info["codebook_loss"], mse)
    assert torch.allclose(info["quantizer_loss"], 1.25 * mse)
    assert info["entropy_loss"].item() == 0.0


def test_gradients_reach_encoder_through_commitment_and_codebook_through_codebook_loss():
    quantizer = VectorQuantizer(16, 4).train()
    z = torch.randn(1, 4, 2, 2, requires_grad=True)
    z_q, info = quantizer(z)
    codebook_grad, = torch.autograd.grad(info["codebook_loss"], quantizer.embedding.weight, retain_graph=True)
    assert codebook_grad.abs().sum() > 0
    assert torch.autograd.grad(info["codebook_loss"], z, allow_unused=True, retain_graph=True)[0] is None
    (grad,) = torch.autograd.grad(z_q.sum(), z)  # straight-through
    assert torch.equal(grad, torch.ones_like(z))


def test_l2_normalisation_uses_unit_vectors():
    quantizer = VectorQuantizer(8, 4, use_l2_normalisation=True)
    z_q, info = quantizer(torch.randn(1, 4, 2, 2) * 10)
    assert torch.allclose(z_q.norm(dim=1), torch.ones(1, 2, 2), atol=1e-5)
    entry = quantizer.get_codebook_entry(info["min_encoding_indices"])
    assert torch.allclose(entry.permute(0, 3, 1, 2), z_q, atol=1e-6)


@pytest.mark.parametrize("gamma", [1.0, 0.5])
def test_entropy_term_uses_negative_distance(gamma):
    torch.manual_seed(1)
    quantizer = VectorQuantizer(32, 4, entropy_loss_weight=0.1, entropy_loss_temperature=0.5,
                                entropy_gamma=gamma).train()
    z = torch.randn(2, 4, 2, 2, dtype=torch.float64)
    quantizer.double()
    _, info = quantizer(z)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 4)
    probs = (-torch.cdist(flat, quantizer.embedding.weight.detach()) ** 2 / 0.5).softmax(-1)
    per_sample = -(probs * probs.clamp(min=1e-5).log()).sum(-1).mean()
    avg = probs.mean(0)
    assert torch.allclose(info["per_sample_entropy"], per_sample)
    assert torch.allclose(info["avg_entropy"], gamma * -(avg * avg.clamp(min=1e-5).log()).sum())
    _, info = quantizer.eval()(z)
    assert info["entropy_loss"].item() == 0.0
