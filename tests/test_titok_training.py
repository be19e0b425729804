"""TiTok tokenizer training (training/titok_trainer.py): stage-1 / stage-2 / VAE losses by hand, the exact
TiTok "cosine" schedule and weight-decay groups, a few-step stage-1 and stage-2 run through the trainer on reduced
models, exact resume of stage 1, and dispatch from scripts/train_tokenizer.py."""
import math
import shutil

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import reset_accelerate_state
from data import write_synthetic_shards
from modeling import build_tokenizer
from modeling.checkpoint import load_pretrained
from modeling.registry import preset_config
from modeling.titok.maskgit_vqgan import build_maskgit_vqgan
from modeling.titok.tokenizer import DiagonalGaussianDistribution
from train_utils import assert_bitwise_equal, run_script, write_yaml
from training import trainer_class
from training.losses.titok import TiTokPixelLoss, proxy_code_loss
from training.lr_schedule import lr_multiplier_fn
from training.optim import no_decay_param_groups
from training.titok_trainer import TiTokTokenizerTrainer, stage2_pixel_state_dict
from utils.config import to_plain
from utils.weights import MissingWeightsError

# reduced widths (as tests/test_titok_family.py): 64 px images, 8 latent tokens, MaskGIT-VQGAN width 32 -> 4x4 codes
SMALL = {"vit_enc_width": 32, "vit_enc_layers": 1, "vit_enc_heads": 2, "vit_dec_width": 32, "vit_dec_layers": 1,
         "vit_dec_heads": 2, "pixel_vqgan_hidden_channels": 32, "num_latent_tokens": 8,
         "dataset.preprocessing.crop_size": 64, "dataset.preprocessing.resize_shorter_edge": 64}
RUN = {"experiment.logger": "tensorboard", "experiment.save_every": 2, "experiment.eval_every": 4,
       "experiment.generate_every": 2, "experiment.log_every": 1, "experiment.keep_last": 0,
       "dataset.params.num_workers_per_gpu": 0, "dataset.params.shuffle_buffer_size": 16,
       "training.per_gpu_batch_size": 2, "training.max_train_steps": 4, "training.mixed_precision": "no",
       "lr_scheduler.params.warmup_steps": 2, "optimizer.params.learning_rate": 1e-3,
       "optimizer.params.discriminator_learning_rate": 1e-3,
       "evaluation.compute_inception": False, "evaluation.compute_lpips": False}


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("titok_train")
    torch.manual_seed(0)
    vqgan_path = root / "maskgit-vqgan-imagenet-f16-256.bin"
    torch.save(build_maskgit_vqgan(hidden_channels=32).state_dict(), vqgan_path)
    shards = write_synthetic_shards(str(root / "shards"), num_train=16, num_val=2, resolution=64, seed=0)
    return {"root": root, "vqgan": vqgan_path, "shards": shards}


def config(name, assets, output_dir, **extra):
    overrides = {**SMALL, **RUN, "pretrained_tokenizer_weight": str(assets["vqgan"]),
                 "experiment.output_dir": str(output_dir),
                 "dataset.params.train_shards_path_or_url": assets["shards"]["train"],
                 "dataset.params.eval_shards_path_or_url": assets["shards"]["val"], **extra}
    return preset_config(name, overrides)


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


# ------------------------------------------------------------------------------------------------- losses
def test_stage1_loss_is_mean_cross_entropy_over_row_major_cells_plus_quantizer_loss():
    torch.manual_seed(0)
    logits = torch.randn(2, 1024, 2, 3)
    codes = torch.randint(0, 1024, (2, 6))
    q = torch.tensor(0.37)
    total, logs = proxy_code_loss(logits, codes, q, 1.0)
    # by hand: cell n = row * 3 + col of image b has target codes[b, n]
    terms = [-torch.log_softmax(logits[b, :, n // 3, n % 3].double(), 0)[codes[b, n]] for b in range(2) for n in range(6)]
    expected = torch.stack(terms).mean() + 0.37
    assert torch.allclose(total.double(), expected, atol=1e-6)
    assert torch.allclose(logs["reconstruction_loss"].double(), expected - 0.37, atol=1e-6)
    assert torch.allclose(proxy_code_loss(logits, codes, q, 0.5)[0], logs["reconstruction_loss"] + 0.5 * q)


class _MeanPerceptual(nn.Module):
    """Stand-in perceptual network: MSE of per-channel means."""

    def forward(self, x, x_rec):
        return F.mse_loss(x.mean(dim=(2, 3)), x_rec.mean(dim=(2, 3)))


def _stage2_losses():
    cfg = preset_config("titok_stage2", {"losses.discriminator_start": 2, "losses.perceptual_loss": "none"})
    return cfg.losses, TiTokPixelLoss(cfg.losses, _MeanPerceptual())


def test_stage2_generator_and_discriminator_losses_by_hand():
    torch.manual_seed(0)
    c, loss_fn = _stage2_losses()
    disc = nn.Conv2d(3, 1, 3)
    x, x_rec = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    info = {"quantizer_loss": torch.tensor(0.0), "commitment_loss": torch.tensor(0.0),
            "codebook_loss": torch.tensor(0.0), "min_encoding_indices": torch.zeros(2, 1, 4, dtype=torch.long)}
    rec = ((x - x_rec) ** 2).mean()
    perc = ((x.mean((2, 3)) - x_rec.mean((2, 3))) ** 2).mean()
    before, _ = loss_fn.generator_loss(x, x_rec, info, 1, disc)
    assert torch.allclose(before, 1.0 * rec + 0.1 * perc)  # no GAN before discriminator_start
    after, logs = loss_fn.generator_loss(x, x_rec, info, 2, disc)
    with torch.no_grad():
        fake, real = disc(x_rec), disc(x)
    assert torch.allclose(after, 1.0 * rec + 0.1 * perc + 0.01 * 1.0 * -fake.mean())
    assert logs["quantizer_loss"] == 0 and (c.quantizer_weight, c.discriminator_weight) == (0.0, 0.01)

    d_loss, _ = loss_fn.discriminator_loss(x, x_rec, 2, disc)  # LeCAM EMAs start at 0
    hinge = 0.5 * (F.relu(1 - real).mean() + F.relu(1 + fake).mean())
    lecam = F.relu(real.mean()) ** 2 + F.relu(-fake.mean()) ** 2
    assert torch.allclose(d_loss, hinge + 0.001 * lecam)
    ema = loss_fn.lecam
    assert torch.allclose(ema.ema_real_logits_mean, 0.001 * real.mean().reshape(1))  # decay 0.999, after the loss
    assert torch.allclose(ema.ema_fake_logits_mean, 0.001 * fake.mean().reshape(1))


def test_single_stage_vae_loss_by_hand():
    torch.manual_seed(0)
    cfg = preset_config("titok_bl64_vae_c16", {"losses.discriminator_start": 0, "losses.perceptual_loss": "none",
                                               "losses.reconstruction_weight": 1.0, "losses.logvar_init": 0.5})
    loss_fn = TiTokPixelLoss(cfg.losses, None)
    disc = nn.Conv2d(3, 1, 3)
    posterior = DiagonalGaussianDistribution(torch.randn(2, 8, 1, 5))
    x, x_rec = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    total, logs = loss_fn.generator_loss(x, x_rec, posterior, 0, disc)
    mean, logvar = posterior.parameters[:, :4], posterior.parameters[:, 4:].clamp(-30, 20)
    kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).sum() / 2
    with torch.no_grad():
        gan = -disc(x_rec).mean()
    expected = ((x - x_rec) ** 2).mean() / math.exp(0.5) + 1e-6 * kl + cfg.losses.discriminator_weight * gan
    assert torch.allclose(total, expected)
    assert torch.allclose(logs["kl_loss"], 1e-6 * kl)


def test_titok_cosine_is_the_official_expression_and_close_to_cosine_with_minimum():
    f = lr_multiplier_fn("cosine_to_end_lr", 10, 110, peak_lr=1e-4, end_lr=1e-5)
    g = lr_multiplier_fn("cosine_with_minimum", 10, 110, min_lr_ratio=0.1)
    assert f(0) == 0.0 and f(5) == 0.5
    for s in (10, 37, 60, 110, 150):
        p = (s - 10) / 100
        assert f(s) == (1e-5 + (1e-4 - 1e-5) * max(0.0, 0.5 * (1.0 + math.cos(math.pi * p)))) / 1e-4
        assert abs(f(s) - g(s)) < 1e-12
    assert f(110) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="peak_lr"):
        lr_multiplier_fn("cosine_to_end_lr", 10, 110)


def test_weight_decay_groups_follow_the_titok_name_rule():
    cfg = preset_config("titok_s128", SMALL)
    model = build_tokenizer(cfg)  # stage 2: encoder, quantizer and latent tokens frozen -> left out
    no_decay, decay = no_decay_param_groups(model, 1e-4)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    decay_names = {names[id(p)] for p in decay["params"]}
    assert (no_decay["weight_decay"], decay["weight_decay"]) == (0.0, 1e-4)
    assert "pixel_quantize.embedding.weight" in no_decay_names and "decoder.decoder_embed.weight" in no_decay_names
    assert not any(n.startswith(("encoder.", "quantize.", "latent_tokens")) for n in no_decay_names | decay_names)
    assert all(not any(s in n for s in ("bias", "norm", "embed", "ln")) for n in decay_names)
    assert "pixel_decoder.conv_out.weight" in decay_names


# ------------------------------------------------------------------------------------------------- runs
def test_missing_maskgit_vqgan_weights_say_where_to_get_them(assets, tmp_path, fresh_accelerate_state):
    cfg = config("titok_s128_stage1", assets, tmp_path / "run",
                 pretrained_tokenizer_weight=str(tmp_path / "maskgit-vqgan-imagenet-f16-256.bin"))
    with pytest.raises(MissingWeightsError, match=r"maskgit-vqgan-imagenet-f16-256.bin.*fun-research/TiTok"):
        TiTokTokenizerTrainer(cfg)


@pytest.fixture(scope="module")
def stage1_run(assets):
    out = assets["root"] / "stage1"
    cfg = config("titok_s128_stage1", assets, out)
    assert trainer_class("tokenizer", cfg) is TiTokTokenizerTrainer
    TiTokTokenizerTrainer(cfg).train()
    reset_accelerate_state()
    return cfg, out


def test_stage1_run_writes_checkpoints_metrics_images_and_loadable_weights(stage1_run):
    cfg, out = stage1_run
    assert (out / "checkpoint-2" / "metadata.json").is_file() and (out / "checkpoint-4" / "metadata.json").is_file()
    assert len(list((out / "train_images").glob("*.png"))) == 2
    lines = (out / "metrics.jsonl").read_text().splitlines()
    import json
    records = [json.loads(line) for line in lines]
    losses = [r["train/total_loss"] for r in records if "train/total_loss" in r]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    assert losses[0] == pytest.approx(math.log(1024), rel=0.05)  # near-uniform logits at init
    assert any("eval/PSNR" in r for r in records)
    model = load_pretrained(build_tokenizer(cfg), out / "pytorch_model.bin")
    assert not hasattr(model, "pixel_decoder")


def test_stage1_resume_from_a_mid_run_checkpoint_is_bitwise(stage1_run, assets, fresh_accelerate_state):
    cfg, out = stage1_run
    resumed = assets["root"] / "stage1_resumed"
    resumed.mkdir()
    shutil.copytree(out / "checkpoint-2", resumed / "checkpoint-2")
    trainer = TiTokTokenizerTrainer(config("titok_s128_stage1", assets, resumed))
    trainer.train()
    assert trainer.global_step == 4
    for name in ("unwrapped_model/pytorch_model.bin", "ema_model/pytorch_model.bin", "training_state.pt"):
        assert_bitwise_equal(load(out / "checkpoint-4" / name), load(resumed / "checkpoint-4" / name), name)
    assert_bitwise_equal(load(out / "pytorch_model.bin"), load(resumed / "pytorch_model.bin"), "export")


def test_stage2_run_inits_from_stage1_and_the_maskgit_vqgan(stage1_run, assets, tmp_path, fresh_accelerate_state):
    _, stage1_out = stage1_run
    out = tmp_path / "stage2"
    cfg = config("titok_stage2", assets, out, vit_enc_model_size="small", vit_dec_model_size="small",
                 **{"experiment.init_weight": str(stage1_out / "pytorch_model.bin"), "losses.discriminator_start": 2,
                    "losses.perceptual_loss": "none", "model.discriminator.hidden_channels": 32,
                    "training.max_train_steps": 3, "experiment.eval_every": 100})
    trainer = TiTokTokenizerTrainer(cfg)
    stage1 = load(stage1_out / "pytorch_model.bin")
    vqgan = load(assets["vqgan"])
    initial = {k: v.clone() for k, v in trainer.unwrap("tokenizer").state_dict().items()}
    assert all(torch.equal(initial[k], v) for k, v in stage1.items())
    assert all(torch.equal(initial[k], v) for k, v in stage2_pixel_state_dict(vqgan).items())
    trainer.train()
    records = (out / "metrics.jsonl").read_text()
    assert "train/discriminator_loss" in records and "train/weighted_gan_loss" in records
    export = load_pretrained(build_tokenizer(cfg), out / "pytorch_model.bin").state_dict()
    assert all(torch.isfinite(v).all() for v in export.values())
    frozen = [k for k in stage1 if k.startswith(("encoder.", "quantize.", "latent_tokens"))]
    assert frozen and all(torch.equal(export[k], stage1[k]) for k in frozen)  # frozen, EMA copies them
    assert not torch.equal(export["pixel_quantize.embedding.weight"], vqgan["quantize.embedding.weight"])
    state = load(out / "checkpoint-3" / "training_state.pt")
    assert set(state["optimizers"]) == {"tokenizer", "discriminator"} and "lecam" in state["buffers"]


def test_train_tokenizer_script_dispatches_titok_to_its_trainer(assets, tmp_path):
    cfg = config("titok_s128_stage1", assets, tmp_path / "script",
                 **{"training.max_train_steps": 1, "experiment.eval_every": 100, "experiment.generate_every": 100})
    result = run_script([f"config={write_yaml(to_plain(cfg), tmp_path / 'cfg.yaml')}"], timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "TiTok stage1" in result.stdout + result.stderr
    assert (tmp_path / "script" / "pytorch_model.bin").is_file()


@pytest.mark.parametrize("name", ["titok_bl64_vq8k", "titok_bl64_vae_c16"])
def test_single_stage_runs_train_the_whole_model_against_the_discriminator(name, assets, tmp_path,
                                                                           fresh_accelerate_state):
    out = tmp_path / name
    cfg = config(name, assets, out, vit_enc_model_size="small", vit_dec_model_size="small",
                 **{"losses.discriminator_start": 1, "losses.perceptual_loss": "none",
                    "model.discriminator.hidden_channels": 32, "model.discriminator.num_stages": 3,
                    "training.max_train_steps": 2, "experiment.eval_every": 2})
    trainer = TiTokTokenizerTrainer(cfg)
    assert trainer.stage == "single"
    before = {k: v.clone() for k, v in trainer.unwrap("tokenizer").state_dict().items()}
    trainer.train()
    export = load_pretrained(build_tokenizer(cfg), out / "pytorch_model.bin").state_dict()
    assert not torch.equal(export["encoder.patch_embed.weight"], before["encoder.patch_embed.weight"])
    records = (out / "metrics.jsonl").read_text()
    assert "train/discriminator_loss" in records and "eval/PSNR" in records
    assert ("train/kl_loss" in records) == ("vae" in name)


def test_stage2_sigkill_and_resume_is_bitwise(stage1_run, assets, tmp_path, fresh_accelerate_state):
    """scripts/train_tokenizer.py on a TiTok stage-2 config, SIGKILLed after checkpoint 2 and run again, ends equal
    to an uninterrupted run (the resumed half trains the decoder, the discriminator and LeCAM)."""
    from train_utils import kill_after_checkpoint_and_resume
    from utils.config import save_config

    _, stage1_out = stage1_run
    extra = dict(vit_enc_model_size="small", vit_dec_model_size="small",
                 **{"experiment.init_weight": str(stage1_out / "pytorch_model.bin"), "losses.discriminator_start": 2,
                    "losses.perceptual_loss": "none", "model.discriminator.hidden_channels": 32,
                    "experiment.eval_every": 100, "experiment.generate_every": 100})
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    TiTokTokenizerTrainer(config("titok_stage2", assets, straight, **extra)).train()
    reset_accelerate_state()
    save_config(config("titok_stage2", assets, killed, **extra), tmp_path / "cfg.yaml")
    kill_after_checkpoint_and_resume(tmp_path / "cfg.yaml", killed, 2, 4)
    for name in ("unwrapped_model/pytorch_model.bin", "ema_model/pytorch_model.bin", "training_state.pt"):
        assert_bitwise_equal(load(straight / "checkpoint-4" / name), load(killed / "checkpoint-4" / name), name)
    assert_bitwise_equal(load(straight / "pytorch_model.bin"), load(killed / "pytorch_model.bin"), "export")
