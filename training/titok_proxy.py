"""A trained stand-in for the MaskGIT-VQGAN of CPU-size TiTok runs (no released proxy exists at 32 px).

The released two-stage recipe predicts the codes of a trained MaskGIT-VQGAN in stage 1 and starts the stage-2 pixel
decoder from its decoder. A random network stands in badly for both (its decoder maps every code to noise), and a
MaskGIT-VQGAN trained with its quantizer in the loop (Adam 1e-3, batch 16) fell to 5-10 codes within 50 steps at
this size. So the stand-in is trained in two parts:

1. `train_maskgit_autoencoder`: encoder and decoder as a continuous autoencoder (L2 on [0, 1] pixels, the
   quantizer skipped);
2. `modeling.titok.init_codebook_from_images(..., spread=True)`: the codebook is the trained encoder's features of
   training-image cells taken in farthest-point order, so every code is a distinct feature the decoder has learnt
   to decode.

    vqgan = build_maskgit_vqgan(64, [1, 1, 2])
    losses = train_maskgit_autoencoder(vqgan, images, steps=300, batch_size=8, learning_rate=2e-4,
                                       generator=torch.Generator().manual_seed(0))
    init_codebook_from_images(vqgan, images[:256], torch.Generator().manual_seed(0), spread=True)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from modeling.titok.maskgit_vqgan import MaskGITVQGAN


def train_maskgit_autoencoder(vqgan: MaskGITVQGAN, images: torch.Tensor, *, steps: int, batch_size: int,
                              learning_rate: float, generator: torch.Generator) -> list[float]:
    """Train `vqgan`'s encoder and decoder as an autoencoder on `images` (N, 3, H, W) in [0, 1] with Adam (betas
    0.9 / 0.99, constant lr) and batches drawn with replacement by `generator`; returns the L2 loss of each step.
    The codebook is left as it is (set it afterwards from the trained features). `vqgan` ends in eval mode.

    At width 64 Adam 1e-3 (batch 16) was still on the dataset-mean plateau after 200 steps (11.0 dB held out);
    2e-4 (batch 8) passed the mean-colour PSNR of the synthetic data (12.9 dB) at ~175 steps.
    """
    params = [p for name, p in vqgan.named_parameters() if not name.startswith("quantize.")]
    optimizer = torch.optim.Adam(params, lr=learning_rate, betas=(0.9, 0.99))
    vqgan.train()
    losses = []
    for _ in range(steps):
        batch = images[torch.randint(0, len(images), (batch_size,), generator=generator)]
        loss = F.mse_loss(vqgan.decoder(vqgan.encoder(batch)), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    vqgan.eval()
    return losses
