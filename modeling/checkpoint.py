"""Load weights into a model from any of the places they come in, strictly and without unpickling code.

    load_pretrained(model, "maskbit_tokenizer_12bit.bin")           # plain state dict (.bin / .pt / .pth)
    load_pretrained(model, "model.safetensors")
    load_pretrained(model, "runs/exp")                              # holds pytorch_model.bin or model.safetensors
    load_pretrained(model, "runs/exp/checkpoint-20000")             # ema_model/ if present, else unwrapped_model/
    load_pretrained(model, "last.ckpt")                             # Taming / Lightning: its state_dict, no loss.*
    load_pretrained(model, "hf://owner/repo/maskbit_tokenizer_12bit.bin")
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional, Union

import torch
from torch import nn

from modeling.checkpoint_inspect import describe_checkpoint
from utils.run_layout import TRAINING_SUBFOLDERS, WEIGHT_FILES
from utils.errors import MaskbitError
from utils.weights import MissingWeightsError, load_state_dict_file

# Lightning checkpoints pickle callback and hyper-parameter objects next to the weights; these are swapped for inert
# stand-ins (inert objects that run no code) so that the file still loads with weights_only=True. Others are refused.
IGNORABLE_GLOBALS = ("pytorch_lightning.", "lightning.", "lightning_fabric.", "omegaconf.", "argparse.", "numpy.")


class CheckpointMismatchError(MaskbitError, ValueError):
    """The checkpoint's keys or shapes do not match the model."""


class CheckpointNotFoundError(MaskbitError, FileNotFoundError):
    """A checkpoint file or folder named by the user does not exist or is incomplete."""


def load_pretrained(model: nn.Module, path_or_id: Union[str, os.PathLike],
                    rename_keys: Optional[Mapping[str, str]] = None) -> nn.Module:
    """Load weights strictly into `model` and return it in eval mode.

    `rename_keys` maps checkpoint key prefixes to model key prefixes, e.g. {"token_emb": "input_proj"}; it
    defaults to the model's own `checkpoint_key_renames` (names that differ in the released checkpoints).
    """
    path = resolve_checkpoint(path_or_id)
    state_dict = read_state_dict(path)
    renames = getattr(model, "checkpoint_key_renames", {}) if rename_keys is None else rename_keys
    state_dict = _strip_wrapper_prefixes(rename_prefixes(state_dict, renames), model)
    check_compatible(model, state_dict, source=str(path))
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def resolve_checkpoint(path_or_id: Union[str, os.PathLike]) -> Path:
    """The weights file named by a path, a folder, an accelerate checkpoint folder, or an hf:// id."""
    if str(path_or_id).startswith("hf://"):
        return _download_from_hub(str(path_or_id)[len("hf://"):])
    path = Path(path_or_id).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise CheckpointNotFoundError(f"Checkpoint '{path}' does not exist. Pass a weights file (.bin, .pt, "
                                      f".safetensors, .ckpt), a folder holding one, or hf://<owner>/<repo>[/<file>].")
    candidates = [path / sub / name for sub in TRAINING_SUBFOLDERS for name in WEIGHT_FILES]
    candidates += [path / name for name in WEIGHT_FILES]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise CheckpointNotFoundError(f"No weights found in folder '{path}'. Looked for: "
                            f"{', '.join(str(c.relative_to(path)) for c in candidates)}.")


def read_state_dict(path: Path) -> dict:
    """A flat {name: tensor} dict from a weights file; Lightning `.ckpt` files give their `state_dict`."""
    checkpoint = _load_lightning_checkpoint(path) if path.suffix == ".ckpt" else load_state_dict_file(path)
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("state_dict"), Mapping):
        # Lightning layout (Taming VQGAN): the loss module (discriminator, LPIPS) is not part of the model
        checkpoint = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("loss.")}
    if not isinstance(checkpoint, Mapping) or not all(torch.is_tensor(v) for v in checkpoint.values()):
        raise ValueError(f"'{path}' is not a state dict (a mapping of names to tensors).")
    return dict(checkpoint)


def rename_prefixes(state_dict: Mapping[str, torch.Tensor], rename_keys: Mapping[str, str]) -> dict:
    """Rename by first matching key prefix: {"token_emb": "input_proj"} maps token_emb.weight to input_proj.weight."""
    renamed = {}
    for key, value in state_dict.items():
        for old, new in rename_keys.items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        renamed[key] = value
    return renamed


def check_compatible(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Raise `CheckpointMismatchError` listing missing, unexpected and mis-shaped keys, with a guess of the config."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mis_shaped = [f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
                  for k, v in expected.items() if k in state_dict and state_dict[k].shape != v.shape]
    if not (missing or unexpected or mis_shaped):
        return
    lines = [f"Checkpoint '{source}' does not fit {type(model).__name__}:"]
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mis_shaped)):
        if items:
            shown = ", ".join(items[:8]) + (f", ... ({len(items) - 8} more)" if len(items) > 8 else "")
            lines.append(f"  {title} ({len(items)}): {shown}")
    lines.append(f"The checkpoint looks like {describe_checkpoint(state_dict)}.")
    raise CheckpointMismatchError("\n".join(lines))


def _strip_wrapper_prefixes(state_dict: dict, model: nn.Module) -> dict:
    """Drop a `module.` (DDP) or `_orig_mod.` (torch.compile) prefix carried by every key."""
    model_keys = model.state_dict().keys()
    for prefix in ("module.", "_orig_mod."):
        if state_dict and all(k.startswith(prefix) for k in state_dict) and not any(
                k.startswith(prefix) for k in model_keys):
            state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}
    return state_dict


class _Ignored:
    """Inert stand-in for a pickled non-tensor object of a Lightning checkpoint; never runs any code."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


def _load_lightning_checkpoint(path: Path):
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # not a zip-format checkpoint: let the plain loader report it
        return load_state_dict_file(path)
    refused = [name for name in unsafe if not name.startswith(IGNORABLE_GLOBALS)]
    if refused:
        raise ValueError(f"'{path}' pickles objects other than tensors ({', '.join(refused[:5])}); it is refused "
                         f"for safety. Re-save its state_dict as a plain .bin or .safetensors file.")
    stand_ins = [(type(name.rsplit(".", 1)[-1], (_Ignored,), {}), name) for name in unsafe]
    with torch.serialization.safe_globals(stand_ins):
        return torch.load(path, map_location="cpu", weights_only=True)


def _download_from_hub(spec: str) -> Path:
    """`owner/repo[/file]` -> a local file via huggingface_hub (cache first; download unless offline)."""
    parts = spec.strip("/").split("/")
    if len(parts) < 2:
        raise ValueError(f"hf:// ids look like hf://<owner>/<repo>[/<file>], got 'hf://{spec}'.")
    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:])
    names = [filename] if filename else list(WEIGHT_FILES)
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    offline = os.environ.get("MASKBIT_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"
    reasons = []
    for name in names:
        cached = try_to_load_from_cache(repo_id, name)
        if isinstance(cached, str):
            return Path(cached)
        if offline:
            reasons.append(f"{name}: offline (MASKBIT_OFFLINE/HF_HUB_OFFLINE is set) and not in the cache")
            continue
        try:
            return Path(hf_hub_download(repo_id, name))
        except Exception as err:  # network, auth, missing file: the advice is the same
            reasons.append(f"{name}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
    raise MissingWeightsError(
        f"Could not get {' or '.join(names)} from https://huggingface.co/{repo_id} ({'; '.join(reasons)}). "
        f"On a machine with internet run `huggingface-cli download {repo_id} {names[0]} --local-dir DIR`, copy "
        f"the file here and pass its local path instead of 'hf://{spec}'.")
