"""Files that exist only when complete: write to a temporary name, fsync, rename over the final name.

    with atomic_path("out/weights.bin") as tmp:      # any writer that takes a path
        torch.save(state, tmp)
    atomic_write_text("out/metrics.json", json.dumps(metrics))
    atomic_write_json("out/metrics.json", metrics)

A process killed at any point leaves either the old file, or the new complete one, never a truncated file under the
final name (the rename is atomic on POSIX file systems and the data is on disk before it). Temporary files are
named `.<name>.<pid>.tmp` in the same folder, so a reader that lists `*.bin` never sees them.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, os.PathLike]


def fsync_path(path: PathLike) -> None:
    """Flush a file's (or a folder's entries') data to disk."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if os.path.isdir(path) else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders; the rename is still atomic there
        pass
    finally:
        os.close(fd)


def temporary_name(path: PathLike) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success fsync it and rename it to `path` (also fsyncing the folder).
    On an exception the temporary file is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_path(path.parent)


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: PathLike, obj, indent: int = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def atomic_torch_save(obj, path: PathLike) -> Path:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def atomic_save_safetensors(tensors: dict, path: PathLike) -> Path:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
    return Path(path)
