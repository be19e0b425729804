"""The memory-bounded LFQ entropy loss equals the official full-softmax computation, values and gradients."""
import os

import pytest
import torch
import torch.multiprocessing as mp
from torch.utils._python_dispatch import TorchDispatchMode

from modeling.quantizers import indices_to_bits, lfq_entropy




def naive_entropy(z, temperature, gamma):
    """The official computation: softmax over all 2^K codes of 2<z, c> / T, log clamped at 1e-5."""
    z = z.reshape(-1, z.shape[-1])
    codebook = indices_to_bits(torch.arange(2 ** z.shape[-1]), z.shape[-1]).to(z.dtype)
    probs = ((2 * z @ codebook.T) / temperature).softmax(-1)
    per_sample = -(probs * torch.log(torch.clamp(probs, 1e-5))).sum(-1).mean()
    avg_probs = probs.mean(0)
    avg = -(avg_probs * torch.log(torch.clamp(avg_probs, 1e-5))).sum()
    return per_sample, gamma * avg


def latents(num, bits, regime, seed=0):
    g = torch.Generator().manual_seed(seed + bits)
    scales = {"flat": 0.0005, "uncertain": 0.004, "mixed": None, "sharp": 0.3}
    if regime == "mixed":  # some confident bits, some undecided: codes on both sides of the 1e-5 clamp
        scale = torch.tensor([0.0005, 0.01, 0.002, 1.0])[torch.arange(bits) % 4]
        return torch.randn(num, bits, generator=g, dtype=torch.float64) * scale
    if regime == "lopsided":  # undecided low bits and sharp high bits, then the reverse: both table orientations
        scale = torch.full((num, bits), 0.3, dtype=torch.float64)
        scale[: num // 2, : bits // 2] = scale[num // 2:, bits // 2:] = 0.002
        return torch.randn(num, bits, generator=g, dtype=torch.float64) * scale
    return torch.randn(num, bits, generator=g, dtype=torch.float64) * scales[regime]


def values_and_grads(fn, z, weight=0.7):
    z = z.detach().clone().requires_grad_(True)
    per_sample, avg = fn(z)
    (grad,) = torch.autograd.grad(per_sample - weight * avg, z)
    return per_sample.detach(), avg.detach(), grad


@pytest.mark.parametrize("bits", [4, 7, 10, 12])
@pytest.mark.parametrize("regime", ["flat", "uncertain", "mixed", "lopsided", "sharp"])
@pytest.mark.parametrize("temperature,gamma", [(0.01, 1.0), (0.05, 0.5), (0.003, 2.0)])
def test_matches_naive_softmax(bits, regime, temperature, gamma):
    z = latents(64, bits, regime)
    ours = values_and_grads(lambda x: lfq_entropy(x, temperature, gamma, max_chunk_elements=4096), z)
    ref = values_and_grads(lambda x: naive_entropy(x, temperature, gamma), z)
    for mine, theirs in zip(ours[:2], ref[:2]):
        assert torch.allclose(mine, theirs, rtol=1e-5, atol=1e-7), (mine, theirs)
    assert (ours[2] - ref[2]).abs().max() <= 1e-5 * ref[2].abs().max()


def test_clamp_matters_in_tested_regimes():
    """Guard against a vacuous test: without the 1e-5 clamp, the per-sample entropy would differ by far more than
    the tolerance above (the factorised sum of per-bit entropies is the unclamped value)."""
    z = latents(64, 12, "uncertain")
    probs = torch.sigmoid(4 * z / 0.01)
    unclamped = -(torch.xlogy(probs, probs) + torch.xlogy(1 - probs, 1 - probs)).sum(1).mean()
    ours, _ = lfq_entropy(z, 0.01)
    assert abs(ours - unclamped) > 20 * 1e-5 * abs(unclamped)


def test_fp32_is_as_accurate_as_naive_fp32():
    z = latents(128, 10, "mixed")
    truth = naive_entropy(z, 0.01, 1.0)
    ours = lfq_entropy(z.float(), 0.01, 1.0)
    naive32 = naive_entropy(z.float(), 0.01, 1.0)
    for t, o, n in zip(truth, ours, naive32):
        assert o.dtype == torch.float32
        assert abs(o.double() - t) <= max(abs(n.double() - t), 1e-6 * abs(t))


class MaxTensorSize(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("regime", ["uncertain", "sharp"])
def test_never_materialises_positions_times_codes(regime):
    num, bits, chunk = 256, 12, 2 ** 14
    z = latents(num, bits, regime).float().requires_grad_(True)
    with MaxTensorSize() as mode:
        per_sample, avg = lfq_entropy(z, 0.01, max_chunk_elements=chunk)
        (per_sample - avg).backward()
    assert mode.largest <= max(chunk, num * 2 ** (bits // 2), 2 ** bits) * 2
    assert mode.largest < num * 2 ** bits // 16


def _distributed_worker(rank, world_size, init_file, z, out_dir):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    local = z.chunk(world_size)[rank].clone().requires_grad_(True)
    per_sample, avg = lfq_entropy(local, 0.01, 1.0, distributed=True)
    (per_sample - avg).backward()
    torch.save({"avg": avg.detach(), "grad": local.grad}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_distributed_entropy_equals_global_batch(tmp_path):
    z = latents(64, 6, "uncertain").float()
    mp.spawn(_distributed_worker, args=(2, str(tmp_path / "init"), z, str(tmp_path)), nprocs=2)
    full = z.clone().requires_grad_(True)
    per_sample, avg = lfq_entropy(full, 0.01, 1.0)
    (per_sample - avg).backward()
    for rank in range(2):
        out = torch.load(tmp_path / f"rank{rank}.pt")
        assert torch.allclose(out["avg"], avg, rtol=1e-6)
        # each process's loss holds the global average term; after DDP averages parameter gradients over the two
        # processes they equal the single-process gradient of the global-batch loss
        assert torch.allclose(out["grad"] / 2, full.grad.chunk(2)[rank], rtol=1e-4, atol=1e-8)


def test_distributed_flag_is_a_no_op_without_process_group():
    z = latents(32, 6, "mixed").float()
    assert all(torch.equal(a, b) for a, b in zip(lfq_entropy(z, 0.01, distributed=True), lfq_entropy(z, 0.01)))
