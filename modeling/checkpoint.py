"""Load weights into a model from any of the places they come in, strictly and without unpickling code.

    load_pretrained(model, "maskbit_tokenizer_12bit.bin")           # plain state dict (.bin / .pt / .pth)
    load_pretrained(model, "model.safetensors")
    load_pretrained(model, "runs/exp")                              # holds pytorch_model.bin or model.safetensors
    load_pretrained(model, "runs/exp/checkpoint-20000")             # ema_model/ if present, else unwrapped_model/
    load_pretrained(model, "last.ckpt")                             # Taming / Lightning: its state_dict, no loss.*
    load_pretrained(model, "hf://owner/repo/maskbit_tokenizer_12bit.bin")

A model class may describe its own released files (no family branches here):
- `checkpoint_weights_keys`: keys under which a training checkpoint keeps the weights, e.g. ("model_state_dict",);
  the other entries (iteration counters, optimizer state) are ignored;
- `checkpoint_files`: file names a folder of its releases holds, e.g. ("current.pth",) or ("ckpts/last.ckpt",);
- `checkpoint_key_renames`: key prefixes that differ in the released files.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import torch
from torch import nn

from modeling.checkpoint_inspect import describe_checkpoint
from utils.run_layout import TRAINING_SUBFOLDERS, WEIGHT_FILES
from utils.errors import MaskbitError
from utils.weights import MissingWeightsError, load_state_dict_file

# Lightning checkpoints pickle callback and hyper-parameter objects next to the weights (LlamaGen's its argparse
# arguments); these are swapped for inert stand-ins (objects that run no code) so that the file still loads with
# weights_only=True. Any other pickled class is refused.
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
    path = resolve_checkpoint(path_or_id, getattr(model, "checkpoint_files", ()))
    state_dict = read_state_dict(path, getattr(model, "checkpoint_weights_keys", ()))
    renames = getattr(model, "checkpoint_key_renames", {}) if rename_keys is None else rename_keys
    state_dict = _strip_wrapper_prefixes(rename_prefixes(state_dict, renames), model)
    check_compatible(model, state_dict, source=str(path))
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def resolve_checkpoint(path_or_id: Union[str, os.PathLike], release_files: Sequence[str] = ()) -> Path:
    """The weights file named by a path, a folder, an accelerate checkpoint folder, or an hf:// id.

    `release_files`: further names (relative paths) a folder may hold, after the project's own."""
    if str(path_or_id).startswith("hf://"):
        return _download_from_hub(str(path_or_id)[len("hf://"):])
    path = Path(path_or_id).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise CheckpointNotFoundError(f"Checkpoint '{path}' does not exist. Pass a weights file (.bin, .pt, "
                                      f".safetensors, .ckpt), a folder holding one, or hf://<owner>/<repo>[/<file>].")
    candidates = [path / sub / name for sub in TRAINING_SUBFOLDERS for name in WEIGHT_FILES]
    candidates += [path / name for name in (*WEIGHT_FILES, *release_files)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise CheckpointNotFoundError(f"No weights found in folder '{path}'. Looked for: "
                            f"{', '.join(str(c.relative_to(path)) for c in candidates)}.")


def read_state_dict(path: Path, weights_keys: Sequence[str] = ()) -> dict:
    """A flat {name: tensor} dict from a weights file; Lightning `.ckpt` files give their `state_dict`, training
    checkpoints the entry under the first of `weights_keys` they hold (e.g. "model_state_dict")."""
    checkpoint = load_state_dict_file(path) if path.suffix == ".safetensors" else _load_torch_checkpoint(path)
    for key in weights_keys:
        if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("state_dict"), Mapping):
        # Lightning layout (Taming VQGAN): the loss module (discriminator, LPIPS) is not part of the model
        checkpoint = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("loss.")}
    if not isinstance(checkpoint, Mapping) or not all(torch.is_tensor(v) for v in checkpoint.values()):
        keys = list(checkpoint)[:8] if isinstance(checkpoint, Mapping) else []
        found = f" (top-level keys: {', '.join(map(str, keys))})" if keys else ""
        wanted = f"; the weights were looked for under {', '.join(weights_keys)}" if weights_keys else ""
        raise ValueError(f"'{path}' is not a state dict (a mapping of names to tensors){found}{wanted}.")
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
    """Drop `module.` (DDP) and `_orig_mod.` (torch.compile) prefixes carried by every key, in any nesting order
    (whole leading prefixes only: a key that merely contains `module.` keeps it)."""
    model_keys = model.state_dict().keys()
    stripped = True
    while stripped:
        stripped = False
        for prefix in ("module.", "_orig_mod."):
            if state_dict and all(k.startswith(prefix) for k in state_dict) and not any(
                    k.startswith(prefix) for k in model_keys):
                state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}
                stripped = True
    return state_dict


class _Ignored:
    """Inert stand-in for a pickled non-tensor object of a Lightning checkpoint; never runs any code."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


def _load_torch_checkpoint(path: Path):
    """torch.load(weights_only=True) of a torch file, with inert stand-ins for the IGNORABLE_GLOBALS it pickles."""
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # not a zip-format checkpoint: let the plain loader report it
        return load_state_dict_file(path)
    refused = [name for name in unsafe if not name.startswith(IGNORABLE_GLOBALS)]
    if refused:
        raise ValueError(f"'{path}' pickles objects other than tensors and plain Python types "
                         f"({', '.join(refused[:5])}); it is refused for safety (weights_only loading). Re-save its "
                         f"state_dict as a plain .bin or .safetensors file.")
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
