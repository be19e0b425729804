"""Generate evaluation samples with a MaskBit generator and compute gFID / Inception Score (PyTorch, no TF).

    python scripts/eval_maskbit.py config=configs/generator/maskbit_generator_12bit.yaml \
        experiment.vqgan_checkpoint=TOKENIZER experiment.generator_checkpoint=GENERATOR \
        evaluation.fid_stats_path=train_imagenet256_stats.npz [evaluation.num_samples=50000]
    python scripts/eval_maskbit.py --config C --tokenizer T --generator G --batchsize 100   # official flags
    accelerate launch --num_processes 8 scripts/eval_maskbit.py config=... (same samples for any process count)

Labels: one permutation of the classes (seed evaluation.seed) repeated, as the official script; sample i is
drawn with seed evaluation.seed + i. Chunks of evaluation.batch_size samples are written to <out>/samples/ as
they finish, so a killed run resumes where it stopped. Writes <out>/samples_NxHxWx3.npz (ADM layout, label
order), and with evaluation.compute_inception: FID against evaluation.fid_stats_path and IS (10 splits from
50,000 samples on, else 1) to <out>/metrics.json. <out> = experiment.output_dir or
$WORKSPACE/outputs/<experiment.name>/eval.

evaluation.protocol picks how samples become the uint8 images Inception sees (evaluation/protocols.py): adm (default,
MaskBit/ADM: clamp, x255, truncate), maskgit_v1 (per-image min-max normalisation, MaskGIT-pytorch) or maskgit_v2
(PIL bicubic to 299 in float, then truncation; Halton-MaskGIT). The reference statistics must have been computed
the same way for the FID to mean what the paper's does.
"""
from __future__ import annotations

import argparse
import json
import pprint
import sys
import time

import torch
from accelerate import PartialState

from evaluation import (PROTOCOLS, GeneratorEvaluator, SampleChunks, class_labels, default_is_splits,
                        generate_chunks, iterate_chunk_batches, load_fid_stats, to_uint8_protocol)
from evaluation.builders import inception_from_config
from modeling import build_generator, build_sampler, build_tokenizer, generation_settings, load_pretrained
from training.run_setup import set_backend_flags
from utils.config import ConfigError, parse_args_or_exit
from utils.errors import run_main
from utils.run_layout import resolve_output_dir

OFFICIAL_FLAGS = {  # official argparse flag -> config key
    "config": "config", "tokenizer": "experiment.vqgan_checkpoint", "vqgan": "experiment.vqgan_checkpoint",
    "generator": "experiment.generator_checkpoint", "mlm": "experiment.generator_checkpoint",
    "batchsize": "evaluation.batch_size", "res": "dataset.preprocessing.resolution",
}


def to_overrides(argv: list[str]) -> list[str]:
    """Official `--flag value` arguments -> `key=value` overrides (other key=value arguments pass through)."""
    parser = argparse.ArgumentParser(add_help=False)
    for flag in OFFICIAL_FLAGS:
        parser.add_argument(f"--{flag}")
    parser.add_argument("--device")  # accepted for compatibility; accelerate chooses the device
    flags, rest = parser.parse_known_args(argv)
    return [f"{OFFICIAL_FLAGS[k]}={v}" for k, v in vars(flags).items() if v is not None and k in OFFICIAL_FLAGS] + rest


def load_sampler(config, device):
    """(labels (B,), seeds (B,)) -> images (B,3,H,W) from the configured tokenizer and generator checkpoints, with
    the generator family's sampler and its official evaluation settings (MaskBit: softmax temperature 1.0)."""
    for key in ("vqgan_checkpoint", "generator_checkpoint"):
        if not config.experiment[key]:
            raise ConfigError(f"set experiment.{key}=PATH")
    tokenizer = load_pretrained(build_tokenizer(config), config.experiment.vqgan_checkpoint).to(device)
    generator = load_pretrained(build_generator(config), config.experiment.generator_checkpoint)
    generator.to(device).requires_grad_(False)
    return build_sampler(config, generator, tokenizer, evaluation=True)


def num_classes(config) -> int:
    with torch.device("meta"):  # the class count the generator is built with, whatever its family
        return build_generator(config).num_classes


def main(argv=None) -> dict:
    argv = to_overrides(list(sys.argv[1:] if argv is None else argv))
    config = parse_args_or_exit(argv, prog="eval_maskbit.py")
    state = PartialState()
    set_backend_flags(config.training.enable_tf32)
    device, cfg = state.device, config.evaluation
    num_samples, resolution = cfg.num_samples, config.dataset.preprocessing.resolution
    if cfg.compute_inception and not cfg.fid_stats_path:
        raise ConfigError("set evaluation.fid_stats_path=STATS.npz (mu/sigma of the reference set), "
                          "or evaluation.compute_inception=false to only generate samples")
    if cfg.protocol not in PROTOCOLS:
        raise ConfigError(f"evaluation.protocol must be one of {PROTOCOLS}, got '{cfg.protocol}'")
    reference = load_fid_stats(cfg.fid_stats_path) if cfg.compute_inception else None  # fail before sampling
    inception = inception_from_config(config, device)

    out_dir = resolve_output_dir(config, "eval")
    classes = num_classes(config)
    labels = class_labels(num_samples, classes, cfg.seed)
    run_info = {"seed": cfg.seed, "resolution": resolution, "num_classes": classes,
                "tokenizer": config.experiment.vqgan_checkpoint, "generator": config.experiment.generator_checkpoint,
                "sampling": generation_settings(config, evaluation=True)}
    if cfg.protocol != "adm":  # recorded only when not the default, so earlier sample folders still resume
        run_info["protocol"] = cfg.protocol
    chunks = SampleChunks(out_dir / "samples", num_samples, cfg.batch_size, run_info)
    state.wait_for_everyone()

    if state.is_main_process:
        print("Running generation...")
    if any(not chunks.done(k) for k in chunks.chunks_for(state.process_index, state.num_processes)):
        sample_fn = load_sampler(config, device)
        start = time.time()
        made = generate_chunks(sample_fn, chunks, labels, cfg.seed, state.process_index, state.num_processes,
                               progress=state.is_main_process,
                               images_to_uint8=lambda images: to_uint8_protocol(images, cfg.protocol))
        seconds = time.time() - start
        print(f"[rank {state.process_index}] generated {made} samples in {seconds:.1f}s "
              f"({made / max(seconds, 1e-9):.2f} img/s)")
    state.wait_for_everyone()

    side = 299 if cfg.protocol == "maskgit_v2" else resolution  # v2 stores the Inception-size images
    npz_path = out_dir / f"samples_{num_samples}x{side}x{side}x3.npz"
    if state.is_main_process and not npz_path.is_file():
        chunks.write_npz(npz_path, labels)
        print(f"wrote {npz_path}")

    metrics = {}
    if inception is not None:
        if state.is_main_process:
            print("Running evaluation...")
        evaluator = GeneratorEvaluator(inception, reference, num_samples, default_is_splits(num_samples), device)
        for images, ids in iterate_chunk_batches(chunks, state.process_index, state.num_processes,
                                                 cfg.batch_size, device):
            evaluator.update(images, ids)
        evaluator.all_reduce()
        metrics = evaluator.result()
    metrics["NumSamples"] = num_samples
    if state.is_main_process:
        print("EVALUATION")
        steps = run_info["sampling"].get("num_steps", run_info["sampling"].get("num_sample_steps"))
        print(f"Results for {config.model.vq_model.token_size} bits with {steps} steps.")  # the official line
        pprint.pprint(metrics)
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    state.wait_for_everyone()
    return metrics


if __name__ == "__main__":
    run_main(main, prog="eval_maskbit.py")
