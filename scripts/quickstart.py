"""The whole MaskBit pipeline on the built-in synthetic dataset, on a CPU, in minutes, with proof that it learned.

    python scripts/quickstart.py --output runs/quickstart          # full run (under 15 minutes on 2 CPU cores)
    python scripts/quickstart.py --output runs/qs --short          # same code path, a few steps (tests)

Stages, each through the project's real scripts and `configs/quickstart/*.yaml`; a stage is finished only when its
marker `<output>/.quickstart/<stage>.done` exists (written atomically after the stage succeeded) and is then reused
when the command runs again (an interrupted training resumes from its last checkpoint). `--fresh` deletes what the
quickstart writes (the paths in OWN_OUTPUTS) and nothing else in --output before starting:
  1. data       synthetic class-conditional images written as train/val shards
  2. tokenizer  accelerate launch scripts/train_tokenizer.py   (LFQ, GAN + entropy loss, no perceptual loss)
  3. tok_eval   scripts/eval_tokenizer.py                      (PSNR, SSIM, codebook and per-bit usage)
  4. tokens     scripts/pretokenize.py                         (the train set as bit tokens, once)
  5. generator  accelerate launch scripts/train_maskbit.py     (bit-token generator on those tokens)
  6. gen_eval   class-conditional samples judged by a small classifier trained on the synthetic training set
  7. editing    modeling.edit: the centre of held-out images regenerated as a different class
Writes reconstructions.png, samples.png, editing.png, loss_curves.png and metrics.json to --output, prints a summary
with PASS/FAIL for each quality floor and exits with 1 if a floor fails (floors are informational with --short).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

# On a CPU, OpenMP threads that spin while waiting make small-tensor training 10-20x slower as soon as another
# process (a data worker) shares the cores; passive waiting costs nothing when the cores are free.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torchvision  # noqa: E402

from data import write_synthetic_shards  # noqa: E402
from data.synthetic import CLASS_NAMES  # noqa: E402
from data.loaders import load_eval_images  # noqa: E402
from evaluation import mean_colour_psnr as per_image_mean_colour_psnr, psnr  # noqa: E402
from evaluation.synthetic_classifier import SyntheticClassifier, predict, train_classifier  # noqa: E402
from evaluation.synthetic_generation import evaluate_generation, generate_per_class, pooled_frechet  # noqa: E402
from modeling import build_generator, build_tokenizer, edit, load_pretrained, sampling_config, token_space  # noqa: E402
from modeling.editing import reconstruct  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.atomic import atomic_path, atomic_write_bytes, atomic_write_json  # noqa: E402
from utils.plots import plot_loss_curves  # noqa: E402
from utils.run_layout import WEIGHTS_BIN  # noqa: E402
from utils.errors import run_main

REPO = Path(__file__).resolve().parent.parent

CONFIGS = REPO / "configs" / "quickstart"
NUM_CLASSES, RESOLUTION = 10, 32
# (full, --short) settings
SIZES = {
    "num_train": (5000, 600), "num_val": (500, 100), "tokenizer_steps": (None, 12), "generator_steps": (None, 12),
    "classifier_epochs": (4, 1), "samples_per_class": (50, 4), "baseline_samples_per_class": (10, 4),
    "edit_images": (200, 20),
}


# Everything the quickstart writes under --output: `--fresh` removes these and nothing else.
STAGE_MARKERS = ".quickstart"
OWN_OUTPUTS = ("data", "tokenizer", "tokenizer_eval", "tokens", "generator", "generator_eval.json",
               "reconstructions.png", "samples.png", "loss_curves.png", "metrics.json", "classifier.pt",
               "editing.json", "editing.png", STAGE_MARKERS)


def remove_own_outputs(out: Path) -> None:
    for name in OWN_OUTPUTS:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def stage_done(out: Path, name: str, output: Path) -> bool:
    """A stage is finished when its marker exists (written after it succeeded) and its output is still there;
    an output without a marker (e.g. from a killed run) is never taken for a finished stage."""
    return (out / STAGE_MARKERS / f"{name}.done").is_file() and output.exists()


def mark_stage_done(out: Path, name: str, output: Path, seconds: float) -> None:
    atomic_write_json(out / STAGE_MARKERS / f"{name}.done", {"stage": name, "output": str(output),
                                                             "seconds": seconds})


def size(name: str, short: bool):
    return SIZES[name][1 if short else 0]


def run(stage: str, cmd: list[str]) -> None:
    print(f"\n[{stage}] $ {' '.join(cmd)}", flush=True)
    # `--multi_gpu` with ACCELERATE_USE_CPU=1 is how accelerate 1.x starts several CPU processes (gloo)
    env = dict(os.environ, ACCELERATE_USE_CPU="1") if "--multi_gpu" in cmd and not torch.cuda.is_available() else None
    result = subprocess.run(cmd, cwd=REPO, env=env)
    if result.returncode != 0:
        sys.exit(f"quickstart: stage '{stage}' failed (exit code {result.returncode}); see its output above.")


def accelerate(script: str, processes: int) -> list[str]:
    """`accelerate launch` of `script` on this machine's cores: `processes` data-parallel CPU processes (gloo)
    sharing the cores, or one process using them all."""
    threads = max(1, torch.get_num_threads() // processes)
    # Without --num_cpu_threads_per_process, `accelerate launch` (not in --cpu mode) sets OMP_NUM_THREADS=1 for
    # the job: on 2 cores the tokenizer then trained about 20% slower.
    layout = ["--num_processes", "1"] if processes == 1 else [
        "--multi_gpu", "--num_processes", str(processes), "--main_process_port", str(free_port())]
    return [sys.executable, "-m", "accelerate.commands.launch", *layout, "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--num_cpu_threads_per_process", str(threads),
            str(REPO / "scripts" / script)]


def native_bf16() -> bool:
    """bf16 matmuls/convs run in hardware here (a CUDA GPU with bf16, or a CPU with AMX or AVX512-BF16). Without
    them, bf16 autocast is emulated and slower than float32, so the quickstart keeps float32."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return any(getattr(torch.cpu, probe, lambda: False)()  # private probes: absent in some builds -> float32
               for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))


def default_processes() -> int:
    """On a CPU, two data-parallel processes of half the threads beat one process of all of them for these tiny
    models (measured on 2 cores: generator step 58 vs 68 ms in float32, 53 vs 67-73 ms in bf16; bf16 tokenizer step
    0.105 vs 0.17 s before its GAN starts, 0.177 vs 0.25 s after: docs/quickstart_experiments.md)."""
    return 2 if not torch.cuda.is_available() and (os.cpu_count() or 1) >= 2 else 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def per_process_batch(config: Path, processes: int) -> list[str]:
    """Split the config's batch over the processes, so the global batch (and so the recipe) stays the config's."""
    batch = load_config([f"config={config}"]).training.per_gpu_batch_size
    if batch % processes:
        sys.exit(f"quickstart: --processes {processes} does not divide the batch of {config.name} ({batch})")
    return [f"training.per_gpu_batch_size={batch // processes}"]


def stage_overrides(out: Path, name: str, steps, data: dict) -> list[str]:
    args = [f"experiment.output_dir={out / name}", f"dataset.params.train_shards_path_or_url={data['train']}",
            f"dataset.params.eval_shards_path_or_url={data['val']}"]
    if steps is not None:  # --short: a few steps, with checkpoints, grids and logs still written
        args += [f"training.max_train_steps={steps}", f"experiment.save_every={steps // 2}",
                 f"experiment.generate_every={steps // 2}", "experiment.log_every=2",
                 "lr_scheduler.params.warmup_steps=2", "losses.discriminator_start=4"]
    return args


def pretokenize(config: Path, tokenizer_bin: Path, tokens: Path, data: dict) -> None:
    """Stage 4: the train set as token shards in `tokens` (a folder left by an interrupted run is redone)."""
    shutil.rmtree(tokens, ignore_errors=True)
    run("tokens", [sys.executable, str(REPO / "scripts" / "pretokenize.py"), f"config={config}",
                   f"experiment.vqgan_checkpoint={tokenizer_bin}",
                   f"dataset.params.train_shards_path_or_url={data['train']}",
                   f"dataset.params.pretokenized_shards_path_or_url={tokens}", "training.per_gpu_batch_size=100"])


def generator_sampling(config, precision: str):
    """The config's sampler settings; with bf16 the generator samples under bf16 autocast (half the sampling time
    on a CPU with native bf16), the tokenizer still decodes in float32."""
    settings = sampling_config(config)
    return settings.replace(autocast_dtype=torch.bfloat16) if precision == "bf16" else settings


def load_images(pattern: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of a shard set, eval transform (no augmentation) -> (N, 3, R, R) in [0, 1], labels (N,)."""
    cfg = load_config([f"config={CONFIGS / 'tokenizer_tiny.yaml'}", f"dataset.params.eval_shards_path_or_url={pattern}",
                       "dataset.params.num_workers_per_gpu=0"])
    return load_eval_images(cfg.dataset)


def evaluate_samples(out: Path, data: dict, short: bool, precision: str) -> dict:
    """Stage 6: classifier, samples of every class, class consistency and feature-space Fréchet distances."""
    config = load_config([f"config={CONFIGS / 'generator_tiny.yaml'}"])
    train_images, train_labels = load_images(data["train"])
    val_images, val_labels = load_images(data["val"])
    classifier = train_classifier(train_images, train_labels, NUM_CLASSES, epochs=size("classifier_epochs", short))
    with atomic_path(out / "classifier.pt") as tmp:  # the editing stage judges edits with it too
        torch.save(classifier.state_dict(), tmp)
    heldout_pred, heldout_features = predict(classifier, val_images)

    tokenizer = load_pretrained(build_tokenizer(config), out / "tokenizer" / WEIGHTS_BIN)
    generator = load_pretrained(build_generator(config), out / "generator" / WEIGHTS_BIN)
    torch.manual_seed(0)
    untrained = build_generator(config).eval()
    sampling, per_class = generator_sampling(config, precision), size("samples_per_class", short)

    images, labels = generate_per_class(generator, tokenizer, NUM_CLASSES, per_class, sampling)
    trained = evaluate_generation(classifier, images, labels, val_images, val_labels, NUM_CLASSES, heldout_features)
    # The untrained generator is judged on fewer samples (it only has to show what no training gives), and the
    # trained one on the same number (its first samples of every class) for the FD floor: FD grows as the sample
    # count falls, so both sides of that comparison must have the same count.
    few = size("baseline_samples_per_class", short)
    base_images, base_labels = generate_per_class(untrained, tokenizer, NUM_CLASSES, few, sampling)
    baseline = evaluate_generation(classifier, base_images, base_labels, val_images, val_labels, NUM_CLASSES,
                                   heldout_features)
    first = (torch.arange(len(labels)) % per_class) < few
    fd_on_baseline_count = pooled_frechet(predict(classifier, images[first])[1], heldout_features)
    columns = min(per_class, 10)
    grid = images.view(NUM_CLASSES, per_class, *images.shape[1:])[:, :columns].flatten(0, 1)
    with atomic_path(out / "samples.png") as tmp:
        torchvision.utils.save_image(grid, tmp, nrow=columns, padding=1, format="png")
    return {"classifier_heldout_accuracy": float((heldout_pred == val_labels).float().mean()),
            "num_samples": len(images), **trained, "untrained_generator": {"num_samples": len(base_images), **baseline},
            "frechet_distance_on_baseline_count": fd_on_baseline_count}


def evaluate_editing(out: Path, data: dict, short: bool, precision: str) -> dict:
    """Stage 7: regenerate the centre box (3/4 of each side) of held-out images as a different class (modeling.edit).

    Class consistency of the edited region: the classifier's accuracy for the new class on the box cropped and
    resized to the full image (its accuracy on the same crops of the unedited images is the reference); also on the
    whole edited image, and for the untrained generator's edits (the baseline). PSNR: the pixels outside the box
    against the tokenizer's reconstruction (at this size all of them lie in the one-token blend band).
    """
    config = load_config([f"config={CONFIGS / 'generator_tiny.yaml'}"])
    val_images, val_labels = load_images(data["val"])
    count = size("edit_images", short)
    images, labels = val_images[:count], val_labels[:count]
    new_labels = (labels + 1 + torch.arange(count) % (NUM_CLASSES - 1)) % NUM_CLASSES  # never the original class
    if (out / "classifier.pt").is_file():
        classifier = SyntheticClassifier(NUM_CLASSES)
        classifier.load_state_dict(torch.load(out / "classifier.pt", weights_only=True))
        classifier.eval()
    else:  # a gen_eval stage reused from before the classifier was saved: train it again (same seed)
        train_images, train_labels = load_images(data["train"])
        classifier = train_classifier(train_images, train_labels, NUM_CLASSES, epochs=size("classifier_epochs", short))
    tokenizer = load_pretrained(build_tokenizer(config), out / "tokenizer" / WEIGHTS_BIN)
    generator = load_pretrained(build_generator(config), out / "generator" / WEIGHTS_BIN)
    torch.manual_seed(0)
    untrained = build_generator(config).eval()
    top, side = RESOLUTION // 8, RESOLUTION * 3 // 4
    box = (top, top, side, side)  # top, left, height, width: the centre (6x6 of the 8x8 tokens)
    outside = torch.ones(RESOLUTION, RESOLUTION, dtype=torch.bool)
    outside[top:top + side, top:top + side] = False

    def edits(model) -> torch.Tensor:
        return torch.cat([edit(model, tokenizer, images[i:i + 100], dict(box=box), new_labels[i:i + 100],
                               generator_sampling(config, precision), seeds=range(i, min(i + 100, count))).clamp(0, 1)
                          for i in range(0, count, 100)])

    def region(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(x[..., top:top + side, top:top + side], size=RESOLUTION,
                                               mode="bilinear", align_corners=False)

    def accuracy(x: torch.Tensor, target: torch.Tensor) -> float:
        return float((predict(classifier, x)[0] == target).float().mean())

    edited, baseline = edits(generator), edits(untrained)
    recon = reconstruct(tokenizer, images)[1].clamp(0, 1)
    columns = min(count, 10)
    grid = torch.cat([images[:columns], recon[:columns], edited[:columns]])
    with atomic_path(out / "editing.png") as tmp:
        torchvision.utils.save_image(grid, tmp, nrow=columns, padding=1, format="png")
    return {
        "num_images": count, "box": list(box),
        "class_consistency": accuracy(region(edited), new_labels),
        "untrained_generator_class_consistency": accuracy(region(baseline), new_labels),
        "classifier_accuracy_on_unedited_regions": accuracy(region(images), labels),
        "whole_image_class_consistency": accuracy(edited, new_labels),
        "whole_image_original_class_rate": accuracy(edited, labels),
        "unmasked_psnr_vs_reconstruction": float(psnr(edited[..., outside, None], recon[..., outside, None]).mean()),
    }


def mean_colour_psnr(data: dict) -> float:
    """PSNR of the trivial reconstruction that predicts each held-out image's mean colour."""
    images, _ = load_images(data["val"])
    return float(per_image_mean_colour_psnr(images).mean())


def check_floors(metrics: dict) -> list[tuple[str, bool, str]]:
    tok, gen = metrics["tokenizer"], metrics["generator"]
    bits = tok["BitUsage"]
    codes_needed = min(2 ** len(bits), metrics["num_val_tokens"])
    untrained = gen["untrained_generator"]
    return [
        ("tokenizer PSNR >= mean-colour PSNR + 6 dB", tok["PSNR"] >= metrics["mean_colour_psnr"] + 6,
         f"{tok['PSNR']:.2f} dB vs {metrics['mean_colour_psnr']:.2f} + 6 dB"),
        ("codebook usage > 50% of the codes the data can need",
         tok["CodebookUsage"] * 2 ** len(bits) > 0.5 * codes_needed,
         f"{round(tok['CodebookUsage'] * 2 ** len(bits))} of {codes_needed} codes"),
        ("no dead bit (every bit is +1 on 1-99% of tokens)", all(0.01 < b < 0.99 for b in bits),
         "bit usage " + " ".join(f"{b:.2f}" for b in bits)),
        ("class consistency >= 0.8", gen["class_consistency"] >= 0.8, f"{gen['class_consistency']:.3f} (chance 0.1)"),
        ("FD clearly below the untrained generator's (< 1/2, same sample count)",
         gen["frechet_distance_on_baseline_count"] < 0.5 * untrained["frechet_distance"],
         f"{gen['frechet_distance_on_baseline_count']:.2f} vs {untrained['frechet_distance']:.2f} "
         f"({untrained['num_samples']} samples each)"),
        ("per-class FD clearly below the class-shuffled pairing (< 1/2)",
         gen["per_class_frechet_distance"] < 0.5 * gen["per_class_frechet_distance_class_shuffled"],
         f"{gen['per_class_frechet_distance']:.2f} vs {gen['per_class_frechet_distance_class_shuffled']:.2f}"),
        # the FDs above live in the classifier's features, which hardly see colour: a sampler that repeats one
        # image per class passes them (docs/quickstart_experiments.md, fifth pass); pixel distances do not
        ("samples of a class vary like held-out images (within-class diversity >= 0.6)",
         gen["within_class_diversity"] >= 0.6,
         f"{gen['within_class_diversity']:.2f} of the held-out images' pairwise distance "
         f"(untrained generator {untrained['within_class_diversity']:.2f})"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, type=Path, help="folder for every stage's outputs")
    parser.add_argument("--fresh", action="store_true",
                        help="delete what an earlier quickstart wrote in --output instead of reusing its stages")
    parser.add_argument("--short", action="store_true", help="a few steps per stage (smoke test, same code path)")
    parser.add_argument("--processes", type=int, default=default_processes(),
                        help="data-parallel processes for the two trainings, the global batch staying the config's "
                             "(default: 2 on a CPU with 2 or more cores, else 1)")
    parser.add_argument("--precision", choices=("auto", "no", "bf16"), default="auto",
                        help="bf16 autocast of both trainings and of sampling (auto: bf16 where it runs in hardware)")
    args = parser.parse_args()
    if args.processes < 1:
        parser.error(f"--processes must be at least 1, got {args.processes}")
    out, short = args.output.resolve(), args.short
    if args.fresh and out.exists():
        remove_own_outputs(out)
    out.mkdir(parents=True, exist_ok=True)
    start, timings = time.time(), {}

    def stage(name: str, output: Path, fn) -> None:
        if stage_done(out, name, output):
            print(f"[{name}] reusing {output} (use --fresh to redo)")
            return
        t0 = time.time()
        fn()
        timings[name] = round(time.time() - t0, 1)
        mark_stage_done(out, name, output, timings[name])

    data_info = out / "data" / "patterns.json"
    stage("data", data_info, lambda: atomic_write_json(data_info, write_synthetic_shards(
        out / "data", size("num_train", short), size("num_val", short), RESOLUTION, seed=0,
        num_classes=NUM_CLASSES)))
    data = json.loads(data_info.read_text())

    tok_config, gen_config = CONFIGS / "tokenizer_tiny.yaml", CONFIGS / "generator_tiny.yaml"
    tokenizer_bin = out / "tokenizer" / WEIGHTS_BIN
    procs = args.processes
    # bf16 autocast halves the conv tokenizer's step on a CPU with native bf16 (its quantizer and losses stay
    # float32) and the tiny generator's from 50 to 35 ms on one thread (its attention stays float32 on a CPU:
    # modeling/cpu_bf16.py); it also halves the sampling time of the evaluation stages
    precision = args.precision if args.precision != "auto" else "bf16" if native_bf16() else "no"
    stage("tokenizer", tokenizer_bin, lambda: run("tokenizer", accelerate("train_tokenizer.py", procs) + [
        f"config={tok_config}", f"training.mixed_precision={precision}"] + per_process_batch(tok_config, procs)
        + stage_overrides(out, "tokenizer", size("tokenizer_steps", short), data)))
    stage("tok_eval", out / "tokenizer_eval" / "metrics.json", lambda: run("tok_eval", [
        sys.executable, str(REPO / "scripts" / "eval_tokenizer.py"), f"config={tok_config}",
        f"experiment.vqgan_checkpoint={tokenizer_bin}", f"experiment.output_dir={out / 'tokenizer_eval'}",
        f"dataset.params.eval_shards_path_or_url={data['val']}"]))
    tokens = out / "tokens"
    stage("tokens", tokens / "tokens_meta.json", lambda: pretokenize(gen_config, tokenizer_bin, tokens, data))
    stage("generator", out / "generator" / WEIGHTS_BIN, lambda: run("generator", accelerate(
        "train_maskbit.py", procs) + [f"config={gen_config}", f"training.mixed_precision={precision}",
                                      f"experiment.vqgan_checkpoint={tokenizer_bin}",
                                      f"dataset.params.pretokenized_shards_path_or_url={tokens}"]
        + per_process_batch(gen_config, procs) + stage_overrides(out, "generator", size("generator_steps", short), data)))
    gen_metrics = out / "generator_eval.json"
    stage("gen_eval", gen_metrics,
          lambda: atomic_write_json(gen_metrics, evaluate_samples(out, data, short, precision)))
    edit_metrics = out / "editing.json"
    stage("editing", edit_metrics,
          lambda: atomic_write_json(edit_metrics, evaluate_editing(out, data, short, precision)))

    config = load_config([f"config={tok_config}"])
    tokens_per_image = token_space(config).seq_len
    metrics = {
        "tokenizer": json.loads((out / "tokenizer_eval" / "metrics.json").read_text()),
        "generator": json.loads(gen_metrics.read_text()),
        "editing": json.loads(edit_metrics.read_text()),
        "mean_colour_psnr": mean_colour_psnr(data),
        "num_val_tokens": size("num_val", short) * tokens_per_image,
        "stage_seconds": timings, "short": short,
        "settings": {"processes": procs, "mixed_precision": precision, "cpu_threads": torch.get_num_threads()},
    }
    atomic_write_bytes(out / "reconstructions.png", (out / "tokenizer_eval" / "reconstructions.png").read_bytes())
    plot_loss_curves({
        "tokenizer": (out / "tokenizer" / "metrics.jsonl", ["train/reconstruction_loss", "train/total_loss",
                                                           "train/discriminator_loss"]),
        "generator": (out / "generator" / "metrics.jsonl", ["train/mlm_loss", "train/masked_token_loss",
                                                           "train/masked_correct_tokens"]),
    }, out / "loss_curves.png")
    floors = check_floors(metrics)
    metrics["floors"] = {name: {"pass": ok, "measured": detail} for name, ok, detail in floors}
    metrics["wall_seconds_this_run"] = round(time.time() - start, 1)
    atomic_write_json(out / "metrics.json", metrics)

    tok, gen = metrics["tokenizer"], metrics["generator"]
    print(f"\n==== quickstart summary ({metrics['wall_seconds_this_run']:.0f} s this run) ====")
    print(f"tokenizer   PSNR {tok['PSNR']:.2f} dB  SSIM {tok['SSIM']:.3f}  codebook usage {tok['CodebookUsage']:.3f}")
    print(f"generator   class consistency {gen['class_consistency']:.3f}  FD {gen['frechet_distance']:.2f} "
          f"(untrained {gen['untrained_generator']['frechet_distance']:.2f})  per-class FD "
          f"{gen['per_class_frechet_distance']:.2f} "
          f"(class-shuffled {gen['per_class_frechet_distance_class_shuffled']:.2f})")
    print("            per-class consistency " + " ".join(
        f"{name} {value:.2f}" for name, value in zip(CLASS_NAMES, gen["per_class_consistency"])))
    edits = metrics["editing"]
    print(f"editing     centre {edits['box'][2]}x{edits['box'][3]} px as a new class: class consistency of the region "
          f"{edits['class_consistency']:.3f} (untrained {edits['untrained_generator_class_consistency']:.3f}; "
          f"classifier on unedited regions {edits['classifier_accuracy_on_unedited_regions']:.3f}), of the whole "
          f"image {edits['whole_image_class_consistency']:.3f}; PSNR outside the box vs the reconstruction "
          f"{edits['unmasked_psnr_vs_reconstruction']:.2f} dB")
    note = " (informational: --short run)" if short else ""
    for name, ok, detail in floors:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}: {detail}{note}")
    for name in ("reconstructions.png", "samples.png", "editing.png", "loss_curves.png", "metrics.json"):
        print(f"wrote {out / name}")
    if not short and not all(ok for _, ok, _ in floors):
        sys.exit(1)


if __name__ == "__main__":
    run_main(main, prog="quickstart.py")
