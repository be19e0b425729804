"""The TiTok family in the registry: config sections -> the TiTok modules, and `configs/titok/` as presets.

`model.vq_model` with `model_class: titok` builds a `TiTok` tokenizer, `model_class: maskgit_vqgan` its MaskGIT-VQGAN;
`model.generator.model_type` `ViT` / `UViT` builds `ImageBert` / `UViTBert` (official key names throughout, see
`utils/schema.py`). The stage-2 discriminator is the project's VQGAN+ discriminator with 3 stages.
"""
from __future__ import annotations

import torch

from modeling.registry import register_builder, register_presets, register_sampler
from modeling.titok.generator import build_titok_generator
from modeling.titok.maskgit_vqgan import build_maskgit_vqgan
from modeling.titok.tokenizer import build_titok

register_presets("titok", main="tokenizer")


@register_builder("tokenizer", "titok")
def _titok_from_config(vq, image_size: int):
    return build_titok(
        codebook_size=vq.codebook_size, token_size=vq.token_size, use_l2_norm=vq.use_l2_norm,
        commitment_cost=vq.commitment_cost, quantize_mode=vq.quantize_mode,
        vit_enc_model_size=vq.vit_enc_model_size, vit_dec_model_size=vq.vit_dec_model_size,
        vit_enc_patch_size=vq.vit_enc_patch_size, vit_dec_patch_size=vq.vit_dec_patch_size,
        num_latent_tokens=vq.num_latent_tokens, finetune_decoder=vq.finetune_decoder, is_legacy=vq.is_legacy,
        image_size=image_size, vit_enc_width=vq.vit_enc_width, vit_enc_layers=vq.vit_enc_layers,
        vit_enc_heads=vq.vit_enc_heads, vit_dec_width=vq.vit_dec_width, vit_dec_layers=vq.vit_dec_layers,
        vit_dec_heads=vq.vit_dec_heads, pixel_vqgan_hidden_channels=vq.pixel_vqgan_hidden_channels,
        pixel_vqgan_channel_mult=vq.pixel_vqgan_channel_mult, init_std=vq.vit_init_std)


@register_builder("tokenizer", "maskgit_vqgan")
def _maskgit_vqgan_from_config(vq, image_size: int):
    """The fixed MaskGIT-VQGAN (f16, 1024 x 256); only its width and levels are configurable (reduced models)."""
    return build_maskgit_vqgan(vq.pixel_vqgan_hidden_channels, vq.pixel_vqgan_channel_mult)


@register_builder("generator", "ViT", "UViT")
def _titok_generator_from_config(gen, tokens):
    """`model.generator` for the TiTok tokenizer's `TokenSpace` (its codebook and its N latent tokens)."""
    if tokens.codebook_size is None:
        raise ValueError("TiTok generators model VQ tokens; this config's tokenizer is a VAE without a codebook "
                         "(model.vq_model.quantize_mode: vae)")
    if gen.image_seq_len != tokens.seq_len:
        raise ValueError(f"model.generator.image_seq_len ({gen.image_seq_len}) must equal the tokenizer's number of "
                         f"tokens ({tokens.seq_len}, model.vq_model.num_latent_tokens)")
    return build_titok_generator(
        model_type=gen.model_type, hidden_size=gen.hidden_size, num_hidden_layers=gen.num_hidden_layers,
        num_attention_heads=gen.num_attention_heads, intermediate_size=gen.intermediate_size, dropout=gen.dropout,
        attn_drop=gen.attn_drop, image_seq_len=gen.image_seq_len, condition_num_classes=gen.condition_num_classes,
        codebook_size=tokens.codebook_size)


@register_sampler("ViT", "UViT")
class TiTokSampling:
    """`generate` with `model.generator`'s sampling values (the official per-model ones in configs/titok/), decoded by
    the TiTok tokenizer."""

    @staticmethod
    def settings(config, evaluation: bool) -> dict:
        g = config.model.generator
        return dict(guidance_scale=g.guidance_scale, guidance_decay=g.guidance_decay,
                    guidance_scale_pow=g.guidance_scale_pow, randomize_temperature=g.randomize_temperature,
                    softmax_temperature_annealing=g.softmax_temperature_annealing, num_sample_steps=g.num_steps)

    @staticmethod
    def build(config, generator, tokenizer, evaluation: bool):
        settings = TiTokSampling.settings(config, evaluation)

        @torch.no_grad()
        def sample_images(labels, seeds):
            device = next(generator.parameters()).device
            ids = generator.generate(torch.as_tensor(labels).to(device), seeds=seeds, **settings)
            return tokenizer.decode_tokens(ids)
        return sample_images
