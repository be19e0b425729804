"""The ADM evaluation suite (openai/guided-diffusion `evaluations/evaluator.py`) in PyTorch: IS, FID, sFID,
precision and recall of a sample batch against a reference batch, both ADM-layout .npz files.

    reference = read_reference("VIRTUAL_imagenet256_labeled.npz")   # arr_0 images, optional mu/sigma/mu_s/sigma_s
    metrics = evaluate_npz(reference, "samples.npz", inception, cache_dir="feature_cache")
    print("\\n".join(summary_lines(metrics)))   # "Inception Score: ...", "FID: ...", "sFID: ...", ...

As ADM: the features of an .npz are the pool (2048) and spatial (2023, `mixed_6/conv[..., :7]`) features of its
`arr_0` (uint8 NHWC); statistics are `np.mean` / `np.cov` (float64) of all features, unless the reference file
carries precomputed `mu, sigma` (then also `mu_s, sigma_s`), which are used instead; FID and sFID are
`frechet_distance(samples, reference)`; precision/recall use the reference's and the samples' pool features
(`evaluation.manifold.precision_recall`, k=3); the Inception Score is the mean over consecutive splits of 5,000
samples (the last one shorter when N is not a multiple).
Numerical differences from ADM, of the size of float32 rounding: our Inception runs in float64 by default (ADM:
TF float32), and the IS softmax is float64 with log(p + 1e-16) (ADM: float32, log p).

Features are extracted in chunks of `chunk_size` images, chunk k on process k % world_size, and each chunk is
saved under `cache_dir/<sha256 of the .npz>-<fingerprint of the network>/` when done: a killed run resumes, a
second evaluation against the same reference reuses its features, and a changed file or network never reuses a
stale cache.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from evaluation.distributed import barrier
from evaluation.frechet import frechet_distance
from evaluation.inception_score import inception_score
from evaluation.manifold import precision_recall
from utils.errors import MaskbitError

PathLike = Union[str, os.PathLike]
IS_SPLIT_SIZE = 5000  # ADM's compute_inception_score(split_size=5000)
FEATURE_KEYS = ("pool", "spatial", "logits")
SUMMARY = (("Inception Score", "InceptionScore"), ("FID", "FID"), ("sFID", "sFID"), ("Precision", "Precision"),
           ("Recall", "Recall"))


class BatchFileError(MaskbitError, ValueError):
    """An .npz that is not an ADM sample or reference batch."""


def file_sha256(path: PathLike, block: int = 1 << 24) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


class NpzImages:
    """Row ranges of `arr_0` (uint8 (N,H,W,3)) of an .npz, read without loading the whole array."""

    def __init__(self, path: PathLike, key: str = "arr_0"):
        self.path, self.key = Path(path), key
        with self._open() as f:
            shape, fortran, dtype = self._header(f)
        if dtype != np.uint8 or len(shape) != 4 or shape[3] != 3 or fortran:
            raise BatchFileError(f"'{path}': {key} must be uint8 images (N,H,W,3) in C order, got {dtype} {shape}"
                                 f"{' (Fortran order)' if fortran else ''}; write samples as np.savez(path, "
                                 f"arr_0=uint8_nhwc)")
        self.shape = shape

    @contextlib.contextmanager
    def _open(self):
        try:
            zf = zipfile.ZipFile(self.path)
        except (OSError, zipfile.BadZipFile) as err:
            raise BatchFileError(f"'{self.path}' is not a readable .npz ({err})") from None
        with zf:
            if f"{self.key}.npy" not in zf.namelist():
                raise BatchFileError(f"'{self.path}' has no array '{self.key}' (found {zf.namelist()}); ADM "
                                     f"batches keep their images in arr_0")
            with zf.open(f"{self.key}.npy") as f:
                yield f

    @staticmethod
    def _header(f) -> tuple:
        """(shape, fortran_order, dtype); leaves `f` at the first data byte."""
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(f)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(f)
        raise BatchFileError(f"unsupported .npy format version {version}")

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, lo: int, hi: int) -> np.ndarray:
        """Images [lo, hi) as uint8 (n,H,W,3)."""
        row = int(np.prod(self.shape[1:]))
        with self._open() as f:
            self._header(f)
            f.seek(f.tell() + lo * row)
            data = f.read((hi - lo) * row)
        if len(data) != (hi - lo) * row:
            raise BatchFileError(f"'{self.path}' is truncated: images [{lo}, {hi}) are incomplete")
        return np.frombuffer(bytearray(data), dtype=np.uint8).reshape(hi - lo, *self.shape[1:])  # writable


@dataclass
class Reference:
    """An ADM reference batch or a statistics file: precomputed statistics and/or images.

    `stats` maps "pool" / "spatial" to (mu, sigma) (float64); `images` is None for a statistics-only file;
    `info` is what the file says about itself (compute_fid_stats.py writes source/split/count) plus its sha256.
    """

    path: Path
    stats: dict = field(default_factory=dict)
    images: Optional[NpzImages] = None
    info: dict = field(default_factory=dict)


def read_reference(path: PathLike) -> Reference:
    """Read an ADM reference batch (arr_0 + mu/sigma/mu_s/sigma_s) or a mu/sigma statistics file.

    Statistics present in the file are used as they are (ADM's read_statistics); missing ones are computed from
    arr_0 by `evaluate_npz`. A file with neither images nor mu/sigma is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise BatchFileError(f"reference batch '{path}' not found; download ADM's VIRTUAL_imagenet256_labeled.npz "
                             f"or write statistics with scripts/compute_fid_stats.py")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise BatchFileError(f"'{path}' is not a readable .npz ({err})") from None
    with data:
        keys = set(data.files)
        ref = Reference(path, images=NpzImages(path) if "arr_0" in keys else None)
        for name, mu, sigma in (("pool", "mu", "sigma"), ("spatial", "mu_s", "sigma_s")):
            if mu in keys and sigma in keys:
                ref.stats[name] = (data[mu].astype(np.float64), data[sigma].astype(np.float64))
        ref.info = {k: data[k].item() for k in ("source", "split", "count", "resolution", "what") if k in keys}
    if ref.images is None and "pool" not in ref.stats:
        raise BatchFileError(f"'{path}' has neither images (arr_0) nor statistics (mu, sigma): found {sorted(keys)}")
    ref.info["sha256"] = file_sha256(path)
    ref.info.setdefault("count", len(ref.images) if ref.images is not None else None)
    return ref


def network_fingerprint(model: nn.Module) -> str:
    """sha256 of a network's class, parameters and buffers (names, dtypes, values): a feature-cache key."""
    digest = hashlib.sha256(type(model).__name__.encode())
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def cached_features(images: NpzImages, inception: nn.Module, cache_dir: PathLike, batch_size: int = 64,
                    chunk_size: int = 1000, device: Optional[torch.device] = None, rank: int = 0,
                    world_size: int = 1, progress: bool = True, file_hash: Optional[str] = None,
                    fingerprint: Optional[str] = None) -> Optional[dict[str, np.ndarray]]:
    """`inception.features` of every image of `images`, in file order: {"pool", "spatial", "logits"} (N, D).

    Call it on every process: each computes its missing chunks (k % world_size == rank); after a barrier,
    process 0 reads all chunks and returns them, the others return None.
    `inception.features(uint8 (B,3,H,W))` must return the three arrays of FEATURE_KEYS.
    """
    file_hash = file_hash or file_sha256(images.path)
    fingerprint = fingerprint or network_fingerprint(inception)
    root = Path(cache_dir) / f"{file_hash[:32]}-{fingerprint[:16]}"
    root.mkdir(parents=True, exist_ok=True)
    n = len(images)
    num_chunks = -(-n // chunk_size)
    paths = [root / f"chunk{chunk_size}_{k:06d}.npz" for k in range(num_chunks)]
    todo = [k for k in range(rank, num_chunks, world_size) if not paths[k].is_file()]
    bar = tqdm(total=sum(min(chunk_size, n - k * chunk_size) for k in todo), unit="img", disable=not progress,
               desc=f"Inception features of {images.path.name}")
    for k in todo:
        lo, hi = k * chunk_size, min((k + 1) * chunk_size, n)
        parts = {key: [] for key in FEATURE_KEYS}
        chunk = torch.from_numpy(images.read(lo, hi))  # one read per chunk: a compressed .npz re-inflates per seek
        for start in range(0, hi - lo, batch_size):
            batch = chunk[start:start + batch_size].permute(0, 3, 1, 2)
            feats = inception.features(batch.to(device))
            for key in FEATURE_KEYS:
                parts[key].append(feats[key].cpu().numpy())
            bar.update(batch.shape[0])
        tmp = paths[k].with_name(paths[k].name + f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **{key: np.concatenate(v) for key, v in parts.items()})
        os.replace(tmp, paths[k])  # a chunk exists only once complete
    bar.close()
    if rank == 0 and not (root / "source.json").is_file():
        (root / "source.json").write_text(json.dumps({"file": str(images.path), "sha256": file_hash,
                                                      "network": fingerprint, "num_images": n}, indent=1))
    barrier()
    if rank != 0:
        return None
    chunks = [np.load(p, allow_pickle=False) for p in paths]
    return {key: np.concatenate([c[key] for c in chunks]) for key in FEATURE_KEYS}


def gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ADM's compute_statistics in float64: (np.mean, np.cov(rowvar=False))."""
    features = np.asarray(features, dtype=np.float64)
    return features.mean(0), np.cov(features, rowvar=False)


def adm_inception_score(logits: Union[np.ndarray, torch.Tensor], split_size: int = IS_SPLIT_SIZE) -> float:
    """Mean IS over consecutive splits of `split_size` samples (ADM: 10 splits of 5,000 for 50k samples)."""
    logits = torch.as_tensor(logits, dtype=torch.float64)
    scores = [inception_score(logits[i:i + split_size]) for i in range(0, logits.shape[0], split_size)]
    return float(np.mean(scores))


def score_features(samples: dict[str, np.ndarray], reference_stats: dict,
                   reference_pool: Optional[np.ndarray] = None, device: Optional[torch.device] = None) -> dict:
    """ADM's metrics from sample features and reference statistics (+ reference pool features for P/R).

    Returns {"InceptionScore", "FID"[, "sFID"][, "Precision", "Recall"]}: sFID needs reference "spatial"
    statistics, precision/recall the reference's pool features; absent inputs leave those metrics out.
    """
    out = {"InceptionScore": adm_inception_score(samples["logits"])}
    out["FID"] = frechet_distance(*gaussian(samples["pool"]), *reference_stats["pool"])  # samples first, as ADM
    if "spatial" in reference_stats:
        out["sFID"] = frechet_distance(*gaussian(samples["spatial"]), *reference_stats["spatial"])
    if reference_pool is not None:
        real = torch.as_tensor(reference_pool, dtype=torch.float32, device=device)
        out["Precision"], out["Recall"] = precision_recall(real, torch.as_tensor(samples["pool"]))
    return out


def evaluate_npz(reference: Reference, sample_path: PathLike, inception: nn.Module, cache_dir: PathLike,
                 batch_size: int = 64, device: Optional[torch.device] = None, rank: int = 0, world_size: int = 1,
                 progress: bool = True, log=print) -> Optional[dict]:
    """ADM's evaluation of the sample batch `sample_path` against `reference`. Call it on every process (they
    share the feature extraction); process 0 returns the metric dict, the others None."""
    samples = NpzImages(sample_path)
    fingerprint = network_fingerprint(inception)
    opts = dict(inception=inception, cache_dir=cache_dir, batch_size=batch_size, device=device, rank=rank,
                world_size=world_size, progress=progress, fingerprint=fingerprint)
    stats, reference_pool = dict(reference.stats), None
    log = log if rank == 0 else (lambda *a: None)
    if reference.images is not None:
        log("computing reference batch activations...")
        ref_feats = cached_features(reference.images, file_hash=reference.info["sha256"], **opts)
        log("computing/reading reference batch statistics...")
        if rank == 0:
            reference_pool = ref_feats["pool"]
            for name in ("pool", "spatial"):
                stats.setdefault(name, gaussian(ref_feats[name]))
    log("computing sample batch activations...")
    sample_feats = cached_features(samples, **opts)
    if rank != 0:
        return None
    log("computing/reading sample batch statistics...")
    log("Computing evaluations...")
    metrics = score_features(sample_feats, stats, reference_pool, device)
    metrics["NumSamples"] = len(samples)
    return metrics


def summary_lines(metrics: dict) -> list[str]:
    """ADM's printed summary ("Inception Score: 215.83...", "FID: ...", ...) for the metrics present."""
    return [f"{label}: {float(metrics[key])!r}" for label, key in SUMMARY if key in metrics]
