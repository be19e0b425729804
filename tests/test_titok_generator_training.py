"""TiTok generator training on 1D tokens (training/titok_generator_trainer.py), on a reduced TiTok and ImageBert."""
import json
import shutil
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import reset_accelerate_state
from data import TokenShards, write_synthetic_shards
from helpers_generator_training import make_token_folder
from modeling import build_generator, build_tokenizer, load_pretrained
from modeling.registry import preset_config
from modeling.tokenizer import tokenize
from train_utils import REPO, assert_bitwise_equal
from training import trainer_class
from training.optim import no_decay_param_groups
from training.titok_generator_trainer import TiTokGeneratorTrainer, TiTokMLMLoss
from utils.config import save_config
from utils.run_layout import read_metrics

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")

# reduced TiTok (as tests/test_titok_family.py) on 64 px images with 8 latent tokens, and a 1-layer ImageBert
SMALL = {"vit_enc_width": 32, "vit_enc_layers": 1, "vit_enc_heads": 2, "vit_dec_width": 32, "vit_dec_layers": 1,
         "vit_dec_heads": 2, "pixel_vqgan_hidden_channels": 32, "num_latent_tokens": 8,
         "dataset.preprocessing.crop_size": 64, "dataset.preprocessing.resize_shorter_edge": 64}
GENERATOR = {"model.generator.hidden_size": 32, "model.generator.num_hidden_layers": 1,
             "model.generator.num_attention_heads": 2, "model.generator.intermediate_size": 64,
             "model.generator.image_seq_len": 8, "model.generator.num_steps": 2}
RUN = {"experiment.logger": "tensorboard", "experiment.save_every": 2, "experiment.generate_every": 4,
       "experiment.eval_every": 10_000, "experiment.log_every": 1, "experiment.keep_last": 0,
       "dataset.params.num_workers_per_gpu": 0, "dataset.params.shuffle_buffer_size": 8,
       "dataset.params.pretokenize_num_views": 1,
       # deterministic resize + center crop, no flip: on-the-fly and pretokenized tokens of an image are the same
       "dataset.preprocessing.random_flip": False,
       "training.per_gpu_batch_size": 4, "training.max_train_steps": 4, "training.mixed_precision": "no",
       "lr_scheduler.params.warmup_steps": 2, "sample.classes": [0, 3], "sample.per_class": 2,
       "sample.batch_size": 3}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("titok_generator_data")
    shards = write_synthetic_shards(str(root / "shards"), num_train=12, num_val=2, resolution=64, seed=0)
    torch.manual_seed(0)
    torch.save(build_tokenizer(preset_config("titok_maskgit", SMALL)).state_dict(), root / "tokenizer.bin")
    return {"root": root, "shards": shards, "tokenizer": root / "tokenizer.bin"}


def config(data, output_dir, tokens="", **extra):
    return preset_config("titok_maskgit", {
        **SMALL, **GENERATOR, **RUN, "experiment.output_dir": str(output_dir),
        "experiment.vqgan_checkpoint": str(data["tokenizer"]),
        "dataset.params.train_shards_path_or_url": data["shards"]["train"],
        "dataset.params.pretokenized_shards_path_or_url": str(tokens), **extra})


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_loss_is_the_official_weighted_label_smoothed_cross_entropy():
    torch.manual_seed(0)
    batch, length, vocab, eps, unmasked_weight = 3, 5, 7, 0.1, 0.1
    logits, targets = torch.randn(batch, length, vocab), torch.randint(0, vocab, (batch, length))
    masks = torch.rand(batch, length) < 0.5
    masks[0] = False  # a sample without masked tokens: its accuracy is 0 / (0 + 1e-8) = 0
    loss, logs = TiTokMLMLoss(eps, unmasked_weight)(logits, targets, masks)

    num, den, accuracies = 0.0, 0.0, []
    for b in range(batch):
        hits, masked = 0, 0
        for n in range(length):
            logp = torch.log_softmax(logits[b, n].double(), dim=0)
            ce = -(1 - eps) * logp[targets[b, n]] - eps / vocab * logp.sum()
            w = 1.0 if masks[b, n] else unmasked_weight
            num, den = num + w * ce, den + w
            if masks[b, n]:
                masked += 1
                hits += int(logits[b, n].argmax() == targets[b, n])
        accuracies.append(hits / (masked + 1e-8))
    assert torch.allclose(loss.double(), num / (den + 1e-8), rtol=1e-6, atol=0)
    assert logs.keys() == {"loss", "correct_tokens"}
    assert logs["correct_tokens"].item() == pytest.approx(sum(accuracies) / batch, rel=1e-6)
    plain, _ = TiTokMLMLoss(0.0, 1.0)(logits, targets, masks)  # no smoothing, equal weights: the mean CE
    assert torch.allclose(plain, torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1)))


def test_weight_decay_groups_follow_the_official_name_rule(data, tmp_path):
    with torch.device("meta"):
        generator = build_generator(preset_config("titok_maskgit", {**SMALL, **GENERATOR}))
    no_decay, decay = no_decay_param_groups(generator, 0.03)
    names = {id(p): n for n, p in generator.named_parameters()}
    assert decay["weight_decay"] == 0.03 and no_decay["weight_decay"] == 0.0
    assert {names[id(p)] for p in decay["params"]} == {
        n for n, p in generator.named_parameters()
        if p.ndim >= 2 and "embed" not in n and "LayerNorm" not in n}  # query/key/value/dense and lm_head weights
    assert "model.embeddings.word_embeddings.weight" in {names[id(p)] for p in no_decay["params"]}
    assert "model.lm_head.weight" in {names[id(p)] for p in decay["params"]}
    optimizer = TiTokGeneratorTrainer(config(data, tmp_path)).optimizers["generator"]
    assert [(g["weight_decay"], len(g["params"])) for g in optimizer.param_groups] == [
        (0.0, len(no_decay["params"])), (0.03, len(decay["params"]))]


def test_on_the_fly_and_pretokenized_runs(data, tmp_path):
    fly = tmp_path / "fly"
    cfg = config(data, fly)
    assert trainer_class("generator", cfg) is TiTokGeneratorTrainer
    trainer = TiTokGeneratorTrainer(cfg)
    seen, tokens_of = [], trainer._tokens

    def recording(batch):
        tokens, class_ids = tokens_of(batch)
        seen.append(tokens.clone())
        return tokens, class_ids

    trainer._tokens = recording
    frozen = {k: v.clone() for k, v in trainer.tokenizer.state_dict().items()}
    trainer.train()
    assert len(seen) == 4 and all(t.shape == (4, 8) for t in seen)
    assert all(torch.equal(v, frozen[k]) for k, v in trainer.tokenizer.state_dict().items())

    logs = [r for r in read_metrics(fly / "metrics.jsonl") if "train/loss" in r]
    assert len(logs) == 4 and all(np.isfinite(r["train/loss"]) and 0 <= r["train/correct_tokens"] <= 1 for r in logs)
    # lr after each step: warm-up to 2e-4 in 2 steps, then the cosine down to end_lr = 0.05 * 2e-4 = 1e-5
    assert [r["lr"] for r in logs] == pytest.approx([1e-4, 2e-4, 1.05e-4, 1e-5], rel=1e-9)
    assert (fly / "checkpoint-4" / "metadata.json").is_file() and (fly / "checkpoint-2").is_dir()
    grid = Image.open(fly / "train_generated_images" / "00000004.png")
    assert grid.size == (2 * 64 + 3 * 2, 2 * 64 + 3 * 2)  # 2 classes x 2 seeds, padding 2
    exported = build_generator(cfg)
    exported.load_state_dict(load(fly / "pytorch_model.bin"), strict=True)
    assert torch.equal(exported.model.lm_head.weight, trainer.ema.module.model.lm_head.weight)
    reset_accelerate_state()

    # the same images, pretokenized: 1D (8,) grids of 12-bit tokens; every on-the-fly token row is one of them
    tokens_dir = tmp_path / "tokens"
    make_token_folder(config(data, tmp_path / "unused", tokens_dir))
    meta = json.loads((tokens_dir / "tokens_meta.json").read_text())
    assert (meta["grid"], meta["token_bits"], meta["dtype"]) == ([8], 12, "uint16")
    shards = TokenShards(tokens_dir)
    stored, _ = shards.read(np.arange(len(shards)), np.zeros(len(shards), dtype=np.int64))
    assert stored.shape == (12, 8)
    rows = {tuple(r) for r in stored.tolist()}
    assert all(tuple(r) in rows for t in seen for r in t.tolist())

    tok = tmp_path / "tok"
    trainer = TiTokGeneratorTrainer(config(data, tok, tokens_dir))
    assert trainer.token_shards is not None
    trainer.train()
    logs = [r for r in read_metrics(tok / "metrics.jsonl") if "train/loss" in r]
    assert len(logs) == 4 and all(np.isfinite(r["train/loss"]) for r in logs)
    build_generator(cfg).load_state_dict(load(tok / "pytorch_model.bin"), strict=True)


def test_pretokenize_13_bit_codebook(tmp_path):
    """A VQ-8k TiTok (13-bit tokens) pretokenizes to (N,) grids that equal its tokens of each image."""
    shards = write_synthetic_shards(str(tmp_path / "shards"), num_train=3, num_val=0, resolution=64, seed=1)
    overrides = {**SMALL, "codebook_size": 8192, "dataset.params.train_shards_path_or_url": shards["train"],
                 "dataset.params.pretokenized_shards_path_or_url": str(tmp_path / "tokens"),
                 "dataset.params.num_workers_per_gpu": 0, "dataset.params.pretokenize_num_views": 2,
                 "experiment.vqgan_checkpoint": str(tmp_path / "tok.bin")}
    cfg = preset_config("titok_maskgit", overrides)
    torch.manual_seed(1)
    tokenizer = build_tokenizer(cfg)
    with torch.no_grad():  # spread the codes: with a random codebook most ids above 4096 get used
        tokenizer.quantize.embedding.weight.normal_()
    torch.save(tokenizer.state_dict(), tmp_path / "tok.bin")
    make_token_folder(cfg)
    shards_ = TokenShards(tmp_path / "tokens")
    assert (shards_.grid, shards_.token_bits, shards_.meta["dtype"]) == ((8,), 13, "uint16")
    tokens, _ = shards_.read(np.arange(3), np.ones(3, dtype=np.int64))
    assert tokens.shape == (3, 8) and 0 <= tokens.min() and tokens.max() < 8192
    record = np.load(tmp_path / "tokens" / "tokens-0000.npy")
    assert record["tokens"].shape == (3, 2, 8)
    # view 1 of image 0 is exactly the tokenizer's tokens of that augmented view
    from data.loaders import build_source
    from data.pretokenize import VIEW_STREAM
    from data.streams import derive_seed
    from data.transforms import decode_image, to_float, transforms_from_config
    source = build_source(cfg.dataset, "train")
    _, image_bytes, _ = source.load(source.eval_refs()[int(record["index"][0])])
    train, _ = transforms_from_config(cfg.dataset.preprocessing)
    view = train(decode_image(image_bytes), torch.Generator().manual_seed(derive_seed(VIEW_STREAM, 42, 0, 1)))
    loaded = load_pretrained(build_tokenizer(cfg), tmp_path / "tok.bin").eval()
    assert torch.equal(tokenize(loaded, to_float(view[None]))[0], torch.from_numpy(record["tokens"][0, 1]).long())


def test_resume_is_bitwise(data, tmp_path):
    """4 straight steps == the straight run's step-2 checkpoint resumed to step 4 (dropout on, on-the-fly tokens)."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    extra = {"experiment.generate_every": 100}
    TiTokGeneratorTrainer(config(data, straight, **extra)).train()
    reset_accelerate_state()
    resumed.mkdir()
    shutil.copytree(straight / "checkpoint-2", resumed / "checkpoint-2")
    trainer = TiTokGeneratorTrainer(config(data, resumed, **extra))
    trainer.train()
    assert trainer._batch_number == 4
    a, b = straight / "checkpoint-4", resumed / "checkpoint-4"
    for name in ("unwrapped_model/pytorch_model.bin", "ema_model/pytorch_model.bin", "training_state.pt"):
        assert_bitwise_equal(load(a / name), load(b / name), name)
    assert_bitwise_equal(load(straight / "pytorch_model.bin"), load(resumed / "pytorch_model.bin"), "export")
    fresh = {k: v for k, v in load(straight / "checkpoint-2" / "unwrapped_model" / "pytorch_model.bin").items()}
    assert any(not torch.equal(fresh[k], v) for k, v in load(a / "unwrapped_model/pytorch_model.bin").items())


@pytest.mark.parametrize("model_type", ["ViT", "UViT"])
def test_train_maskbit_script_dispatches_to_the_titok_trainer(data, tmp_path, monkeypatch, model_type):
    import importlib.util

    out = tmp_path / "run"
    cfg = config(data, out, **{"training.max_train_steps": 2, "model.generator.model_type": model_type,
                               "model.generator.num_hidden_layers": 2})
    assert trainer_class("generator", cfg) is TiTokGeneratorTrainer
    save_config(cfg, tmp_path / "cfg.yaml")
    spec = importlib.util.spec_from_file_location("train_maskbit", REPO / "scripts" / "train_maskbit.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setattr(sys, "argv", ["train_maskbit.py", f"config={tmp_path / 'cfg.yaml'}"])
    script.main()
    assert (out / "pytorch_model.bin").is_file() and (out / "checkpoint-2").is_dir()
    assert any("train/correct_tokens" in r for r in read_metrics(out / "metrics.jsonl"))
    generator = build_generator(cfg)
    assert type(generator).__name__ == {"ViT": "ImageBert", "UViT": "UViTBert"}[model_type]
    generator.load_state_dict(load(out / "pytorch_model.bin"), strict=True)
