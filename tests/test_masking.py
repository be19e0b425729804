"""Training-time masking schedules, statistics and the MLM loss."""
import math

import pytest
import torch
import torch.nn.functional as F

from modeling.masking import label_drop_mask, mask_ratio, mask_tokens
from training.losses import MLMLoss

# E[rho] and E[rho^2] for r ~ U(0, 1)
MOMENTS = {"arccos": (2 / math.pi, 4 * (math.pi - 2) / math.pi ** 2), "cosine": (2 / math.pi, 0.5),
           "linear": (0.5, 1 / 3), "square": (2 / 3, 8 / 15)}


def test_schedule_values():
    r = torch.tensor([0.0, 0.5, 1.0])
    torch.testing.assert_close(mask_ratio(r, "arccos"), torch.tensor([1.0, 2 / 3, 0.0]))
    torch.testing.assert_close(mask_ratio(r, "cosine"), torch.tensor([1.0, math.cos(math.pi / 4), 0.0]))
    torch.testing.assert_close(mask_ratio(r, "linear"), torch.tensor([1.0, 0.5, 0.0]))
    torch.testing.assert_close(mask_ratio(r, "square"), torch.tensor([1.0, 0.75, 0.0]))
    with pytest.raises(ValueError, match="Unknown mask schedule"):
        mask_ratio(r, "exp")


@pytest.mark.parametrize("schedule", sorted(MOMENTS))
def test_mask_statistics_follow_schedule(schedule):
    tokens = torch.randint(0, 8, (20000, 4, 2))
    masked, mask = mask_tokens(tokens, 8, schedule, generator=torch.Generator().manual_seed(0))
    mean, second = MOMENTS[schedule]
    assert abs(mask.float().mean().item() - mean) < 0.01
    # independent Bernoulli per element: P(both splits of a position masked) = E[rho^2], not E[rho]
    both = (mask[..., 0] & mask[..., 1]).float().mean().item()
    assert abs(both - second) < 0.01
    assert torch.equal(masked[mask], torch.full_like(masked[mask], 8))
    assert torch.equal(masked[~mask], tokens[~mask])


def test_mask_count_is_random_within_a_sample_ratio():
    # a 512-element sample: the masked fraction varies from sample to sample (per-sample ratio)
    _, mask = mask_tokens(torch.zeros(2000, 256, 2, dtype=torch.long), 4, generator=torch.Generator().manual_seed(1))
    fractions = mask.float().mean(dim=(1, 2))
    assert fractions.std() > 0.2 and fractions.min() < 0.1 and fractions.max() > 0.95


def test_masking_is_seeded_and_leaves_input_alone():
    tokens = torch.randint(0, 8, (4, 16, 2))
    copy = tokens.clone()
    a = mask_tokens(tokens, 8, generator=torch.Generator().manual_seed(3))
    b = mask_tokens(tokens, 8, generator=torch.Generator().manual_seed(3))
    c = mask_tokens(tokens, 8, generator=torch.Generator().manual_seed(4))
    assert torch.equal(tokens, copy)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])


def test_min_masking_ratio_one_masks_everything():
    _, mask = mask_tokens(torch.zeros(8, 16, 2, dtype=torch.long), 4, min_masking_ratio=1.0)
    assert mask.all()


def test_label_drop_rate():
    drop = label_drop_mask(50000, 0.1, generator=torch.Generator().manual_seed(0))
    assert drop.dtype == torch.bool and abs(drop.float().mean().item() - 0.1) < 0.005


def test_mlm_loss_matches_hand_computation():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 8, 2, 5, generator=g, requires_grad=True)
    targets = torch.randint(0, 5, (2, 8, 2), generator=g)
    mask = torch.rand(2, 8, 2, generator=g) < 0.5
    loss, logs = MLMLoss(label_smoothing=0.1)(logits, targets, mask)
    expected = F.cross_entropy(logits.reshape(-1, 5), targets.reshape(-1), label_smoothing=0.1)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(logs["masked_token_loss"],
                               F.cross_entropy(logits[mask], targets[mask], label_smoothing=0.1))
    correct = logits.argmax(-1) == targets
    torch.testing.assert_close(logs["correct_tokens"], correct.float().mean() ** 2)
    torch.testing.assert_close(logs["masked_correct_tokens"], correct[mask].float().mean() ** 2)
    loss.backward()
    assert logits.grad is not None and all(not v.requires_grad for v in logs.values())

    summed, summed_logs = MLMLoss(label_smoothing=0.1, sum_splits=True)(logits, targets, mask)
    torch.testing.assert_close(summed, 2 * expected)
    torch.testing.assert_close(summed_logs["masked_token_loss"], 2 * logs["masked_token_loss"])
