"""MaskGIT-pytorch (v1) and Halton-MaskGIT (v2): the valeoai transformers, their VQGANs and samplers.

Facts: `docs/design/maskgit-pytorch-facts.md`. Released layouts: `tests/fixtures/checkpoint_layout_maskgit_pytorch/`.
"""
# samplers and their config recipe (registers the samplers of maskgit_pytorch_v1 / maskgit_pytorch_v2)
from modeling.maskgit_pytorch.bit_token_grid import BitTokenGrid  # noqa: E402
from modeling.maskgit_pytorch.halton import halton_order  # noqa: E402
from modeling.maskgit_pytorch.sampler import official_defaults, sample  # noqa: E402
from modeling.maskgit_pytorch.sampling_recipe import maskgit_sampler_settings  # noqa: E402
from modeling.maskgit_pytorch.schedules import confidence_schedule, halton_schedule  # noqa: E402
