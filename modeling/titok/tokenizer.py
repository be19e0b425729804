"""TiTok: a 1D tokenizer (ViT encoder -> N latent tokens -> VQ codebook or diagonal Gaussian -> ViT decoder).

    model = build_titok(codebook_size=4096, token_size=12, use_l2_norm=True, commitment_cost=0.25,
                        quantize_mode="vq", vit_enc_model_size="base", vit_dec_model_size="base",
                        vit_enc_patch_size=16, vit_dec_patch_size=16, num_latent_tokens=64,
                        finetune_decoder=True, is_legacy=True, image_size=256)
    x_rec, info = model(x)                       # x (B, 3, 256, 256) in [0, 1]; x_rec is not clamped
    tokens = info["min_encoding_indices"]        # (B, 1, 64) int64
    x_rec = model.decode_tokens(tokens)          # (B, N) also accepted

Variants (all keyed like the released checkpoints):
- two-stage L-32 / B-64 / S-128 (`is_legacy=True`): the decoder predicts 1024 MaskGIT-VQGAN code logits per 16x16
  cell; with `finetune_decoder=True` (stage 2, the released files) a softmax-weighted sum of the MaskGIT codebook
  (`pixel_quantize`) goes through the MaskGIT decoder (`pixel_decoder`) to pixels, and encoder, quantizer and latent
  tokens are frozen; with `finetune_decoder=False` (stage 1) `forward` returns the logits.
- single-stage VQ-8k / VAE (`is_legacy=False`): the decoder emits pixels itself.

The VQ is the project's `VectorQuantizer`: with `use_l2_normalisation` it is numerically the TiTok quantizer
(normalised z and codebook for the distances, the losses and the straight-through output, re-normalised lookups,
unweighted codebook term, fp32), and it keeps the key `quantize.embedding.weight`.
"""
from __future__ import annotations

import functools
import math
from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from modeling.quantizers import VectorQuantizer
from modeling.titok.blocks import TiTokDecoder, TiTokEncoder, vit_dims
from modeling.titok.maskgit_vqgan import CHANNEL_MULT, MaskGITDecoder, MaskGITQuantizer
from utils.config import ConfigError


class DiagonalGaussianDistribution:
    """Posterior of the VAE TiTok: `parameters` (B, 2C, 1, N) split into mean and log-variance (cast to fp32,
    log-variance clamped to [-30, 20])."""

    def __init__(self, parameters: torch.Tensor):
        self.parameters = parameters.float()
        self.mean, self.logvar = torch.chunk(self.parameters, 2, dim=1)
        self.logvar = torch.clamp(self.logvar, -30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)

    def sample(self, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        """mean + std * noise; `noise` (the mean's shape) replaces the standard-normal draw."""
        if noise is None:
            noise = torch.randn(self.mean.shape, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * noise.to(self.mean.dtype)

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL to the standard normal summed over channels (and the singleton height): (B, N)."""
        return 0.5 * torch.sum(self.mean.pow(2) + self.var - 1.0 - self.logvar, dim=[1, 2])


class TiTok(nn.Module):
    """The TiTok tokenizer; see the module docstring. Constructor arguments carry the official config names."""

    training_recipe = "titok two-stage / single-stage"  # not the VQGAN+ recipe of scripts/train_tokenizer.py

    def __init__(self, *, codebook_size: int = 4096, token_size: int = 12, use_l2_norm: bool = True,
                 commitment_cost: float = 0.25, quantize_mode: str = "vq", vit_enc_model_size: str = "large",
                 vit_dec_model_size: str = "large", vit_enc_patch_size: int = 16, vit_dec_patch_size: int = 16,
                 num_latent_tokens: int = 32, finetune_decoder: bool = True, is_legacy: bool = True,
                 image_size: int = 256, vit_enc_width: Optional[int] = None, vit_enc_layers: Optional[int] = None,
                 vit_enc_heads: Optional[int] = None, vit_dec_width: Optional[int] = None,
                 vit_dec_layers: Optional[int] = None, vit_dec_heads: Optional[int] = None,
                 pixel_vqgan_hidden_channels: int = 128, pixel_vqgan_channel_mult: Optional[Sequence[int]] = None,
                 init_std: float = 0.02):
        super().__init__()
        if quantize_mode not in ("vq", "vae"):
            raise ValueError(f"Unknown TiTok quantize_mode '{quantize_mode}'; choose 'vq' or 'vae'.")
        if finetune_decoder and quantize_mode == "vae":
            raise ValueError("finetune_decoder=True (two-stage pixel decoder) is only defined for quantize_mode 'vq'.")
        if finetune_decoder and not is_legacy:
            raise ValueError("finetune_decoder=True needs is_legacy=True: the pixel decoder reads the legacy "
                             "decoder's 1024 MaskGIT code logits.")
        self.quantize_mode = quantize_mode
        self.finetune_decoder = finetune_decoder
        self.is_legacy = is_legacy
        self.image_size = image_size
        self.num_latent_tokens = num_latent_tokens
        self.token_size = token_size
        enc_width, enc_layers, enc_heads = vit_dims(vit_enc_model_size, vit_enc_width, vit_enc_layers, vit_enc_heads)
        dec_width, dec_layers, dec_heads = vit_dims(vit_dec_model_size, vit_dec_width, vit_dec_layers, vit_dec_heads)

        self.encoder = TiTokEncoder(image_size=image_size, patch_size=vit_enc_patch_size, width=enc_width,
                                    num_layers=enc_layers, num_heads=enc_heads, num_latent_tokens=num_latent_tokens,
                                    token_size=token_size, is_legacy=is_legacy, quantize_mode=quantize_mode)
        self.decoder = TiTokDecoder(image_size=image_size, patch_size=vit_dec_patch_size, width=dec_width,
                                    num_layers=dec_layers, num_heads=dec_heads, num_latent_tokens=num_latent_tokens,
                                    token_size=token_size, is_legacy=is_legacy)
        self.latent_tokens = nn.Parameter(enc_width ** -0.5 * torch.randn(num_latent_tokens, enc_width))
        self.apply(functools.partial(_init_weights, std=init_std))
        # created after the init pass: the codebook keeps uniform(-1/K, 1/K), the pixel parts PyTorch defaults
        if quantize_mode == "vq":
            self.quantize = VectorQuantizer(codebook_size, token_size, commitment_cost,
                                            use_l2_normalisation=use_l2_norm)
        else:
            self.quantize = DiagonalGaussianDistribution  # the class itself: no parameters, no keys
        if finetune_decoder:
            self.latent_tokens.requires_grad_(False)
            self.encoder.eval().requires_grad_(False)
            self.quantize.eval().requires_grad_(False)
            self.pixel_quantize = MaskGITQuantizer(1024, 256)
            self.pixel_decoder = MaskGITDecoder(hidden_channels=pixel_vqgan_hidden_channels,
                                                channel_mult=tuple(pixel_vqgan_channel_mult or CHANNEL_MULT))

    # -- the token space ---------------------------------------------------------------------------------------
    @property
    def codebook_size(self) -> Optional[int]:
        """Codebook size of the VQ variants; None for the (continuous) VAE."""
        return self.quantize.codebook_size if self.quantize_mode == "vq" else None

    @property
    def token_bits(self) -> Optional[int]:
        if self.codebook_size is None:
            return None
        bits = math.log2(self.codebook_size)
        return int(bits) if bits.is_integer() else None

    def token_grid(self, image_size: int) -> Tuple[int]:
        """(num_latent_tokens,): the 1D token sequence of an `image_size` image (only the size it was built for)."""
        if image_size != self.image_size:
            raise ConfigError(f"this TiTok tokenizer was built for {self.image_size}px images (its positional "
                             f"tables are fixed); got image size {image_size}. Use "
                             f"dataset.preprocessing.crop_size={self.image_size}.")
        return (self.num_latent_tokens,)

    def get_last_layer(self) -> torch.Tensor:
        """Weight of the layer that produces the output (for an adaptive GAN weight; the official TiTok losses use
        none): the pixel decoder's conv_out in stage 2, the logit conv in stage 1, else the decoder's conv_out."""
        if self.finetune_decoder:
            return self.pixel_decoder.conv_out.weight
        if self.is_legacy:
            return self.decoder.ffn[2].weight
        return self.decoder.conv_out.weight

    # -- the model ---------------------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor):
        """x (B, 3, H, W) in [0, 1] -> (z_q (B, C, 1, N), info dict) for VQ, (sample, posterior) for VAE."""
        if self.finetune_decoder:
            with torch.no_grad():
                self.encoder.eval()
                self.quantize.eval()
                z = self.encoder(pixel_values=x, latent_tokens=self.latent_tokens)
                z_quantized, result = self.quantize(z)
                for key in ("quantizer_loss", "commitment_loss", "codebook_loss"):
                    result[key] *= 0
            return z_quantized, result
        z = self.encoder(pixel_values=x, latent_tokens=self.latent_tokens)
        if self.quantize_mode == "vq":
            return self.quantize(z)
        posterior = self.quantize(z)
        return posterior.sample(), posterior

    def decode(self, z_quantized: torch.Tensor) -> torch.Tensor:
        """(B, C, 1, N) -> stage 2 / single-stage: image (not clamped); stage 1: logits (B, 1024, 16, 16)."""
        decoded = self.decoder(z_quantized)
        if self.finetune_decoder:
            weights = decoded.softmax(dim=1)
            quantized = torch.einsum("nchw,cd->ndhw", weights, self.pixel_quantize.embedding.weight)
            decoded = self.pixel_decoder(quantized)
        return decoded

    def decode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """VQ: tokens (B, N) or (B, 1, N) -> decode of their codes; VAE: `tokens` is the latent (B, C, 1, N)."""
        if self.quantize_mode == "vae":
            return self.decode(tokens)
        if tokens.dim() == 3:
            if tokens.shape[1] != 1:
                raise ValueError(f"decode_tokens expects tokens (B, N) or (B, 1, N), got {tuple(tokens.shape)}.")
            tokens = tokens[:, 0]
        elif tokens.dim() != 2:
            raise ValueError(f"decode_tokens expects tokens (B, N) or (B, 1, N), got {tuple(tokens.shape)}.")
        batch, n = tokens.shape
        z_q = self.quantize.get_codebook_entry(tokens.reshape(-1)).reshape(batch, 1, n, -1)
        return self.decode(z_q.permute(0, 3, 1, 2).contiguous())

    def forward(self, x: torch.Tensor):
        z_quantized, result = self.encode(x)
        return self.decode(z_quantized), result


def _init_weights(module: nn.Module, std: float = 0.02) -> None:
    """Linear / Conv1d / Conv2d / Embedding weights trunc-normal(0, std) (bounds +-2; official std 0.02), zero
    biases; LayerNorm 1 / 0. The attention's fused in_proj keeps PyTorch's xavier-uniform init."""
    if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Embedding)):
        nn.init.trunc_normal_(module.weight, mean=0.0, std=std)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def build_titok(*, codebook_size: int, token_size: int, use_l2_norm: bool, commitment_cost: float,
                quantize_mode: str, vit_enc_model_size: str, vit_dec_model_size: str, vit_enc_patch_size: int,
                vit_dec_patch_size: int, num_latent_tokens: int, finetune_decoder: bool, is_legacy: bool,
                image_size: int, vit_enc_width: Optional[int] = None, vit_enc_layers: Optional[int] = None,
                vit_enc_heads: Optional[int] = None, vit_dec_width: Optional[int] = None,
                vit_dec_layers: Optional[int] = None, vit_dec_heads: Optional[int] = None,
                pixel_vqgan_hidden_channels: int = 128,
                pixel_vqgan_channel_mult: Optional[Sequence[int]] = None, init_std: float = 0.02) -> TiTok:
    """A TiTok tokenizer from the official `model.vq_model` values (plus `image_size` = crop size and optional
    ViT width / depth / head overrides for reduced models)."""
    return TiTok(codebook_size=codebook_size, token_size=token_size, use_l2_norm=use_l2_norm,
                 commitment_cost=commitment_cost, quantize_mode=quantize_mode,
                 vit_enc_model_size=vit_enc_model_size, vit_dec_model_size=vit_dec_model_size,
                 vit_enc_patch_size=vit_enc_patch_size, vit_dec_patch_size=vit_dec_patch_size,
                 num_latent_tokens=num_latent_tokens, finetune_decoder=finetune_decoder, is_legacy=is_legacy,
                 image_size=image_size, vit_enc_width=vit_enc_width, vit_enc_layers=vit_enc_layers,
                 vit_enc_heads=vit_enc_heads, vit_dec_width=vit_dec_width, vit_dec_layers=vit_dec_layers,
                 vit_dec_heads=vit_dec_heads, pixel_vqgan_hidden_channels=pixel_vqgan_hidden_channels,
                 pixel_vqgan_channel_mult=pixel_vqgan_channel_mult, init_std=init_std)
