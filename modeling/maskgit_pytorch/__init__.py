"""MaskGIT-pytorch (v1) and Halton-MaskGIT (v2): the valeoai transformers, their VQGANs and samplers.

Facts: `docs/design/maskgit-pytorch-facts.md`. Released layouts: `tests/fixtures/checkpoint_layout_maskgit_pytorch/`.
"""
