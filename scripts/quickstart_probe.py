"""Class consistency of a quickstart-style generator under other sampler settings, judged as the quickstart does.

    python scripts/quickstart_probe.py --quickstart runs/quickstart --generator runs/quickstart/generator \
        --variant "" --variant "guidance_scale=5.0,softmax_temperature=0.5" --per-class 50

Uses the quickstart's classifier (`<quickstart>/classifier.pt`), its tokenizer and its sample seeds (sample k of
every class with seed k; `--seed S` uses seeds S + k instead, to check that a choice made on the quickstart's
seeds holds on others). `--generator` is any run folder of `scripts/train_maskbit.py` on the quickstart's tokens
(its exported `pytorch_model.bin`; `--step N` the EMA weights of its checkpoint at step N, for a learning curve;
`--raw` a checkpoint's non-EMA weights, the last one's unless `--step`); `--set` overrides the generator config
(e.g. a run trained with `model.mlm_model.hidden_dim=192`). Each `--variant` is a comma-separated list of
`SamplingConfig` fields (`modeling.sampling`), "" for the config's own; one JSON line per variant, with the
within-class diversity of the samples (`evaluation.synthetic_generation`: a sampler that lifts class consistency by
repeating one image per class shows there).
This is how the sampler and schedule figures of docs/quickstart_experiments.md were measured.

`--reconstructions` judges the tokenizer instead: the classifier's accuracy on its reconstructions of the held-out
images, the most class consistency a generator on its tokens can reach (`--tokenizer` names other weights than the
quickstart's, e.g. a tokenizer trained with other settings; it then needs `--generator` runs on its own tokens).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Optional

import torch

from data.loaders import load_eval_images
from evaluation.synthetic_classifier import SyntheticClassifier, predict
from evaluation.synthetic_generation import generate_per_class, within_class_diversity
from modeling import build_generator, build_tokenizer, load_pretrained, sampling_config
from modeling.editing import reconstruct
from training.checkpoint import list_checkpoints
from utils.config import load_config
from utils.errors import MaskbitError, run_main
from utils.run_layout import MODEL_SUBFOLDER, TRAINING_SUBFOLDERS, WEIGHTS_BIN

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "quickstart" / "generator_tiny.yaml"
TOKENIZER_CONFIG = CONFIG.with_name("tokenizer_tiny.yaml")


def parse_variant(text: str, settings) -> dict:
    """"guidance_scale=5.0,num_steps=64" -> {"guidance_scale": 5.0, "num_steps": 64}, typed as the fields."""
    types = {f.name: type(getattr(settings, f.name)) for f in dataclasses.fields(settings)
             if getattr(settings, f.name) is not None}  # e.g. autocast_dtype: not a command-line value
    changes = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        if name not in types:
            raise MaskbitError(f"unknown sampler setting '{name}' in --variant '{text}'; known: {sorted(types)}")
        changes[name] = value.lower() == "true" if types[name] is bool else types[name](value)
    return changes


def generator_weights(run: Path, raw: bool, step: Optional[int] = None) -> Path:
    """The run's exported weights; with `step`, those of its checkpoint at that step (EMA where the run kept one);
    `raw`: the non-EMA weights of that checkpoint (or of the last one)."""
    if not raw and step is None:
        return run / WEIGHTS_BIN
    checkpoints = dict(list_checkpoints(run))
    if not checkpoints:
        raise MaskbitError(f"--raw / --step need a checkpoint-* folder in {run}; none found")
    if step is not None and step not in checkpoints:
        raise MaskbitError(f"--step {step}: {run} has no checkpoint of that step; it has {sorted(checkpoints)}")
    checkpoint = checkpoints[max(checkpoints) if step is None else step]
    if raw:
        return checkpoint / MODEL_SUBFOLDER / WEIGHTS_BIN
    files = [checkpoint / sub / WEIGHTS_BIN for sub in TRAINING_SUBFOLDERS]  # EMA first; a complete checkpoint
    return next(path for path in files if path.is_file())                # always has the non-EMA weights


def per_class_accuracy(classifier, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, list[float]]:
    correct = (predict(classifier, images)[0] == labels).float()
    return round(float(correct.mean()), 3), [round(float(correct[labels == c].mean()), 2) for c in range(10)]


def heldout_images(quickstart: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The quickstart's held-out images (N, 3, 32, 32) in [0, 1] and labels (N,), read with the eval transform of
    the tokenizer's config, as the quickstart reads them."""
    pattern = json.loads((quickstart / "data" / "patterns.json").read_text())["val"]
    config = load_config([f"config={TOKENIZER_CONFIG}", f"dataset.params.eval_shards_path_or_url={pattern}",
                          "dataset.params.num_workers_per_gpu=0"])
    return load_eval_images(config.dataset)


def judge_reconstructions(classifier, tokenizer, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """The classifier on the tokenizer's reconstructions of the held-out `images` (and on the originals)."""
    with torch.no_grad():
        rebuilt = torch.cat([reconstruct(tokenizer, chunk)[1].clamp(0, 1) for chunk in images.split(250)])
    accuracy, per_class = per_class_accuracy(classifier, rebuilt, labels)
    return {"reconstructions": len(images), "classifier_accuracy": accuracy, "per_class": per_class,
            "classifier_accuracy_on_originals": per_class_accuracy(classifier, images, labels)[0]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quickstart", required=True, type=Path, help="output folder of scripts/quickstart.py")
    parser.add_argument("--generator", type=Path, help="run folder of scripts/train_maskbit.py")
    parser.add_argument("--variant", action="append", default=None, help='sampler changes, e.g. "num_steps=64"')
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0, help="sample k of every class uses seed SEED + k (the "
                        "quickstart's: 0)")
    parser.add_argument("--step", type=int, help="the weights of the run's checkpoint at this step (EMA if kept)")
    parser.add_argument("--raw", action="store_true", help="a checkpoint's non-EMA weights (the last one's, or "
                        "--step's)")
    parser.add_argument("--set", nargs="*", default=[], help="generator config overrides (dotted)")
    parser.add_argument("--tokenizer", type=Path, help="tokenizer weights (default: the quickstart's)")
    parser.add_argument("--reconstructions", action="store_true",
                        help="judge the tokenizer's reconstructions of the held-out images")
    args = parser.parse_args(argv)
    if args.generator is None and not args.reconstructions:
        parser.error("give --generator RUN (samples) and/or --reconstructions (the tokenizer)")
    config = load_config([f"config={CONFIG}", *args.set])
    classifier = SyntheticClassifier(10)
    classifier.load_state_dict(torch.load(args.quickstart / "classifier.pt", weights_only=True))
    classifier.eval()
    tokenizer = load_pretrained(build_tokenizer(config), args.tokenizer or args.quickstart / "tokenizer" / WEIGHTS_BIN)
    val_images, val_labels = heldout_images(args.quickstart)
    if args.reconstructions:
        print(json.dumps({"tokenizer": str(args.tokenizer or args.quickstart / "tokenizer"),
                          **judge_reconstructions(classifier, tokenizer, val_images, val_labels)}), flush=True)
    if args.generator is None:
        return
    generator = load_pretrained(build_generator(config), generator_weights(args.generator, args.raw, args.step))
    for text in args.variant or [""]:
        settings = sampling_config(config)
        changes = parse_variant(text, settings)
        start = time.time()
        images, labels = generate_per_class(generator, tokenizer, 10, args.per_class, settings.replace(**changes),
                                            seed=args.seed)
        seconds = round(time.time() - start, 1)
        consistency, per_class = per_class_accuracy(classifier, images, labels)
        diversity = (round(sum(within_class_diversity(images, labels, val_images, val_labels, 10)) / 10, 3)
                     if args.per_class >= 2 else None)  # pairs of samples needed
        print(json.dumps({"generator": str(args.generator), "step": args.step, "variant": changes, "seed": args.seed,
                          "class_consistency": consistency, "per_class": per_class,
                          "within_class_diversity": diversity, "seconds": seconds}), flush=True)


if __name__ == "__main__":
    run_main(main, prog="quickstart_probe.py")
