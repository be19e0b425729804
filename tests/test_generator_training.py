"""A tiny generator overfits a fixed class-conditional token set with the real masking + loss, then samples it."""
import torch

from modeling.generator import BitTokenTransformer
from modeling.masking import label_drop_mask, mask_tokens
from training.losses import MLMLoss
from modeling.sampling import sample




def test_tiny_generator_overfits_and_samples_its_training_tokens():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = BitTokenTransformer(bits=6, codebook_splits=2, seq_len=16, hidden_dim=64, depth=2, heads=4,
                                mlp_dim=128, dropout=0.0, num_classes=4)
    classes = torch.arange(4)
    targets = model.split_tokens(torch.randint(0, 2 ** 6, (4, 16), generator=g))  # one token grid per class
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.96), weight_decay=0.0,
                                  foreach=True)
    loss_fn = MLMLoss(label_smoothing=0.1)
    model.train()
    for _ in range(100):
        masked, mask = mask_tokens(targets.repeat(4, 1, 1), model.mask_token, generator=g)
        drop = label_drop_mask(16, 0.1, generator=g)
        loss, logs = loss_fn(model(masked, classes.repeat(4), drop), targets.repeat(4, 1, 1), mask)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    model.eval()
    with torch.no_grad():
        masked, mask = mask_tokens(targets.repeat(8, 1, 1), model.mask_token, generator=torch.Generator().manual_seed(1))
        correct = model(masked, classes.repeat(8)).argmax(-1) == targets.repeat(8, 1, 1)
    assert correct[mask].float().mean() > 0.9  # chance is 1/8
    tokens = sample(model, None, classes, seeds=[0, 1, 2, 3], num_steps=8, guidance_scale=2.0,
                    randomize_temperature=1.0)
    assert (tokens == model.combine_tokens(targets)).float().mean() > 0.75
