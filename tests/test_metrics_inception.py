"""Our FID Inception equals torch-fidelity's and pytorch-fid's networks given the same (random) weights, including
ADM's spatial (sFID) features: TF `mixed_6/conv` = Mixed_6d.branch1x1, hooked in torch-fidelity's port."""
import numpy as np
import pytest
import torch
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

import evaluation.inception as inception_module
from evaluation import FIDInceptionV3, build_inception, resize_bilinear_tf1, to_uint8
from utils.weights import MissingWeightsError


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "random_inception.pth"
    torch.save(build_inception(random_init=True).float().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def images():
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (2, 3, 40, 56), dtype=torch.uint8, generator=gen)


@pytest.fixture(scope="module")
def ours(weights_file, images):
    """Our float64 network loaded from the file, and its features on `images`."""
    model = build_inception(str(weights_file))
    with torch.no_grad():
        return model, model.features(images)


@pytest.fixture(scope="module")
def fidelity(weights_file, images):
    """torch-fidelity's port with the same weights in float64: pool, unbiased logits, and ADM's spatial features
    read by a hook on its Mixed_6d.branch1x1 (NHWC-flattened first 7 channels, as ADM reshapes the TF tensor)."""
    ref = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                      feature_extractor_weights_path=str(weights_file))
    ref.double()  # float64 internals as the official evaluator (torch-fidelity 0.4 maps "float64" to float32)
    ref.feature_extractor_internal_dtype = torch.float64
    captured = []
    ref.Mixed_6d.branch1x1.register_forward_hook(lambda module, inputs, output: captured.append(output.clone()))
    with torch.no_grad():
        pool, logits = ref(images)
    (branch,) = captured
    assert branch.shape == (images.shape[0], 192, 17, 17)
    spatial = branch[..., :7, :, :].permute(0, 2, 3, 1).reshape(images.shape[0], -1)
    return pool.double(), logits.double(), spatial


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_tf1_resize_is_bit_exact(images, dtype):
    x = images.to(dtype)
    expected = interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
    assert torch.equal(resize_bilinear_tf1(x, 299), expected)


def test_features_equal_torch_fidelity(ours, fidelity):
    feats = ours[1]
    pool, logits, spatial = feats["pool"], feats["logits"], feats["spatial"]
    assert pool.shape == (2, 2048) and logits.shape == (2, 1008) and spatial.shape == (2, 2023)
    assert pool.dtype == spatial.dtype == torch.float64
    assert pool.std() > 0.1 and logits.std() > 0.1 and spatial.std() > 0.1  # random weights: O(1) features
    ref_pool, ref_logits, ref_spatial = fidelity
    torch.testing.assert_close(pool, ref_pool, rtol=1e-6, atol=1e-6)  # its outputs pass through float32
    torch.testing.assert_close(logits, ref_logits, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(spatial, ref_spatial, rtol=1e-12, atol=1e-12)  # hooked: float64 throughout


def test_forward_is_features_pool_and_logits(ours, images):
    model, feats = ours
    with torch.no_grad():
        pool, logits = model(images[:1])
    torch.testing.assert_close(pool, feats["pool"][:1], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(logits, feats["logits"][:1], rtol=1e-12, atol=1e-12)


def test_sfid_is_the_frechet_distance_of_independent_spatial_features(ours, fidelity, monkeypatch):
    """sFID = frechet_distance(mean/cov of the spatial features, reference mu_s/sigma_s). The 2023-d scipy sqrtm
    takes ~30 s on CPU, so the distance function (tested on its own in test_metrics_fid.py) records its inputs."""
    import evaluation.adm as adm

    calls = []
    monkeypatch.setattr(adm, "frechet_distance", lambda *args: calls.append(args) or float(len(calls)))
    rng = np.random.default_rng(0)
    reference = {"pool": (rng.normal(size=2048), np.eye(2048)), "spatial": (rng.normal(size=2023), np.eye(2023))}
    metrics = adm.score_features({k: v.numpy() for k, v in ours[1].items()}, reference)
    assert metrics["FID"] == 1.0 and metrics["sFID"] == 2.0
    mu, sigma, ref_mu, ref_sigma = calls[1]
    independent = fidelity[2].numpy()
    np.testing.assert_allclose(mu, independent.mean(0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(independent, rowvar=False), rtol=1e-8, atol=1e-10)
    assert ref_mu is reference["spatial"][0] and ref_sigma is reference["spatial"][1]


def test_pool_features_equal_pytorch_fid(weights_file, images, ours, monkeypatch):
    import pytorch_fid.inception as pf

    state = torch.load(weights_file, weights_only=True)
    monkeypatch.setattr(pf, "load_state_dict_from_url", lambda *a, **k: state)
    ref = pf.InceptionV3([pf.InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=False, normalize_input=False,
                         use_fid_inception=True).double().eval()
    x = (resize_bilinear_tf1(images.double(), 299) - 128) / 128  # pytorch-fid's own resize is not TF1's
    with torch.no_grad():
        ref_pool = ref(x)[0].flatten(1)
    torch.testing.assert_close(ours[1]["pool"], ref_pool, rtol=1e-10, atol=1e-10)


def test_checkpoint_without_bn_counters_loads_and_bad_files_fail(weights_file, tmp_path):
    state = {k: v for k, v in torch.load(weights_file, weights_only=True).items()
             if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "no_counters.pth")
    build_inception(str(tmp_path / "no_counters.pth"))
    torch.save({"fc.weight": torch.zeros(1008, 2048)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not an FID Inception"):
        build_inception(str(tmp_path / "bad.pth"))


def test_missing_weights_offline_names_both_files(tmp_path, monkeypatch):
    monkeypatch.setattr(inception_module, "hub_checkpoint_dir", lambda: tmp_path)
    monkeypatch.setattr("utils.weights.hub_checkpoint_dir", lambda: tmp_path)
    monkeypatch.setenv("MASKBIT_OFFLINE", "1")
    with pytest.raises(MissingWeightsError) as err:
        build_inception()
    assert "pt_inception-2015-12-05-6726825d.pth" in str(err.value)
    assert "weights-inception-2015-12-05-6726825d.pth" in str(err.value)
    assert "evaluation.inception_weights_path" in str(err.value)


def test_float_input_is_rejected_and_uint8_conversion_truncates():
    with pytest.raises(ValueError, match="to_uint8"):
        FIDInceptionV3()(torch.rand(1, 3, 8, 8))
    x = torch.tensor([0.0, 0.5, 0.999, 1.0, 1.5, -0.2])
    assert to_uint8(x).tolist() == [0, 127, 254, 255, 255, 0]
