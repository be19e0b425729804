"""Codebook usage, entropy and per-bit usage on hand-made index sets."""
import math

import pytest
import torch

from evaluation import CodebookStats


def test_usage_entropy_and_bit_usage():
    stats = CodebookStats(codebook_size=8, num_bits=3)
    stats.update(torch.tensor([[0, 1], [1, 3]]))  # batches of any shape accumulate
    stats.update(torch.tensor([3, 3, 3, 7]))
    # counts: 0:1, 1:2, 3:4, 7:1 of 8 tokens
    assert stats.usage() == pytest.approx(4 / 8)
    p = [1 / 8, 2 / 8, 4 / 8, 1 / 8]
    assert stats.entropy() == pytest.approx(-sum(q * math.log2(q + 1e-8) for q in p), rel=1e-12)
    # bit 0 set for 1,3,7 (2+4+1 = 7 tokens); bit 1 for 3,7 (5); bit 2 for 7 (1)
    assert stats.bit_usage() == pytest.approx([7 / 8, 5 / 8, 1 / 8])


def test_uniform_codebook_has_full_entropy():
    stats = CodebookStats(16)
    stats.update(torch.arange(16).repeat(3))
    assert stats.usage() == 1.0
    assert stats.entropy() == pytest.approx(4.0, abs=1e-6)


def test_out_of_range_indices_are_a_clear_error():
    with pytest.raises(ValueError, match="codebook_size"):
        CodebookStats(4).update(torch.tensor([4]))
    with pytest.raises(ValueError, match="num_bits"):
        CodebookStats(8, num_bits=4)
