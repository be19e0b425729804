"""Loading the released MaskGIT-pytorch / Halton-MaskGIT files (docs/design/maskgit-pytorch-facts.md §10), rebuilt
offline from random weights of reduced models in each release's container format: the v1 transformer .pth
(`model_state_dict`, iteration counters, optimizer state; `current.pth` in a folder), the v1 VQGAN Lightning
`last.ckpt` (flat or configs/ + ckpts/, with `loss.*`), the Halton-MaskGIT .pth (keys wrapped in `module.` /
`_orig_mod.`), LlamaGen's `vq_ds16_c2i.pt` (`model`, with pickled argparse arguments) and the FID statistics."""
import argparse

import numpy as np
import pytest
import torch

from evaluation import load_fid_stats
from modeling import CheckpointMismatchError, create_model

TRANSFORMER = {"hidden_dim": 32, "depth": 1, "heads": 2, "mlp_dim": 64, "nclass": 10,
               "model.vq_model.codebook_size": 16, "dataset.preprocessing.resolution": 64}
TAMING = {"codebook_size": 16, "token_size": 8, "hidden_channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1}


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _training_file(model, path, optimizer_state=True, prefix=""):
    optimizer = torch.optim.AdamW(model.parameters())
    torch.save({"iter": 1234, "global_epoch": 7,
                "model_state_dict": {prefix + k: v for k, v in model.state_dict().items()},
                "optimizer_state_dict": optimizer.state_dict() if optimizer_state else None}, path)
    return path


def test_v1_transformer_pth_and_run_folder(tmp_path):
    torch.manual_seed(0)
    model = create_model("maskgit_pytorch_v1_base_256", **TRANSFORMER)
    _training_file(model, tmp_path / "MaskGIT_ImageNet_256.pth")
    loaded = create_model("maskgit_pytorch_v1_base_256", pretrained=str(tmp_path / "MaskGIT_ImageNet_256.pth"),
                          **TRANSFORMER)
    assert _same(model, loaded) and not loaded.training
    run = tmp_path / "run"
    run.mkdir()
    _training_file(model, run / "current.pth")  # the official trainer's folder layout
    assert _same(model, create_model("maskgit_pytorch_v1_base_256", pretrained=str(run), **TRANSFORMER))
    # strict: a 512 px file (other pos_emb / bias shapes) does not load into the 256 px model
    big = create_model("maskgit_pytorch_v1_base_512", **{**TRANSFORMER, "dataset.preprocessing.resolution": 128})
    _training_file(big, tmp_path / "512.pth")
    with pytest.raises(CheckpointMismatchError, match="pos_emb: checkpoint \\(1, 65, 32\\) vs model \\(1, 17, 32\\)"):
        create_model("maskgit_pytorch_v1_base_256", pretrained=str(tmp_path / "512.pth"), **TRANSFORMER)


@pytest.mark.parametrize("prefix", ["", "module.", "_orig_mod.", "_orig_mod.module.", "module._orig_mod."])
def test_v2_transformer_pth_with_wrapper_prefixes(tmp_path, prefix):
    torch.manual_seed(0)
    model = create_model("maskgit_pytorch_v2_tiny_256", **TRANSFORMER)
    _training_file(model, tmp_path / "ImageNet_256_tiny.pth", optimizer_state=False, prefix=prefix)
    loaded = create_model("maskgit_pytorch_v2_tiny_256", pretrained=str(tmp_path / "ImageNet_256_tiny.pth"),
                          **TRANSFORMER)
    assert _same(model, loaded) and loaded.head.weight is loaded.tok_emb.weight


def test_a_prefix_is_stripped_only_as_a_whole_leading_prefix(tmp_path):
    model = create_model("maskgit_pytorch_v2_tiny_256", **TRANSFORMER)
    state = {("module." if i % 2 else "") + k: v for i, (k, v) in enumerate(model.state_dict().items())}
    torch.save({"model_state_dict": state}, tmp_path / "mixed.pth")  # not every key wrapped: nothing is stripped
    with pytest.raises(CheckpointMismatchError, match="unexpected keys"):
        create_model("maskgit_pytorch_v2_tiny_256", pretrained=str(tmp_path / "mixed.pth"), **TRANSFORMER)


@pytest.mark.parametrize("layout", ["flat", "configs_ckpts", "file"])
def test_v1_vqgan_lightning_checkpoint(tmp_path, layout):
    torch.manual_seed(0)
    vqgan = create_model("maskgit_pytorch_v1_vqgan_taming_f16_1024", **TAMING)
    state = dict(vqgan.state_dict(), **{"loss.discriminator.main.0.weight": torch.randn(4, 3, 4, 4),
                                        "loss.logvar": torch.zeros(())})
    folder = tmp_path / "VQGAN"
    where = {"flat": folder / "last.ckpt", "configs_ckpts": folder / "ckpts" / "last.ckpt",
             "file": folder / "last.ckpt"}[layout]
    where.parent.mkdir(parents=True)
    torch.save({"epoch": 3, "global_step": 100, "state_dict": state, "optimizer_states": [],
                "hyper_parameters": argparse.Namespace(n_embed=16)}, where)
    if layout == "configs_ckpts":
        (folder / "configs").mkdir()
        (folder / "configs" / "model.yaml").write_text("model:\n  params:\n    n_embed: 16\n")
    loaded = create_model("maskgit_pytorch_v1_vqgan_taming_f16_1024",
                          pretrained=str(where if layout == "file" else folder), **TAMING)
    assert _same(vqgan, loaded)


def test_llamagen_vq16_checkpoint_and_refusal_of_other_pickled_objects(tmp_path):
    torch.manual_seed(0)
    reduced = {**TAMING, "token_size": 8}
    vq = create_model("maskgit_pytorch_v2_vqgan_llamagen_vq16", **reduced)
    vq.quantize.codebook_used.uniform_()
    torch.save({"model": vq.state_dict(), "optimizer": {"state": {}, "param_groups": []}, "discriminator": {},
                "steps": 10, "args": argparse.Namespace(codebook_size=16)}, tmp_path / "vq_ds16_c2i.pt")
    loaded = create_model("maskgit_pytorch_v2_vqgan_llamagen_vq16", pretrained=str(tmp_path / "vq_ds16_c2i.pt"),
                          **reduced)
    assert _same(vq, loaded)  # the persistent codebook_used buffer too
    assert _same(vq, create_model("maskgit_pytorch_v2_vqgan_llamagen_vq16", pretrained=str(tmp_path), **reduced))
    torch.save({"model": vq.state_dict(), "extra": torch.nn.Identity()}, tmp_path / "unsafe.pt")
    with pytest.raises(ValueError, match="pickles objects other than tensors and plain Python types.*torch.nn"):
        create_model("maskgit_pytorch_v2_vqgan_llamagen_vq16", pretrained=str(tmp_path / "unsafe.pt"), **reduced)
    torch.save({"iter": 3, "weights": vq.state_dict()}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a state dict.*top-level keys: iter, weights.*looked for under model"):
        create_model("maskgit_pytorch_v2_vqgan_llamagen_vq16", pretrained=str(tmp_path / "other.pt"), **reduced)


def test_released_fid_statistics(tmp_path):
    mu, cov = torch.randn(6, dtype=torch.float64), torch.eye(6, dtype=torch.float64) * 2
    torch.save({"mu": mu, "cov": cov}, tmp_path / "ImageNet_256_train_stats.pt")
    got_mu, got_sigma = load_fid_stats(tmp_path / "ImageNet_256_train_stats.pt")
    assert got_mu.dtype == np.float64 and np.array_equal(got_mu, mu.numpy()) and np.array_equal(got_sigma, cov.numpy())
    torch.save({"mean": mu}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="must hold 'mu' and 'cov'"):
        load_fid_stats(tmp_path / "bad.pt")
