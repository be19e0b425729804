"""Fast paths (issue 17): bf16 keeps LFQ in fp32, compile falls back, checkpointing keeps the math and saves memory,
the SDPA kernel is named, CFG is one batched forward, and the training logs give throughput."""
import logging

import pytest
import torch

from modeling.generator import BitTokenTransformer
from modeling.quantizers.lookup_free import LookupFreeQuantizer
from modeling.recompute import set_gradient_checkpointing
from modeling.sampling import _guided_logits, sample
from modeling.transformer import sdpa_backend
from training.throughput import Throughput, data_wait_advice
from utils.compile import CompiledOrEager, compile_forward


def tiny_generator(seed=0, dropout=0.1, depth=2):
    torch.manual_seed(seed)
    return BitTokenTransformer(bits=6, codebook_splits=2, seq_len=16, hidden_dim=32, depth=depth, heads=4, mlp_dim=64,
                               dropout=dropout, num_classes=10)


def inputs(model, batch=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, model.mask_token + 1, (batch, model.seq_len, model.splits), generator=g)
    return tokens, torch.randint(0, model.num_classes, (batch,), generator=g)


# ------------------------------------------------------------------------------------------ bf16 / LFQ
def test_bf16_autocast_keeps_lfq_in_fp32_and_activations_in_bf16():
    quantizer = LookupFreeQuantizer(token_bits=8, entropy_loss_weight=0.1).train()
    z = torch.randn(2, 8, 4, 4, generator=torch.Generator().manual_seed(0)) * 1e-3  # latents near the sign boundary
    _, reference = quantizer(z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z_q, info = quantizer(z)
    assert z_q.dtype == torch.float32
    assert torch.equal(info["min_encoding_indices"], reference["min_encoding_indices"])
    for key in ("commitment_loss", "entropy_loss", "per_sample_entropy", "avg_entropy"):
        assert info[key].dtype == torch.float32 and torch.equal(info[key], reference[key]), key

    from modeling.vqgan_plus import VQGANPlusTokenizer  # inside the tokenizer: convs in bf16, quantizer in fp32
    from utils.config import with_defaults
    from modeling import build_tokenizer
    cfg = with_defaults({"model": {"vq_model": {"token_size": 8, "hidden_channels": 32, "channel_mult": [1, 1],
                                                "num_resolutions": 2, "num_res_blocks": 1}}})
    tokenizer = build_tokenizer(cfg).train()
    assert isinstance(tokenizer, VQGANPlusTokenizer)
    seen = {}

    def record(key, tensor):
        seen.setdefault(key, tensor.dtype)  # (a hook returning a value would replace the output)

    conv = next(m for m in tokenizer.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda m, i, o: record("conv", o))
    tokenizer.quantize.register_forward_pre_hook(lambda m, args: record("z", args[0]))
    tokenizer.quantize.register_forward_hook(lambda m, i, o: record("z_q", o[0]))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        tokenizer(torch.rand(1, 3, 8, 8))
    assert seen == {"conv": torch.bfloat16, "z": torch.bfloat16, "z_q": torch.float32}


# ------------------------------------------------------------------------------------------- compile
def _failing_compile(fn, **kwargs):
    def compiled(*args, **kw):
        raise RuntimeError("backend 'inductor' missing (test)")
    return compiled


def test_compile_falls_back_to_eager_with_one_warning(monkeypatch, caplog):
    """A real CPU compile takes minutes on the shared 2-core test machine: the fallback path is tested with a
    torch.compile that fails like a missing backend does (on its first call)."""
    monkeypatch.setattr(torch, "compile", _failing_compile)
    model = tiny_generator().eval()
    tokens, labels = inputs(model)
    expected = model(tokens, labels)
    compile_forward(model, "the generator forward")
    assert isinstance(model.forward, CompiledOrEager)
    with caplog.at_level(logging.WARNING, logger="maskbit.compile"):
        assert torch.equal(model(tokens, labels), expected)
        assert torch.equal(model(tokens, labels), expected)
    warnings = [r for r in caplog.records if "torch.compile of the generator forward" in r.getMessage()]
    assert len(warnings) == 1 and "running it eagerly" in warnings[0].getMessage()
    assert not model.forward.is_compiled and list(model.state_dict()) == list(tiny_generator().state_dict())


def test_compile_runs_the_compiled_function_when_it_works(monkeypatch):
    calls = []

    def fake_compile(fn, **kwargs):
        def compiled(*args, **kw):
            calls.append(1)
            return fn(*args, **kw)
        return compiled

    monkeypatch.setattr(torch, "compile", fake_compile)
    wrapped = CompiledOrEager(lambda x: x + 1, "f")
    assert wrapped(1) == 2 and wrapped(2) == 3 and len(calls) == 2 and wrapped.is_compiled


def test_sampling_compile_option_gives_the_eager_tokens(monkeypatch):
    monkeypatch.setattr(torch, "compile", _failing_compile)
    model = tiny_generator().eval()
    settings = dict(num_steps=4, guidance_scale=3.0, randomize_temperature=2.0)
    eager = sample(model, None, [1, 2], seeds=0, **settings)
    assert torch.equal(sample(model, None, [1, 2], seeds=0, compile=True, **settings), eager)


# ------------------------------------------------------------------------------- gradient checkpointing
def _loss_grads_and_saved_bytes(model, tokens, labels):
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    torch.manual_seed(123)  # dropout draws
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = model(tokens, labels)
    loss = logits.float().logsumexp(-1).mean()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}, sum(saved)


def test_gradient_checkpointing_same_gradients_fewer_saved_activations():
    model = tiny_generator(dropout=0.1, depth=3).train()
    tokens, labels = inputs(model, batch=8)
    loss, grads, saved = _loss_grads_and_saved_bytes(model, tokens, labels)
    model.zero_grad(set_to_none=True)
    assert set_gradient_checkpointing(model, True) == 1  # the transformer trunk
    loss_ckpt, grads_ckpt, saved_ckpt = _loss_grads_and_saved_bytes(model, tokens, labels)
    torch.testing.assert_close(loss_ckpt, loss, rtol=1e-6, atol=1e-7)
    for name, grad in grads.items():
        torch.testing.assert_close(grads_ckpt[name], grad, rtol=1e-5, atol=1e-7, msg=name)
    # a checkpointed block keeps only its input (B, L, D) alive instead of its activations
    block_inputs = 3 * 8 * (model.seq_len + 1) * 32 * 4
    assert saved_ckpt + block_inputs < 0.5 * saved, (saved_ckpt, block_inputs, saved)
    with torch.no_grad():  # no recomputation without a graph: identical outputs in eval
        model.eval()
        assert torch.equal(model(tokens, labels), (set_gradient_checkpointing(model, False), model(tokens, labels))[1])


# ------------------------------------------------------------------- gradient checkpointing: tokenizers
def _tokenizer(kind):
    from modeling.quantizers import LookupFreeQuantizer
    from modeling.taming import TamingVQGAN
    from modeling.titok.tokenizer import build_titok
    from modeling.vqgan_plus import VQGANPlusTokenizer
    torch.manual_seed(0)
    if kind in ("vqgan+", "maskgit"):  # 3 levels at 32 px: 32x32, 16x16, 8x8 stages and the mid block
        legacy = kind == "maskgit"
        return VQGANPlusTokenizer(LookupFreeQuantizer(8, entropy_loss_weight=0.1), 8, hidden_channels=32,
                                  channel_mult=(1, 1, 2), num_res_blocks=2, sample_with_conv=not legacy,
                                  legacy_decoder=legacy), 32
    if kind == "taming":
        return TamingVQGAN(codebook_size=16, token_size=8, ch=32, ch_mult=(1, 2), num_res_blocks=1,
                           attn_resolutions=(8,), resolution=16, z_channels=32), 16
    vit = dict(vit_enc_model_size="small", vit_dec_model_size="small", vit_enc_width=64, vit_enc_layers=2,
               vit_enc_heads=4, vit_dec_width=32, vit_dec_layers=2, vit_dec_heads=2, vit_enc_patch_size=16,
               vit_dec_patch_size=16, image_size=64, num_latent_tokens=6, codebook_size=16, token_size=5,
               use_l2_norm=True, commitment_cost=0.25, pixel_vqgan_hidden_channels=32, pixel_vqgan_channel_mult=(1, 2))
    stage2 = kind == "titok stage 2"  # frozen encoder; trained ViT decoder and MaskGIT pixel decoder
    return build_titok(**vit, quantize_mode="vae" if kind == "titok vae" else "vq", finetune_decoder=stage2,
                       is_legacy=stage2), 64


def _tokenizer_grads_and_held_bytes(model, x):
    """(loss, parameter gradients, bytes of the activations autograd keeps for backward) of one step."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    held = {}

    def pack(t):  # also sees the inputs a checkpointed stage keeps
        storage = t.untyped_storage()
        if storage.data_ptr() not in parameters:
            held[storage.data_ptr()] = storage.nbytes()
        return t

    model.zero_grad(set_to_none=True)
    torch.manual_seed(7)  # the VAE's posterior sample
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        reconstruction, info = model(x)
    loss = reconstruction.pow(2).mean()
    if isinstance(info, dict):  # VQ / LFQ: the quantizer losses reach the encoder
        loss = loss + info["quantizer_loss"]
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, sum(
        held.values())


@pytest.mark.parametrize("kind", ["vqgan+", "maskgit", "taming", "titok vae", "titok stage 2"])
def test_tokenizer_gradient_checkpointing_same_gradients_less_held_memory(kind):
    model, size = _tokenizer(kind)
    keys = list(model.state_dict())
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    loss, grads, held = _tokenizer_grads_and_held_bytes(model.train(), x)
    assert set_gradient_checkpointing(model, True) >= 2  # encoder and decoder (or their ViTs)
    assert list(model.state_dict()) == keys  # a runtime switch: the checkpoint layout is untouched
    loss_ckpt, grads_ckpt, held_ckpt = _tokenizer_grads_and_held_bytes(model, x)
    assert torch.equal(loss_ckpt, loss) and grads_ckpt.keys() == grads.keys() and len(grads) > 20
    for name, grad in grads.items():
        assert torch.equal(grads_ckpt[name], grad), name  # bitwise: the recomputation replays the same ops
    # activations kept for backward: only the stage inputs stay alive (measured 15-41% of the plain run)
    assert held_ckpt < 0.5 * held, (held_ckpt, held)
    assert _tokenizer_grads_and_held_bytes(model.eval(), x)[2] == _tokenizer_grads_and_held_bytes(
        (set_gradient_checkpointing(model, False), model)[1], x)[2]  # eval mode: no recomputation


def test_gradient_checkpointing_error_stays_for_models_without_it():
    from types import SimpleNamespace

    from training.trainer import Trainer
    from utils.errors import MaskbitError
    fake = SimpleNamespace(config=SimpleNamespace(training=SimpleNamespace(gradient_checkpointing=True)),
                           main_model="generator", unwrap=lambda name: torch.nn.Linear(2, 2))
    with pytest.raises(MaskbitError, match="gradient_checkpointing=true is not supported by the Linear"):
        Trainer._apply_fast_paths(fake)


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_tokenizer_training_with_gradient_checkpointing_gives_the_same_weights(tmp_path, monkeypatch):
    """Three steps of the VQGAN+ trainer (the GAN from step 1: adaptive weight and discriminator steps)."""
    import modeling.recompute
    from conftest import reset_accelerate_state
    from data import write_synthetic_shards
    from train_utils import assert_bitwise_equal, tiny_config
    from training import TokenizerTrainer

    shards = write_synthetic_shards(str(tmp_path / "shards"), num_train=16, num_val=4, resolution=16, seed=0)
    recomputed = []
    checkpoint = modeling.recompute.checkpoint

    def counted_checkpoint(*args, **kwargs):
        recomputed.append(1)
        return checkpoint(*args, **kwargs)

    monkeypatch.setattr(modeling.recompute, "checkpoint", counted_checkpoint)
    weights = []
    for checkpointing in (False, True):
        out = tmp_path / f"run_{checkpointing}"
        cfg = tiny_config(shards, out, experiment={"eval_every": 100, "generate_every": 100, "save_every": 100},
                          losses={"discriminator_start": 1, "discriminator_gradient_penalty": "adopt_weight"},
                          training={"max_train_steps": 3, "gradient_checkpointing": checkpointing})
        trainer = TokenizerTrainer(cfg)
        assert trainer.unwrap("tokenizer").decoder.gradient_checkpointing is checkpointing
        assert not trainer.ema.module.encoder.gradient_checkpointing  # the EMA copy stays plain
        trainer.train()
        reset_accelerate_state()
        weights.append(torch.load(out / "pytorch_model.bin", map_location="cpu", weights_only=True))
        assert len(recomputed) == (3 * 6 if checkpointing else 0)  # 3 steps x 3 encoder + 3 decoder stages (mid incl.)
    assert_bitwise_equal(weights[0], weights[1])


# ------------------------------------------------------------------------------------ SDPA, CFG batching
def test_sdpa_backend_names_the_cpu_kernel():
    cpu = torch.device("cpu")
    assert sdpa_backend(cpu, torch.float32, heads=4, head_dim=8, seq_len=17) == "FLASH_ATTENTION"
    assert sdpa_backend(cpu, torch.float32, heads=4, head_dim=8, seq_len=17, dropout=0.1) == "MATH"


def test_cfg_is_one_batched_forward_equal_to_two_passes():
    model = tiny_generator().eval()
    tokens, labels = inputs(model)
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    with torch.no_grad():
        guided = _guided_logits(model, tokens, labels, 3.0, unconditional_pass=True)
        assert calls == [2 * len(tokens)]  # conditional and unconditional halves in one forward
        keep = torch.zeros_like(labels, dtype=torch.bool)
        conditional, unconditional = model(tokens, labels, keep), model(tokens, labels, ~keep)
    torch.testing.assert_close(guided, conditional + 3.0 * (conditional - unconditional), rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------- throughput
def test_throughput_scalars_and_advice():
    scalars = Throughput(batch_per_process=8, num_processes=2, tokens_per_sample=256).scalars(
        steps=10, seconds=4.0, data_seconds=1.0, flops_per_sample=1e9, peak=1e12)
    assert scalars["perf/images_per_sec_per_process"] == 20.0 and scalars["perf/images_per_sec"] == 40.0
    assert scalars["perf/tokens_per_sec"] == 40.0 * 256 and scalars["perf/data_wait_fraction"] == 0.25
    assert scalars["perf/mfu"] == pytest.approx(20.0 * 1e9 / 1e12)
    assert "perf/mfu" not in Throughput(8, 1).scalars(10, 4.0, 1.0)  # unknown peak: no MFU
    assert "num_workers_per_gpu (now 3)" in data_wait_advice(0.3, 3, stage_two=True)
    assert "pretokenize" in data_wait_advice(0.3, 3, stage_two=True)
    assert "pretokenize" not in data_wait_advice(0.3, 3, stage_two=False)


# ------------------------------------------------------------------------------------ in a training run
@pytest.mark.usefixtures("fresh_accelerate_state")
def test_training_run_logs_throughput_kernel_and_fallbacks_once(tmp_path, monkeypatch):
    import time

    from data import write_synthetic_shards
    from helpers_generator_training import generator_config, make_token_folder, save_random_tokenizer
    from training.generator_trainer import GeneratorTrainer
    from utils.run_layout import read_metrics

    shards = write_synthetic_shards(str(tmp_path / "shards"), num_train=32, num_val=4, resolution=16, seed=0)
    cfg = generator_config(tmp_path / "run", shards, tmp_path / "tokenizer.bin", tmp_path / "tokens",
                           experiment={"log_every": 1, "save_every": 100, "generate_every": 100},
                           training={"max_train_steps": 4, "compile": True, "gradient_checkpointing": True})
    save_random_tokenizer(cfg, tmp_path / "tokenizer.bin")
    make_token_folder(cfg)
    monkeypatch.setattr(torch, "compile", _failing_compile)
    trainer = GeneratorTrainer(cfg)
    assert trainer.unwrap("generator").transformer.gradient_checkpointing
    assert not isinstance(trainer.ema.module.forward, CompiledOrEager)  # the EMA copy stays plain
    batches = trainer.train_batches

    def slow_batches(start_batch):  # a data pipeline slower than the step
        for batch in batches(start_batch):
            time.sleep(0.2)
            yield batch

    trainer.train_batches = slow_batches
    trainer.train()

    log = (tmp_path / "run" / "logs" / "log.txt").read_text()
    assert "Attention: scaled_dot_product_attention uses the MATH kernel (cpu float32, attention dropout 0.1)" in log
    assert log.count("torch.compile of the generator forward is not available here") == 1
    assert log.count("Waiting for data took") == 1 and "dataset.params.num_workers_per_gpu (now 0)" in log
    step_lines = [line for line in log.splitlines() if "images/s (" in line]
    assert len(step_lines) == 4 and all("tokens/s, data wait" in line for line in step_lines)
    record = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "perf/images_per_sec" in r][-1]
    assert record["perf/tokens_per_sec"] == pytest.approx(16 * record["perf/images_per_sec"])
    assert 0.2 < record["perf/data_wait_fraction"] <= 1.0 and "perf/mfu" not in record  # CPU: no known peak


def five_adamw_steps(make_optimizer) -> tuple[list[torch.nn.Parameter], torch.optim.Optimizer]:
    """Three parameters (seed 0) after five steps of `make_optimizer(params)` on random gradients (seed 1), and the
    optimizer."""
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s)) for s in [(16, 8), (8,), (4, 3, 3, 3)]]
    optimizer = make_optimizer(params)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        optimizer.step()
    return params, optimizer


def test_cpu_adamw_is_foreach_and_bitwise_the_single_tensor_update():
    from types import SimpleNamespace

    from training.optim import build_adamw
    hparams = SimpleNamespace(beta1=0.9, beta2=0.96, epsilon=1e-8, weight_decay=0.045)
    ours, optimizer = five_adamw_steps(lambda params: build_adamw(params, 1e-3, hparams))
    reference, _ = five_adamw_steps(lambda params: torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.96), eps=1e-8,
                                                                     weight_decay=0.045, foreach=False))
    assert optimizer.defaults["foreach"] is True
    assert all(torch.equal(a, b) for a, b in zip(ours, reference))


def test_adamw_fused_flag_takes_the_fused_kernel_on_a_cpu(monkeypatch):
    """`optimizer.params.fused=true`: PyTorch's fused CPU kernel, the same update up to float rounding."""
    from types import SimpleNamespace

    from training.optim import build_adamw
    fused_calls, runs = [], {}
    original = torch._fused_adamw_
    monkeypatch.setattr(torch, "_fused_adamw_", lambda *a, **k: fused_calls.append(1) or original(*a, **k))
    for fused in (None, True, False):
        hparams = SimpleNamespace(beta1=0.9, beta2=0.96, epsilon=1e-8, weight_decay=0.045, fused=fused)
        runs[fused], optimizer = five_adamw_steps(lambda params: build_adamw(params, 1e-3, hparams))
        assert optimizer.defaults["fused"] is (True if fused else None)
        assert optimizer.defaults["foreach"] is (None if fused else True)
    assert all(torch.equal(a, b) for a, b in zip(runs[None], runs[False]))  # null and false: both foreach on a CPU
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(runs[None], runs[True]))
    assert len(fused_calls) == 5  # the fused kernel ran for the five steps of `true` only


def test_dynamo_traces_the_generator_forward():
    """The real torch.compile front end (dynamo) on the generator, with the eager backend (no C++ build: cheap)."""
    model = tiny_generator().eval()
    tokens, labels = inputs(model)
    expected = model(tokens, labels)
    compiled = CompiledOrEager(model.forward, "the generator forward", backend="eager")
    with torch.no_grad():
        assert torch.equal(compiled(tokens, labels), expected.detach())
    assert compiled.is_compiled and compiled.checked


def test_cpu_bf16_training_attention_runs_in_float32_and_inference_is_untouched():
    from modeling.attention import scaled_dot_product_attention
    from modeling.cpu_bf16 import runs_in_float32_on_cpu
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 9, 8, generator=g).bfloat16().requires_grad_() for _ in range(3))
    kernels = []
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        kernels.append((args[0].dtype, torch.is_autocast_enabled("cpu")))
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = scaled_dot_product_attention(q, k, v)
            out.float().sum().backward()
            with torch.no_grad():
                inference = scaled_dot_product_attention(q, k, v)
    assert kernels == [(torch.float32, False), (torch.bfloat16, True)]  # training upcast, inference as PyTorch has it
    assert out.dtype == inference.dtype == torch.bfloat16 and q.grad.dtype == torch.bfloat16
    reference = original(q.detach().float(), k.detach().float(), v.detach().float()).bfloat16()
    assert torch.equal(out, reference)
    assert runs_in_float32_on_cpu(q) and not runs_in_float32_on_cpu(q.detach().float())


def test_attention_benchmark_times_every_row(monkeypatch, capsys):
    from train_utils import load_script
    bench = load_script("benchmark_attention")
    monkeypatch.setattr("sys.argv", ["benchmark_attention.py", "--shape", "2", "2", "5", "4", "--repeats", "2"])
    bench.main()
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [row.split("  ")[0] for row in rows] == [
        "FLASH_ATTENTION float32", "MATH float32", "FLASH_ATTENTION bfloat16", "MATH bfloat16",
        "modeling.attention, bf16 autocast"]
    assert all(row.rstrip().endswith(" ms") and float(row.split()[-2]) > 0 for row in rows)
