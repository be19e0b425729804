"""Generate evaluation samples with a MaskBit generator and compute gFID / Inception Score (PyTorch, no TF).

    python scripts/eval_maskbit.py config=configs/generator/maskbit_generator_12bit.yaml \
        experiment.vqgan_checkpoint=TOKENIZER experiment.generator_checkpoint=GENERATOR \
        evaluation.fid_stats_path=train_imagenet256_stats.npz [evaluation.num_samples=50000]
    python scripts/eval_maskbit.py --config C --tokenizer T --generator G --batchsize 100   # official flags
    accelerate launch --num_processes 8 scripts/eval_maskbit.py config=... (same samples for any process count)

Labels: one permutation of the classes (seed evaluation.seed) repeated, as the official script; sample i is
drawn with seed evaluation.seed + i. Chunks of evaluation.batch_size samples are written to <out>/samples/ as
they finish, so a killed run resumes where it stopped; they are keyed by the sha256 of both weight files and the
sampler settings (samples/manifest.json), so samples of other weights or settings are never reused
(experiment.overwrite=true moves them aside). Writes <out>/samples_NxHxWx3.npz (ADM layout, label
order), and with evaluation.compute_inception the ADM suite's metrics (evaluation/adm.py: IS, FID, sFID,
precision, recall, as scripts/evaluate_samples.py) against evaluation.fid_stats_path (an ADM reference batch;
a mu/sigma file gives FID and IS only) to <out>/metrics.json, with the protocol (sample count, seeds, sampler
settings, reference sha256) and a warning for fewer than 50,000 samples or a non-gFID reference.
evaluation.seeds=[0,1,2]: one sample set per seed under <out>/seed_<s>/, each scored, plus mean and std.
<out> = experiment.output_dir or $WORKSPACE/outputs/<experiment.name>/eval. The run's images/s (overall and per
process: generation and scoring of every seed's samples) is printed at the end and recorded ("throughput").

evaluation.protocol picks how samples become the uint8 images Inception sees (evaluation/protocols.py): adm (default,
MaskBit/ADM: clamp, x255, truncate), maskgit_v1 (per-image min-max normalisation, MaskGIT-pytorch) or maskgit_v2
(PIL bicubic to 299 in float, then truncation; Halton-MaskGIT). The reference statistics must have been computed
the same way for the FID to mean what the paper's does.
"""
from __future__ import annotations

import argparse
import hashlib
import pprint
import shutil
import sys
import time
from pathlib import Path

import torch

from evaluation import PROTOCOLS, SampleChunks, class_labels, generate_chunks, to_uint8_protocol
from evaluation.adm import evaluate_npz, read_reference
from evaluation.builders import inception_from_config
from evaluation.generation import SampleCacheMismatchError
from evaluation.protocol import gfid_protocol, gfid_warnings, mean_and_std, protocol_line, seed_report_lines
from modeling import build_generator, build_sampler, build_tokenizer, generation_settings, load_pretrained
from modeling.checkpoint import resolve_checkpoint
from training.run_setup import process_state, set_backend_flags
from training.throughput import job_throughput, throughput_line
from utils.atomic import atomic_write_json
from utils.config import ConfigError, parse_args_or_exit
from utils.errors import MaskbitError, run_main
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


def weights_sha256(path_or_id: str, key: str) -> str:
    """sha256 of the weights file a checkpoint setting names: the sample cache is keyed by content, not path."""
    if not path_or_id:
        raise ConfigError(f"set experiment.{key}=PATH")
    digest = hashlib.sha256()
    with open(resolve_checkpoint(path_or_id), "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def open_sample_cache(out_dir: Path, num_samples: int, chunk_size: int, run_info: dict, overwrite: bool) -> None:
    """Check that <out>/samples was made with these weights and settings. A mismatch stops (nothing is reused or
    mixed); with experiment.overwrite=true the old samples, .npz and metrics.json move to <out>/replaced-<time>/."""
    try:
        SampleChunks(out_dir / "samples", num_samples, chunk_size, run_info)
        return
    except SampleCacheMismatchError as err:
        if not overwrite:
            raise MaskbitError(f"{err}. They were made with other weights or sampler settings and are not reused. "
                               f"Set experiment.overwrite=true to move them (with the .npz and metrics.json made "
                               f"from them) to {out_dir}/replaced-<time>/ and regenerate, or choose another "
                               f"experiment.output_dir.") from None
    target = out_dir / f"replaced-{time.strftime('%Y%m%d-%H%M%S')}"
    target.mkdir(parents=True, exist_ok=False)
    for entry in [out_dir / "samples", out_dir / "metrics.json", *out_dir.glob("samples_*.npz")]:
        if entry.exists():
            shutil.move(str(entry), str(target / entry.name))
    print(f"experiment.overwrite: moved the samples of another run to {target}")
    SampleChunks(out_dir / "samples", num_samples, chunk_size, run_info)


def num_classes(config) -> int:
    with torch.device("meta"):  # the class count the generator is built with, whatever its family
        return build_generator(config).num_classes


def evaluate_seed(config, state, seed: int, out_dir, labels, classes: int, inception, reference,
                  cache_dir, weights: dict) -> dict:
    """Generate (or resume) the sample set of one seed under out_dir and score it with the ADM suite; `weights`:
    the sha256 of both weight files (hashed once per run), which key the sample cache."""
    cfg, device = config.evaluation, state.device
    num_samples, resolution = cfg.num_samples, config.dataset.preprocessing.resolution
    run_info = {"seed": seed, "resolution": resolution, "num_classes": classes, **weights,
                "sampling": generation_settings(config, evaluation=True)}
    if cfg.protocol != "adm":  # recorded only when not the default, so earlier sample folders still resume
        run_info["protocol"] = cfg.protocol
    if state.is_main_process:  # checks (or sets aside) the cache before any process uses it
        open_sample_cache(out_dir, num_samples, cfg.batch_size, run_info, config.experiment.overwrite)
    state.wait_for_everyone()
    chunks = SampleChunks(out_dir / "samples", num_samples, cfg.batch_size, run_info)

    if state.is_main_process:
        print(f"Running generation (seed {seed})...")
    if any(not chunks.done(k) for k in chunks.chunks_for(state.process_index, state.num_processes)):
        sample_fn = load_sampler(config, device)
        start = time.time()
        made = generate_chunks(sample_fn, chunks, labels, seed, state.process_index, state.num_processes,
                               progress=state.is_main_process,
                               images_to_uint8=lambda images: to_uint8_protocol(images, cfg.protocol))
        seconds = time.time() - start
        print(f"[rank {state.process_index}] generated {made} samples in {seconds:.1f}s "
              f"({made / max(seconds, 1e-9):.2f} img/s)")
    state.wait_for_everyone()

    side = 299 if cfg.protocol == "maskgit_v2" else resolution  # v2 stores the Inception-size images
    npz_path = out_dir / f"samples_{num_samples}x{side}x{side}x3.npz"
    if state.is_main_process and (not npz_path.is_file() or max(
            chunks.path(k).stat().st_mtime_ns for k in range(chunks.num_chunks)) > npz_path.stat().st_mtime_ns):
        chunks.write_npz(npz_path, labels)
        print(f"wrote {npz_path}")
    state.wait_for_everyone()

    metrics = {}
    if inception is not None:
        if state.is_main_process:
            print("Running evaluation...")
        log = print if state.is_main_process else (lambda *a: None)
        metrics = evaluate_npz(reference, npz_path, inception, cache_dir, cfg.batch_size, device,
                               state.process_index, state.num_processes, progress=state.is_main_process,
                               log=log) or {}
    metrics["NumSamples"] = num_samples
    return metrics


def main(argv=None) -> dict:
    argv = to_overrides(list(sys.argv[1:] if argv is None else argv))
    config = parse_args_or_exit(argv, prog="eval_maskbit.py")
    state = process_state()
    set_backend_flags(config.training.enable_tf32)
    device, cfg = state.device, config.evaluation
    if cfg.compute_inception and not cfg.fid_stats_path:
        raise ConfigError("set evaluation.fid_stats_path=REFERENCE.npz (ADM's VIRTUAL_imagenet256_labeled.npz, or "
                          "mu/sigma statistics), or evaluation.compute_inception=false to only generate samples")
    if cfg.protocol not in PROTOCOLS:
        raise ConfigError(f"evaluation.protocol must be one of {PROTOCOLS}, got '{cfg.protocol}'")
    reference = read_reference(cfg.fid_stats_path) if cfg.compute_inception else None  # fail before sampling
    inception = inception_from_config(config, device)

    out_dir = resolve_output_dir(config, "eval")
    classes = num_classes(config)
    seeds = list(cfg.seeds) or [cfg.seed]
    cache_dir = cfg.feature_cache_dir or out_dir / "inception_features"  # shared by the seeds: reference once
    weights = {"tokenizer_sha256": weights_sha256(config.experiment.vqgan_checkpoint, "vqgan_checkpoint"),
               "generator_sha256": weights_sha256(config.experiment.generator_checkpoint, "generator_checkpoint")}
    per_seed = {}
    start = time.perf_counter()
    for seed in seeds:
        seed_dir = out_dir if len(seeds) == 1 else out_dir / f"seed_{seed}"
        labels = class_labels(cfg.num_samples, classes, seed)
        per_seed[seed] = evaluate_seed(config, state, seed, seed_dir, labels, classes, inception, reference,
                                       cache_dir, weights)
    throughput = job_throughput(cfg.num_samples * len(seeds), time.perf_counter() - start, state.num_processes)

    sampling = generation_settings(config, evaluation=True)
    notes = []
    if reference is not None:
        protocol = gfid_protocol(cfg.num_samples, classes, seeds, sampling, reference, cfg.inception_dtype)
        protocol["image_protocol"] = cfg.protocol  # how samples became uint8 (evaluation.protocol)
        notes = gfid_warnings(cfg.num_samples, reference)
    else:
        protocol = {"metric": "none (evaluation.compute_inception=false)", "num_samples": cfg.num_samples,
                    "seeds": seeds, "sampling": sampling}
    if len(seeds) == 1:
        metrics = per_seed[seeds[0]]
    else:
        mean, std = mean_and_std(per_seed)
        metrics = {"per_seed": {str(s): m for s, m in per_seed.items()}, "mean": mean, "std": std,
                   "NumSamples": cfg.num_samples}
    if state.is_main_process:
        print("EVALUATION")
        steps = sampling.get("num_steps", sampling.get("num_sample_steps"))
        print(f"Results for {config.model.vq_model.token_size} bits with {steps} steps.")  # the official line
        pprint.pprint(metrics)
        if reference is not None:
            print("\n".join(seed_report_lines(per_seed) + [protocol_line(protocol)]))
        for note in notes:
            print(note)
        record = {**metrics, "protocol": protocol, "warnings": notes, "throughput": throughput}
        atomic_write_json(out_dir / "metrics.json", record)
        print(throughput_line(throughput, f"generation and scoring of {cfg.num_samples} samples x {len(seeds)} "
                                          f"seed(s); samples found in the cache are read, not generated"))
    state.wait_for_everyone()
    return metrics


if __name__ == "__main__":
    run_main(main, prog="eval_maskbit.py")
