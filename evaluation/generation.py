"""Resumable generation of evaluation samples that does not depend on the number of processes.

Sample i has class `labels[i]` and sampling seed `seed + i`; samples are produced in chunks of `chunk_size`
consecutive indices, chunk k by process k % world_size, each saved as its own .npy file. So the set of samples
is the same for any process count, and a killed run continues from the chunks already on disk. The chunks are
finally streamed into one ADM-compatible .npz (arr_0: uint8 (N,H,W,3) in label order, arr_1: labels).
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch
from tqdm import tqdm

from evaluation.inception import to_uint8
from utils.atomic import atomic_path, atomic_write_text
from utils.errors import MaskbitError

SampleFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (labels (B,), seeds (B,)) -> images in [0,1]


def class_labels(num_samples: int, num_classes: int, seed: int) -> torch.Tensor:
    """One seeded permutation of the classes, repeated (as the official script): (num_samples,) int64.

    Every class appears num_samples / num_classes times when that divides; otherwise the last partial
    repetition covers the first classes of the permutation.
    """
    perm = torch.randperm(num_classes, generator=torch.Generator().manual_seed(seed))
    return perm.repeat(-(-num_samples // num_classes))[:num_samples]


class SampleCacheMismatchError(MaskbitError, ValueError):
    """A sample folder holds samples made with other weights or settings."""


class SampleChunks:
    """A folder of uint8 (n,H,W,3) chunks; chunk k holds samples [k*chunk_size, (k+1)*chunk_size) ∩ [0, N).

    `run_info` (seed, checkpoints, sampling settings...) is kept in manifest.json; reopening the folder with
    different settings is an error rather than a silent mix of two runs.
    """

    def __init__(self, root: Union[str, os.PathLike], num_samples: int, chunk_size: int, run_info: dict):
        self.root, self.num_samples, self.chunk_size = Path(root), num_samples, chunk_size
        self.num_chunks = -(-num_samples // chunk_size)
        self.root.mkdir(parents=True, exist_ok=True)
        manifest = {"num_samples": num_samples, "chunk_size": chunk_size, **run_info}
        path = self.root / "manifest.json"
        if path.is_file():
            old = json.loads(path.read_text())
            changed = {k: (old.get(k), v) for k, v in manifest.items() if old.get(k) != v}
            if changed:
                raise SampleCacheMismatchError(f"'{self.root}' holds samples of another run ({changed}, as (on disk, now)); "
                                 f"use another output directory or delete it")
        else:
            atomic_write_text(path, json.dumps(manifest, indent=1))

    def chunk_range(self, k: int) -> tuple[int, int]:
        return k * self.chunk_size, min((k + 1) * self.chunk_size, self.num_samples)

    def path(self, k: int) -> Path:
        return self.root / f"chunk_{k:06d}.npy"

    def done(self, k: int) -> bool:
        return self.path(k).is_file()

    def chunks_for(self, rank: int, world_size: int) -> list[int]:
        return list(range(rank, self.num_chunks, world_size))

    def missing(self) -> list[int]:
        return [k for k in range(self.num_chunks) if not self.done(k)]

    def save(self, k: int, images: np.ndarray) -> None:
        lo, hi = self.chunk_range(k)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] != hi - lo:
            raise ValueError(f"chunk {k} must be uint8 ({hi - lo},H,W,3), got {images.dtype} {images.shape}")
        with atomic_path(self.path(k)) as tmp, open(tmp, "wb") as f:  # a chunk exists only once it is complete
            np.save(f, images)

    def load(self, k: int) -> np.ndarray:
        return np.load(self.path(k), allow_pickle=False)

    def write_npz(self, path: Union[str, os.PathLike], labels: torch.Tensor) -> Path:
        """Stream all chunks into an ADM-style .npz without holding the samples in memory."""
        if self.missing():
            raise RuntimeError(f"cannot write {path}: chunks {self.missing()[:5]}... are not generated yet")
        path = Path(path)
        first = self.load(0)
        header = {"descr": "|u1", "fortran_order": False, "shape": (self.num_samples, *first.shape[1:])}
        with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            with zf.open("arr_0.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array_header_1_0(f, header)
                for k in range(self.num_chunks):
                    f.write(np.ascontiguousarray(self.load(k)).tobytes())
            with zf.open("arr_1.npy", "w") as f:
                np.lib.format.write_array(f, labels.cpu().numpy().astype(np.int64))
        return path


@torch.no_grad()
def generate_chunks(sample_fn: SampleFn, chunks: SampleChunks, labels: torch.Tensor, seed: int,
                    rank: int = 0, world_size: int = 1, progress: bool = True,
                    images_to_uint8: Callable[[torch.Tensor], torch.Tensor] = to_uint8) -> int:
    """Generate this process's missing chunks; returns the number of samples generated now. `images_to_uint8`:
    (B,3,H,W) images -> uint8 (B,3,H',W'), e.g. an evaluation protocol (`evaluation.protocols`)."""
    todo = [k for k in chunks.chunks_for(rank, world_size) if not chunks.done(k)]
    total = sum(hi - lo for lo, hi in map(chunks.chunk_range, todo))
    bar = tqdm(total=total, unit="img", desc=f"generating (rank {rank})", disable=not progress)
    for k in todo:
        lo, hi = chunks.chunk_range(k)
        images = sample_fn(labels[lo:hi], torch.arange(lo, hi, dtype=torch.int64) + seed)
        chunks.save(k, images_to_uint8(images).permute(0, 2, 3, 1).cpu().numpy())
        bar.update(hi - lo)
    bar.close()
    return total


def iterate_chunk_batches(chunks: SampleChunks, rank: int, world_size: int, batch_size: int,
                          device: Optional[torch.device] = None):
    """Yield (uint8 images (B,3,H,W), global sample ids (B,)) over this process's chunks."""
    for k in chunks.chunks_for(rank, world_size):
        lo, _ = chunks.chunk_range(k)
        arr = torch.from_numpy(chunks.load(k))
        for start in range(0, arr.shape[0], batch_size):
            batch = arr[start:start + batch_size].permute(0, 3, 1, 2).to(device)
            yield batch, torch.arange(lo + start, lo + start + batch.shape[0])
