"""Training losses. Stage I (tokenizer): reconstruction, perceptual, GAN, LeCAM, entropy annealing and their
combination `VQGANLoss`. Stage II (generator): the masked-token loss `MLMLoss`."""
from training.losses.entropy_annealing import annealed_quantizer_loss, entropy_annealing_coefficient
from training.losses.gan import (GAN_LOSSES, adaptive_gan_weight, hinge_d_loss, hinge_g_loss, non_saturating_d_loss,
                                 non_saturating_g_loss, vanilla_d_loss)
from training.losses.lecam import LeCAMRegularizer, lecam_loss
from training.losses.mlm import MLMLoss
from training.losses.perceptual import PerceptualLoss, build_perceptual_loss
from training.losses.reconstruction import reconstruction_loss
from training.losses.vqgan_loss import VQGANLoss
from training.losses.titok import TiTokPixelLoss, proxy_code_loss  # noqa: F401

__all__ = [
    "GAN_LOSSES", "LeCAMRegularizer", "MLMLoss", "PerceptualLoss", "TiTokPixelLoss", "VQGANLoss", "adaptive_gan_weight",
    "annealed_quantizer_loss", "build_perceptual_loss", "entropy_annealing_coefficient", "hinge_d_loss", "hinge_g_loss",
    "lecam_loss", "non_saturating_d_loss", "non_saturating_g_loss", "proxy_code_loss", "reconstruction_loss",
    "vanilla_d_loss",
]
