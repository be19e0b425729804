"""Our LPIPS-VGG equals the `lpips` package's LPIPS(net='vgg') with the same (random) VGG weights."""
import lpips as lpips_package
import pytest
import torch

from modeling.lpips import LPIPS
from utils.weights import MissingWeightsError


def test_equals_lpips_package_with_same_random_vgg():
    torch.manual_seed(0)
    ref = lpips_package.LPIPS(pretrained=True, net="vgg", pnet_rand=True, verbose=False).eval()
    ours = LPIPS(random_init=True)
    ours.net.load_state_dict(ref.net.state_dict())
    x = torch.rand(3, 3, 48, 48)
    y = (x + 0.15 * torch.randn_like(x)).clamp(0, 1)
    with torch.no_grad():
        expected = ref(x, y, normalize=True).flatten()
    got = ours(x, y)
    assert got.shape == (3,)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    assert got.min() > 1e-3
    assert ours(x, x).abs().max() == 0
    assert not any(p.requires_grad for p in ours.parameters()) and not ours.training
    for k in range(5):  # the heads come from the installed lpips package
        assert torch.equal(getattr(ours, f"lin{k}").model[1].weight, getattr(ref, f"lin{k}").model[1].weight)


def test_gradients_flow_to_the_input_for_use_as_a_loss():
    ours = LPIPS(random_init=True)
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    ours(x, torch.rand(1, 3, 32, 32)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_missing_vgg_weights_offline(tmp_path, monkeypatch):
    monkeypatch.setattr("utils.weights.hub_checkpoint_dir", lambda: tmp_path)
    monkeypatch.setenv("MASKBIT_OFFLINE", "1")
    with pytest.raises(MissingWeightsError, match="vgg16-397923af.pth"):
        LPIPS()
    with pytest.raises(MissingWeightsError, match="lpips_heads_path"):
        LPIPS(random_init=True, heads_path=str(tmp_path / "nope.pth"))
