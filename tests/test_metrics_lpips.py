"""evaluation.lpips.LPIPS: the `lpips` package's LPIPS(net='vgg') with our weight lookup, [0,1] inputs, (B,) output.

The values are pinned three ways: against the package's own forward, against an independent restatement of the
LPIPS-VGG v0.1 formula on torchvision's VGG16, and against numbers recorded from the previous in-repo
implementation (modeling/lpips.py, removed when we switched to the package; the switch changed no value beyond
one float32 ulp).
"""
import lpips as lpips_package
import pytest
import torch
import torch.nn.functional as F
from torchvision import models

from evaluation import LPIPS
from evaluation.lpips import SLICES
from utils.weights import MissingWeightsError

# modeling/lpips.py LPIPS(random_init=True) on the inputs of _pair(), recorded before it was deleted
PREVIOUS_IMPLEMENTATION = [0.024628011509776115, 0.02470461279153824, 0.025206273421645164]


def _pair(seed=0, shape=(3, 3, 48, 48)):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g)
    return x, (x + 0.15 * torch.randn(x.shape, generator=g)).clamp(0, 1)


def _slices_to_features(model: LPIPS) -> dict:
    """The package's `net.slice{k}.{i}.*` back to torchvision's `features.{i}.*` numbering (without the prefix)."""
    return {key.split(".", 1)[1]: value for key, value in model.net.state_dict().items()}


def _reference_lpips(vgg_features: torch.nn.Module, heads: list, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LPIPS-VGG v0.1 written out: [0,1] -> [-1,1] -> (v - shift) / scale; relu1_2..relu5_3 of torchvision VGG16;
    unit norm over channels (eps 1e-10 on the norm); squared difference; 1x1 head; spatial mean; sum of layers."""
    shift = torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None]
    scale = torch.tensor([0.458, 0.448, 0.450])[None, :, None, None]

    def features(v):
        h, out = (2 * v - 1 - shift) / scale, []
        for start, end in SLICES:
            for i in range(start, end):
                h = vgg_features[i](h)
            out.append(h)
        return out

    total = 0
    for fx, fy, w in zip(features(x), features(y), heads):
        fx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        fy = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        total = total + F.conv2d((fx - fy) ** 2, w).mean(dim=(2, 3))
    return total.flatten()


def test_same_values_as_the_previous_implementation_and_the_formula():
    ours = LPIPS(random_init=True)
    x, y = _pair()
    with torch.no_grad():
        got = ours(x, y)
    assert got.shape == (3,)
    torch.testing.assert_close(got, torch.tensor(PREVIOUS_IMPLEMENTATION), rtol=1e-5, atol=0)

    vgg = models.vgg16(weights=None).features.eval()  # independent VGG16 graph, same weights as ours
    vgg.load_state_dict(_slices_to_features(ours))
    heads = [getattr(ours, f"lin{k}").model[1].weight for k in range(5)]
    with torch.no_grad():
        expected = _reference_lpips(vgg, heads, x, y)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-8)


@pytest.mark.filterwarnings("ignore:.*(pretrained|weight enum).*:UserWarning")  # torchvision, inside lpips
def test_equals_lpips_package_with_same_random_vgg():
    torch.manual_seed(0)
    ref = lpips_package.LPIPS(pretrained=True, net="vgg", pnet_rand=True, verbose=False).eval()
    ours = LPIPS(random_init=True)
    ours.net.load_state_dict(ref.net.state_dict())
    x, y = _pair(1)
    with torch.no_grad():
        expected = ref(x, y, normalize=True).flatten()
        got = ours(x, y)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    assert got.min() > 1e-3
    assert ours(x, x).abs().max() == 0
    assert not any(p.requires_grad for p in ours.parameters()) and not ours.training
    for k in range(5):  # the heads come from the installed lpips package
        assert torch.equal(getattr(ours, f"lin{k}").model[1].weight, getattr(ref, f"lin{k}").model[1].weight)


def test_random_init_is_reproducible_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a = LPIPS(random_init=True)
    assert torch.equal(state, torch.random.get_rng_state())
    b = LPIPS(random_init=True)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_loads_a_torchvision_vgg16_file(tmp_path):
    donor = LPIPS(random_init=True)
    state = {f"features.{k}": v * 0.5 for k, v in _slices_to_features(donor).items()}
    path = tmp_path / "vgg16-397923af.pth"
    torch.save(state, path)
    loaded = LPIPS(vgg_weights_path=str(path))
    assert all(torch.equal(loaded.net.state_dict()[k], v * 0.5) for k, v in donor.net.state_dict().items())
    torch.save({"lin0.model.1.weight": torch.zeros(1, 64, 1, 1)}, tmp_path / "bad_heads.pth")
    with pytest.raises(ValueError, match="LPIPS-VGG heads"):
        LPIPS(random_init=True, heads_path=str(tmp_path / "bad_heads.pth"))


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
    with pytest.raises(MissingWeightsError, match="lpips_vgg_weights_path"):
        LPIPS(vgg_weights_path=str(tmp_path / "nope.pth"))
    with pytest.raises(MissingWeightsError, match="lpips_heads_path"):
        LPIPS(random_init=True, heads_path=str(tmp_path / "nope.pth"))
