"""ADM-suite evaluation of a sample batch in PyTorch: the command line of guided-diffusion's evaluator.py.

    python scripts/evaluate_samples.py VIRTUAL_imagenet256_labeled.npz samples_50000x256x256x3.npz
    accelerate launch --num_processes 8 scripts/evaluate_samples.py REFERENCE.npz SAMPLES.npz

Prints ADM's summary lines (Inception Score, FID, sFID, Precision, Recall), and writes them with the reference's
sha256 to --output (default: SAMPLES.metrics.json). REFERENCE.npz: an ADM reference batch (arr_0 uint8 NHWC
images, with or without precomputed mu/sigma/mu_s/sigma_s) or a mu/sigma statistics file (FID and IS only);
SAMPLES.npz: any batch with arr_0. Inception features are cached per file content and network under
--cache-dir, so a killed run resumes and the reference is processed once. The sample batch's images/s (overall and
per process) is printed at the end and recorded in the JSON ("throughput").
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from accelerate import PartialState
from accelerate.utils import parse_flag_from_env

from evaluation.adm import evaluate_npz, read_reference, summary_lines
from evaluation.builders import DTYPES
from evaluation.inception import build_inception
from training.throughput import job_throughput, throughput_line
from utils.errors import run_main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ref_batch", help="reference batch .npz (ADM layout) or mu/sigma statistics .npz")
    parser.add_argument("sample_batch", help="sample batch .npz with arr_0: uint8 (N,H,W,3)")
    parser.add_argument("--output", default=None, help="metrics JSON (default: SAMPLE_BATCH.metrics.json)")
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "maskbit" / "inception_features"),
                        help="Inception feature cache (keyed by the .npz content hash and the network)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per Inception batch (ADM: 64)")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float64",
                        help="Inception precision (float64: the MaskBit evaluator; float32: faster, ~1e-6 apart)")
    parser.add_argument("--inception-weights", default="", help="pt_inception-2015-12-05-6726825d.pth path")
    parser.add_argument("--random-init", action="store_true", help="tests only: random Inception weights")
    return parser


def build_feature_network(args, device: torch.device):
    return build_inception(args.inception_weights, random_init=args.random_init, dtype=DTYPES[args.dtype],
                           device=device)


def main(argv=None) -> dict:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))  # CPU processes: gloo, as pretokenize.py
    reference = read_reference(args.ref_batch)  # fails before any work on a bad file
    inception = build_feature_network(args, state.device)
    log = print if state.is_main_process else (lambda *a: None)
    start = time.perf_counter()
    metrics = evaluate_npz(reference, args.sample_batch, inception, args.cache_dir, args.batch_size, state.device,
                           state.process_index, state.num_processes, progress=state.is_main_process, log=log)
    if state.is_main_process:
        throughput = job_throughput(metrics["NumSamples"], time.perf_counter() - start, state.num_processes)
        for line in summary_lines(metrics):
            print(line)
        output = Path(args.output or f"{args.sample_batch}.metrics.json")
        record = {**metrics, "reference": {"path": str(reference.path), **reference.info},
                  "sample_batch": str(args.sample_batch), "inception_dtype": args.dtype, "throughput": throughput}
        output.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {output}")
        print(throughput_line(throughput, "Inception features of the sample batch (and of the reference unless "
                                          "cached) and the scores"))
    state.wait_for_everyone()
    return metrics or {}


if __name__ == "__main__":
    run_main(main, prog="evaluate_samples.py")
