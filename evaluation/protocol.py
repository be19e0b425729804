"""What an rFID / gFID number was measured against: the protocol records and warnings of the eval scripts.

How a statistics file says what it is: `scripts/compute_fid_stats.py` stores, next to `mu` and `sigma`, the
`source` (data path), `split` (train | eval), `count` (images) and `resolution` it was computed from, and `what`:
`gfid-reference` for a train split (published gFID compares samples with the training distribution, as ADM's
VIRTUAL_imagenet256_labeled.npz) and `rfid-reference` for an eval split. A file without `what` is a gFID
reference when it is an ADM reference batch (arr_0 images and mu_s/sigma_s) and `unknown` otherwise.

    protocol = gfid_protocol(num_samples, num_classes, seeds, sampling, reference)   # -> metrics.json
    for line in gfid_warnings(num_samples, reference): print(line)
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from evaluation.adm import IS_SPLIT_SIZE, SUMMARY, Reference, summary_lines

PAPER_NUM_SAMPLES = 50_000  # gFID in the MaskBit / TiTok / MaskGIT / ADM papers
GFID_REFERENCE, RFID_REFERENCE = "gfid-reference", "rfid-reference"


def reference_kind(reference: Reference) -> str:
    """gfid-reference | rfid-reference | unknown (see the module docstring)."""
    if "what" in reference.info:
        return str(reference.info["what"])
    if reference.images is not None and "spatial" in reference.stats:
        return GFID_REFERENCE
    return "unknown"


def describe_reference(reference: Reference) -> dict:
    return {"path": str(reference.path), "kind": reference_kind(reference), **reference.info,
            "has_images": reference.images is not None, "precomputed_statistics": sorted(reference.stats)}


def gfid_protocol(num_samples: int, num_classes: int, seeds: list[int], sampling: dict,
                  reference: Reference, inception_dtype: str) -> dict:
    per_class = (num_samples // num_classes if num_samples % num_classes == 0
                 else f"{num_samples // num_classes}-{-(-num_samples // num_classes)}")
    return {"metric": "gFID (ADM suite: FID, sFID, IS, precision, recall)", "num_samples": num_samples,
            "samples_per_class": per_class, "num_classes": num_classes, "seeds": list(seeds),
            "sample_seeds": "sample i of a set uses seed + i; labels: one seeded class permutation, repeated",
            "sampling": sampling, "is_split_size": IS_SPLIT_SIZE, "inception_dtype": inception_dtype,
            "reference": describe_reference(reference)}


def gfid_warnings(num_samples: int, reference: Reference) -> list[str]:
    out = []
    if num_samples < PAPER_NUM_SAMPLES:
        out.append(f"WARNING: gFID from {num_samples} samples; published numbers use {PAPER_NUM_SAMPLES} "
                   f"(FID is biased upwards with fewer samples), so this is not comparable to them")
    kind = reference_kind(reference)
    if kind != GFID_REFERENCE:
        out.append(f"WARNING: gFID against '{reference.path}', which is a {kind} statistics file, not a gFID "
                   f"reference (train-split statistics such as ADM's VIRTUAL_imagenet256_labeled.npz)")
    missing = [m for m, ok in (("sFID", "spatial" in reference.stats or reference.images is not None),
                               ("precision/recall", reference.images is not None)) if not ok]
    if missing:
        out.append(f"NOTE: {' and '.join(missing)} left out: '{reference.path}' has no "
                   f"{'images (arr_0)' if reference.images is None else 'mu_s/sigma_s'}")
    return out


def rfid_protocol(eval_data: str, num_images: int, resolution: int, interpolation: str,
                  inception_dtype: str, reference: Optional[Reference] = None) -> dict:
    """rFID as the official tokenizer evaluator: originals vs reconstructions of the same eval images."""
    return {"metric": "rFID (originals vs reconstructions)", "reference_set": eval_data, "num_images": num_images,
            "preprocessing": f"shorter side resized to {resolution} ({interpolation}, PIL), center crop "
                             f"{resolution}x{resolution}, uint8 by truncation",
            "reference_statistics": (describe_reference(reference) if reference is not None else
                                     "computed in this run from the same originals (no statistics file)"),
            "inception_dtype": inception_dtype}


def protocol_line(protocol: dict) -> str:
    """One printed line naming the protocol."""
    if protocol["metric"].startswith("rFID"):
        return (f"protocol: {protocol['metric']} on {protocol['num_images']} images of "
                f"{protocol['reference_set']} ({protocol['preprocessing']}); reference statistics: "
                f"{protocol['reference_statistics']}")
    ref = protocol["reference"]
    return (f"protocol: {protocol['num_samples']} samples ({protocol['samples_per_class']} per class) per seed, "
            f"seeds {protocol['seeds']}, sampling {protocol['sampling']}; reference {ref['path']} "
            f"({ref['kind']}, sha256 {ref['sha256'][:16]}...)")


def mean_and_std(per_seed: dict) -> tuple[dict, dict]:
    """Mean and sample standard deviation (ddof=1; 0 for a single seed) of every metric over the seeds."""
    keys = [k for k in next(iter(per_seed.values())) if k != "NumSamples"]
    values = {k: np.array([float(m[k]) for m in per_seed.values()]) for k in keys}
    return ({k: float(v.mean()) for k, v in values.items()},
            {k: float(v.std(ddof=1)) if len(v) > 1 else 0.0 for k, v in values.items()})


def seed_report_lines(per_seed: dict) -> list[str]:
    """ADM's summary lines of each seed, then (several seeds) "FID: mean +- std (mean +- std over seeds [...])"."""
    if len(per_seed) == 1:
        return ["ADM summary:"] + summary_lines(next(iter(per_seed.values())))
    lines = []
    for seed, metrics in per_seed.items():
        lines += [f"seed {seed}:"] + summary_lines(metrics)
    mean, std = mean_and_std(per_seed)
    seeds = list(per_seed)
    return lines + [f"{label}: {mean[key]!r} +- {std[key]!r} (mean +- std over seeds {seeds})"
                    for label, key in SUMMARY if key in mean]
