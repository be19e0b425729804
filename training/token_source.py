"""The frozen Stage-I tokenizer of Stage-II training and pretokenization.

    tokenizer = load_frozen_tokenizer(config, device)    # eval mode, fp32, no grad, never wrapped by accelerate
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from utils.errors import MaskbitError


class TokenizerCheckpointError(MaskbitError, ValueError):
    """`experiment.vqgan_checkpoint` is missing, unreadable or does not match `model.vq_model`."""


def _describe(vq) -> str:
    return (f"model.vq_model (model_class={vq.model_class}, quantizer_type={vq.quantizer_type}, "
            f"token_size={vq.token_size}, codebook_size={vq.codebook_size}, hidden_channels={vq.hidden_channels}, "
            f"channel_mult={list(vq.channel_mult)})")


def load_frozen_tokenizer(config, device: torch.device) -> nn.Module:
    """`build_tokenizer(config)` with the weights of `experiment.vqgan_checkpoint`, frozen, in eval mode."""
    from modeling import build_tokenizer, load_pretrained

    path, vq = config.experiment.vqgan_checkpoint, config.model.vq_model
    if not path or "MODEL_PATH" in path:
        raise TokenizerCheckpointError(
            f"experiment.vqgan_checkpoint is not set (got '{path}'). Stage-II training needs the weights of the "
            f"frozen tokenizer described by {_describe(vq)}: pass experiment.vqgan_checkpoint=/path/to/"
            f"tokenizer.bin (a released MaskBit tokenizer, or pytorch_model.bin exported by train_tokenizer.py).")
    if not Path(path).expanduser().exists():
        raise TokenizerCheckpointError(f"experiment.vqgan_checkpoint '{path}' does not exist. Point it at the "
                                       f"weights of the tokenizer described by {_describe(vq)}.")
    try:
        tokenizer = load_pretrained(build_tokenizer(config), path)
    except Exception as err:  # mismatched keys/shapes, unreadable file: same advice
        raise TokenizerCheckpointError(
            f"experiment.vqgan_checkpoint '{path}' does not load into the tokenizer of this config, "
            f"{_describe(vq)}. Use the checkpoint trained with these model.vq_model settings, or set "
            f"model.vq_model to match the checkpoint.\n{err}") from None
    return tokenizer.to(device).eval().requires_grad_(False)
