"""Throughput of the train stream (decode + random resized crop + flip + batching), in images per second.

    python scripts/benchmark_data.py                          # synthetic 384px JPEG shards, 256px crops, 2 workers
    python scripts/benchmark_data.py --shards 'DIR/imagenet-train-{0000..0252}.tar' --workers 8 --batches 200

Without --shards, writes --num-images synthetic JPEG (quality 95) images of --source-resolution px to a temporary
folder first. The first --warmup batches (worker start-up, shard indexing) are not timed. --compare-webdataset
also times the official pipeline (webdataset ResampledShards -> shuffle -> decode -> torchvision transforms).
"""
import argparse
import tempfile
import time

import torch

from data.loaders import build_train_dataloader
from data.shards import write_synthetic_shards
from utils.config import with_defaults
from utils.errors import run_main


def time_loader(loader, batches: int, warmup: int) -> tuple[float, int]:
    """(seconds for `batches` batches after `warmup` untimed ones, images in them)."""
    iterator = iter(loader)
    for _ in range(warmup):
        next(iterator)
    start, images = time.perf_counter(), 0
    for _ in range(batches):
        images += next(iterator)["image"].shape[0]
    return time.perf_counter() - start, images


def official_loader(pattern: str, resolution: int, batch_size: int, workers: int):
    """The official SimpleImagenet train pipeline (tokenizer transforms), rebuilt for timing only."""
    import webdataset as wds
    from torch.utils.data import default_collate
    from torchvision import transforms as T

    transform = T.Compose([T.RandomResizedCrop(resolution, scale=(0.8, 1.0), ratio=(3 / 4, 4 / 3)),
                           T.RandomHorizontalFlip(), T.ToTensor()])
    pipeline = wds.DataPipeline(
        wds.ResampledShards(pattern), wds.tarfile_to_samples(), wds.shuffle(1000),
        wds.decode(wds.autodecode.ImageHandler("pil", extensions=["webp", "png", "jpg", "jpeg"])),
        wds.rename(image="jpg;png;jpeg;webp", class_id="cls"),
        wds.map(lambda s: {"image": s["image"], "class_id": s["class_id"], "__key__": s["__key__"]}),
        wds.map_dict(image=transform, class_id=int),
        wds.batched(batch_size, partial=False, collation_fn=default_collate))
    return wds.WebLoader(pipeline, batch_size=None, num_workers=workers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", default="", help="train shard pattern (default: make synthetic shards)")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=30, help="timed batches")
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--num-images", type=int, default=512, help="synthetic images to write")
    parser.add_argument("--source-resolution", type=int, default=384, help="synthetic image size")
    parser.add_argument("--compare-webdataset", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        pattern = args.shards
        if not pattern:
            start = time.time()
            pattern = write_synthetic_shards(tmp, args.num_images, 0, args.source_resolution, seed=0,
                                             maxcount=128, image_format="jpg")["train"]
            print(f"wrote {args.num_images} synthetic {args.source_resolution}px JPEGs in {time.time() - start:.1f}s")
        config = with_defaults({"dataset": {"params": {"train_shards_path_or_url": pattern,
                                                       "num_workers_per_gpu": args.workers},
                                            "preprocessing": {"resolution": args.resolution}}})
        rows = [("maskbit TrainStream", build_train_dataloader(config.dataset, args.batch_size, seed=42))]
        if args.compare_webdataset:
            rows.append(("official webdataset pipeline",
                         official_loader(pattern, args.resolution, args.batch_size, args.workers)))
        print(f"\n{'pipeline':<30} {'res':>5} {'workers':>7} {'batch':>5} {'images/s':>9} {'ms/batch':>9}")
        for name, loader in rows:
            seconds, images = time_loader(loader, args.batches, args.warmup)
            print(f"{name:<30} {args.resolution:>5} {args.workers:>7} {args.batch_size:>5} "
                  f"{images / seconds:>9.1f} {1000 * seconds / args.batches:>9.1f}")


if __name__ == "__main__":
    run_main(main, prog="benchmark_data.py")
