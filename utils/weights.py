"""Finding pretrained weight files (Inception, ResNet-50, VGG16, official checkpoints) without surprises.

Lookup order: an explicit local path from the config, then the torch hub checkpoint cache
(`$TORCH_HOME/hub/checkpoints`, where torchvision's weight enums also download to), then a download when
`allow_download` is set and the network answers. When nothing works, `MissingWeightsError` names the file,
where to get it and where to put it, before any training or evaluation starts.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch

from utils.errors import MaskbitError


class MissingWeightsError(MaskbitError, FileNotFoundError):
    """Pretrained weights are needed but cannot be found locally or downloaded."""


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_weights(filename: str, url: Optional[str] = None, local_path: str = "", what: str = "weights",
                    config_key: Optional[str] = None, allow_download: bool = True) -> Path:
    """Return a local path for `filename`, downloading it into the hub cache if allowed and possible."""
    if local_path:
        path = Path(local_path).expanduser()
        if path.is_file():
            return path
        raise MissingWeightsError(f"{what}: '{path}' does not exist. Download {filename}"
                                  f"{f' from {url}' if url else ''} and point {config_key or 'the config'} at it.")
    cached = hub_checkpoint_dir() / filename
    if cached.is_file():
        return cached
    reason = ""
    if allow_download and url and os.environ.get("MASKBIT_OFFLINE", "0") != "1":
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(cached), progress=True)
            return cached
        except Exception as err:  # no network, proxy, HTTP error: all end in the same advice
            reason = f" (download failed: {type(err).__name__}: {err})"
    where = f"set {config_key}=/path/to/{filename}, or " if config_key else ""
    raise MissingWeightsError(
        f"{what} not found{reason}. Download {filename}{f' from {url}' if url else ''} and either "
        f"{where}put it at {cached}.")


def load_state_dict_file(path: os.PathLike) -> dict:
    """Load a state dict from .safetensors or a torch file, never unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint file not found: '{path}'")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"Could not load '{path}' as a weights-only torch checkpoint ({type(err).__name__}: "
                         f"{err}). It may be corrupt, truncated, or contain pickled Python objects, which are "
                         f"refused for safety; re-save it as a plain state dict or .safetensors.") from None
