"""scripts/compute_fid_stats.py writes mu/sigma of the data set's Inception features."""
import os
import sys

import numpy as np
import torch
from torchvision.transforms.functional import pil_to_tensor

from eval_stand_ins import TinyFeatureNet
from evaluation import load_fid_stats
from evaluation.adm import read_reference
from evaluation.protocol import reference_kind

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_stats_of_synthetic_train_shards(tmp_path, monkeypatch):
    from data import SyntheticImages, write_synthetic_shards

    patterns = write_synthetic_shards(str(tmp_path / "data"), num_train=7, num_val=0, resolution=32, seed=0)
    sys.path.insert(0, os.path.join(REPO, "scripts"))
    import compute_fid_stats

    net = TinyFeatureNet()
    monkeypatch.setattr(compute_fid_stats, "inception_from_config", lambda config, device: net)
    out = tmp_path / "stats.npz"
    compute_fid_stats.main(["--output", str(out), "--split", "train", "--batch-size", "3",
                            f"dataset.params.train_shards_path_or_url={patterns['train']}",
                            "dataset.preprocessing.resolution=32", "dataset.params.num_workers_per_gpu=0"])
    mu, sigma = load_fid_stats(out)

    dataset = SyntheticImages(10, 32, 0, num_samples=7, split="train")
    images = torch.stack([pil_to_tensor(dataset[i][0]) for i in range(7)])  # eval transform is identity at 32 px
    feats = net(images)[0].detach().numpy()
    np.testing.assert_allclose(mu, feats.mean(0), rtol=1e-10)
    np.testing.assert_allclose(sigma, np.cov(feats, rowvar=False), rtol=1e-8, atol=1e-12)

    reference = read_reference(out)  # the file says what it is, and carries ADM's spatial statistics
    spatial = net.features(images)["spatial"].detach().numpy()
    np.testing.assert_allclose(reference.stats["spatial"][0], spatial.mean(0), rtol=1e-10)
    np.testing.assert_allclose(reference.stats["spatial"][1], np.cov(spatial, rowvar=False), rtol=1e-8, atol=1e-12)
    assert reference.info["split"] == "train" and reference.info["count"] == 7
    assert reference.info["source"] == patterns["train"] and reference.info["resolution"] == 32
    assert reference_kind(reference) == "gfid-reference"
