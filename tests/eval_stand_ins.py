"""Small stand-ins and checks shared by the evaluation tests (not a test module)."""
import os
import re
import socket

import torch
import torch.nn as nn


class TinyFeatureNet(nn.Module):
    """Inception stand-in: uint8 images -> (features (B,6), logits (B,10)) in float64, fixed random weights."""

    num_features, num_classes, num_spatial_features = 6, 10, 4

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3).double()
        self.fc = nn.Linear(6, 10).double()
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))

    def forward(self, images: torch.Tensor):
        out = self.features(images)
        return out["pool"], out["logits"]

    def features(self, images: torch.Tensor) -> dict:
        """As FIDInceptionV3.features: pool (B,6), spatial (B,4: channel 0 pooled to 2x2), logits (B,10)."""
        assert images.dtype == torch.uint8
        maps = self.conv(images.double() / 255).relu()
        pool = maps.mean((2, 3))
        spatial = torch.nn.functional.adaptive_avg_pool2d(maps[:, :1], 2).flatten(1)
        return {"pool": pool, "spatial": spatial, "logits": self.fc(pool)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_gloo(rank: int, world_size: int, port: int) -> None:
    os.environ.update(OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                         world_size=world_size)


def assert_throughput_line(output: str, processes: int) -> str:
    """The `throughput: ... images/s over N process(es) (... images/s per process; WHAT)` line a script printed;
    returns WHAT."""
    match = re.search(rf"throughput: [0-9.]+ images/s over {processes} process\(es\) \([0-9.]+ images/s per "
                      rf"process; (.*)\)$", output, re.MULTILINE)
    assert match, output[-2000:]
    return match.group(1)


def assert_job_throughput(record: dict, images: int, processes: int, output: str = "") -> None:
    """A script's "throughput" JSON record (`training.throughput.job_throughput`) and, with `output`, its line."""
    assert record["images"] == images and record["num_processes"] == processes, record
    assert record["seconds"] > 0 and record["images_per_sec"] > 0, record
    assert abs(record["images_per_sec_per_process"] * processes / record["images_per_sec"] - 1) < 1e-12, record
    if output:
        assert_throughput_line(output, processes)
