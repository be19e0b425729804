"""Evaluate a tokenizer's reconstructions on the eval set (rFID, IS, PSNR, SSIM, LPIPS, codebook usage).

    python scripts/eval_tokenizer.py config=configs/tokenizer/maskbit_tokenizer_12bit.yaml \
        experiment.vqgan_checkpoint=PATH [dataset.params.eval_shards_path_or_url=...] [experiment.output_dir=DIR]
    accelerate launch --num_processes 8 scripts/eval_tokenizer.py config=... experiment.vqgan_checkpoint=...

Every eval image is read once over all processes and workers; statistics are summed across processes, so the
metrics do not depend on the process count. rFID compares the reconstructions with their own originals (as the
official evaluator: no statistics file is involved); the protocol (eval set, image count, resize/crop, Inception
precision) is printed and recorded in metrics.json ("protocol"). Writes metrics.json and reconstructions.png
(originals on top, reconstructions below) to experiment.output_dir, else $WORKSPACE/outputs/<experiment.name>/eval.
Prints images/s (overall and per process) at the end, also recorded in metrics.json ("throughput").
`evaluation.compute_inception=false` / `evaluation.compute_lpips=false` leave those metrics out.
"""
from __future__ import annotations

import pprint
import time

import torch
import torchvision

from data.loaders import build_eval_dataloader
from evaluation import evaluate_tokenizer
from evaluation.builders import tokenizer_evaluator_from_config
from evaluation.protocol import protocol_line, rfid_protocol
from modeling import build_tokenizer, load_pretrained
from training.run_setup import process_state, set_backend_flags
from training.throughput import job_throughput, throughput_line
from utils.atomic import atomic_write_json
from utils.config import ConfigError, parse_args_or_exit
from utils.errors import run_main
from utils.run_layout import resolve_output_dir


def main(argv=None) -> dict:
    config = parse_args_or_exit(argv, prog="eval_tokenizer.py")
    if not config.experiment.vqgan_checkpoint:
        raise ConfigError("set experiment.vqgan_checkpoint=PATH (tokenizer weights to evaluate)")
    state = process_state()
    set_backend_flags(config.training.enable_tf32)
    device = state.device

    model = load_pretrained(build_tokenizer(config), config.experiment.vqgan_checkpoint).to(device).eval()
    evaluator = tokenizer_evaluator_from_config(config, model, device)
    loader = build_eval_dataloader(config.dataset, config.training.per_gpu_batch_size, state.process_index,
                                   state.num_processes)
    if state.is_main_process:
        print(f"Evaluating tokenizer model at {config.dataset.preprocessing.resolution} resolution.")
    start = time.perf_counter()
    metrics, examples = evaluate_tokenizer(model, loader, evaluator, device, progress=state.is_main_process)
    seconds = time.perf_counter() - start
    skipped = torch.tensor([loader.dataset.num_skipped], device=device)
    if state.num_processes > 1:
        torch.distributed.all_reduce(skipped)
    metrics["SkippedSamples"] = int(skipped.item())  # unreadable eval images, all processes

    if state.is_main_process:
        print("EVALUATION")
        pprint.pprint(metrics)
        preprocessing = config.dataset.preprocessing
        protocol = rfid_protocol(str(config.dataset.params.eval_shards_path_or_url), int(evaluator.count),
                                 preprocessing.resolution, preprocessing.interpolation,
                                 config.evaluation.inception_dtype if config.evaluation.compute_inception else "none")
        print(protocol_line(protocol))
        out_dir = resolve_output_dir(config, "eval")
        out_dir.mkdir(parents=True, exist_ok=True)
        throughput = job_throughput(int(evaluator.count), seconds, state.num_processes)
        atomic_write_json(out_dir / "metrics.json", {**metrics, "protocol": protocol, "throughput": throughput})
        if examples is not None:
            originals, reconstructions = examples
            grid = torch.cat([originals, reconstructions])
            torchvision.utils.save_image(grid, out_dir / "reconstructions.png", nrow=len(originals), padding=2)
        print(f"wrote {out_dir / 'metrics.json'} ({int(evaluator.count)} images)")
        print(throughput_line(throughput, "loading, reconstruction and metrics"))
    state.wait_for_everyone()
    return metrics


if __name__ == "__main__":
    run_main(main, prog="eval_tokenizer.py")
