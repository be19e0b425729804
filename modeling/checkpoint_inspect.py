"""Guess what model and config a state dict belongs to, for helpful loading errors."""
from __future__ import annotations

from typing import Mapping

import torch

# (quantizer type, token size, codebook size, model class) -> official config
OFFICIAL_TOKENIZERS = {
    **{("lookup-free", k, 2 ** k, "vqgan+"): f"configs/tokenizer/maskbit_tokenizer_{k}bit.yaml" for k in
       (10, 12, 14, 16, 18)},
    ("lookup", 256, 1024, "vqgan+"): "configs/tokenizer/vqgan_plus_10bit.yaml",
    ("lookup", 64, 4096, "vqgan+"): "configs/tokenizer/vqgan_plus_12bit.yaml",
    ("lookup", 256, 1024, "maskgit"): "configs/external/maskgit_tokenizer.yaml",
    ("lookup", 256, 1024, "taming"): "configs/external/taming_vqgan_tokenizer.yaml",
}


def describe_checkpoint(state_dict: Mapping[str, torch.Tensor]) -> str:
    """A short description such as "a VQGAN+ tokenizer with lookup-free quantization, token_size=14 (...)"."""
    keys = state_dict.keys()
    if "input_proj.weight" in keys or "token_emb.weight" in keys or any(k.startswith("transformer.") for k in keys):
        return "a Stage-II generator (load it into the generator, not the tokenizer)"
    if "block_in.0.weight" in keys:
        stages = len({k.split(".")[1] for k in keys if k.startswith("blocks.")})
        return (f"a VQGAN+ discriminator (model.discriminator.name=VQGAN+Discriminator, "
                f"hidden_channels={state_dict['block_in.0.weight'].shape[0]}, num_stages={stages})")
    if "main.0.weight" in keys:
        return "a PatchGAN discriminator (model.discriminator.name=Original)"
    if "quantize.codebook" in keys:
        quantizer, token_size = "lookup-free", state_dict["quantize.codebook"].shape[1]
        codebook_size = 2 ** token_size
    elif "quantize.embedding.weight" in keys:
        quantizer = "lookup"
        codebook_size, token_size = state_dict["quantize.embedding.weight"].shape
    else:
        return "an unknown model (no quantizer, generator or discriminator keys)"
    model_class = _tokenizer_class(state_dict)
    name = {"vqgan+": "VQGAN+", "maskgit": "MaskGIT", "taming": "Taming VQGAN"}[model_class]
    overrides = (f"model.vq_model.model_class={model_class} model.vq_model.quantizer_type={quantizer} "
                 f"model.vq_model.token_size={token_size}")
    if quantizer == "lookup":
        overrides += f" model.vq_model.codebook_size={codebook_size}"
    if model_class != "taming":
        overrides += f" model.vq_model.hidden_channels={state_dict['encoder.conv_in.weight'].shape[0]}"
    official = OFFICIAL_TOKENIZERS.get((quantizer, int(token_size), int(codebook_size), model_class))
    hint = f"config {official}, i.e. " if official else "a config with "
    return f"a {name} tokenizer with {quantizer} quantization, token_size={token_size} ({hint}{overrides})"


def _tokenizer_class(state_dict: Mapping[str, torch.Tensor]) -> str:
    if "encoder.down.0.block.0.conv1.weight" in state_dict:
        return "taming"
    if "encoder.down.0.down_conv.weight" in state_dict:
        return "vqgan+"
    return "maskgit"  # average-pool downsampling and legacy decoder indices
