"""Throughput of the train stream (decode + random resized crop + flip + batching), in images per second.

    python scripts/benchmark_data.py                          # synthetic 384px JPEG shards, 256px crops, 2 workers
    python scripts/benchmark_data.py --shards 'DIR/imagenet-train-{0000..0252}.tar' --workers 8 --batches 200

Without --shards, writes --num-images synthetic JPEG (quality 95) images of --source-resolution px to a temporary
folder first. The first --warmup batches (worker start-up, shard indexing) are not timed. --compare-webdataset
also times the official pipeline (webdataset ResampledShards -> shuffle -> decode -> torchvision transforms).

    python scripts/benchmark_data.py --compare-decoders /work/shared/data/imagenet-samples --resolution 256

--compare-decoders DIR compares, per core (one thread, no workers) on the JPEG files of DIR, the PIL path of
`data.transforms` (decode, antialiased PIL resize of the shorter side, center crop; and a random resized crop)
with the tensor path (torchvision.io.decode_jpeg, torchvision's antialiased tensor resize, same crops): images/s
of each and the max / mean absolute pixel difference (uint8 levels) between their outputs.
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


def compare_decoders(folder: str, resolution: int, repeats: int = 3) -> None:
    """Images/s per core of the PIL and tensor decode + resize paths on the JPEGs of `folder`, and their pixel
    differences (the tensor path could replace PIL only with a max difference <= 1 level)."""
    from pathlib import Path

    import torchvision.transforms.functional as TF
    from torchvision.io import ImageReadMode, decode_jpeg
    from torchvision.transforms import InterpolationMode

    from data.transforms import EvalTransform, TrainTransform, decode_image, pil_to_uint8

    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    if not files:
        raise SystemExit(f"no .jpg/.jpeg files in {folder}")
    blobs = [p.read_bytes() for p in files]
    eval_pil, train_pil = EvalTransform(resolution), TrainTransform(resolution)
    bilinear = InterpolationMode.BILINEAR

    def crops(seed):  # the same random resized crop parameters for both paths
        images = [decode_image(b) for b in blobs]
        return [train_pil.crop_params(im.width, im.height, torch.Generator().manual_seed(seed + i))
                for i, im in enumerate(images)]

    params = crops(0)

    def pil_eval(data, _):
        return eval_pil(decode_image(data))

    def pil_train(data, crop):
        return pil_to_uint8(TF.resized_crop(decode_image(data), *crop, [resolution, resolution], bilinear))

    def tensor_decode(data):
        return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)

    def tensor_eval(data, _):
        image = TF.resize(tensor_decode(data), resolution, bilinear, antialias=True)
        return TF.center_crop(image, resolution)

    def tensor_train(data, crop):
        return TF.resized_crop(tensor_decode(data), *crop, [resolution, resolution], bilinear, antialias=True)

    print(f"\n{len(blobs)} JPEGs of {folder}, {resolution}px, 1 thread")
    print(f"{'transform':<22}{'PIL img/s':>10}{'tensor img/s':>14}{'max |diff|':>11}{'mean |diff|':>12}"
          f"{'  decode-only max |diff|':>24}")
    decode_diff = max((pil_to_uint8(decode_image(b)).int() - tensor_decode(b).int()).abs().max().item() for b in blobs)
    for name, pil_fn, tensor_fn in (("eval (resize + crop)", pil_eval, tensor_eval),
                                    ("train (resized crop)", pil_train, tensor_train)):
        rates, outputs = [], []
        for fn in (pil_fn, tensor_fn):
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                out = [fn(b, c) for b, c in zip(blobs, params)]
                best = min(best, time.perf_counter() - start)
            rates.append(len(blobs) / best)
            outputs.append(out)
        diffs = [(a.int() - b.int()).abs() for a, b in zip(*outputs)]
        max_diff = max(d.max().item() for d in diffs)
        mean_diff = sum(d.float().mean().item() for d in diffs) / len(diffs)
        print(f"{name:<22}{rates[0]:>10.1f}{rates[1]:>14.1f}{max_diff:>11}{mean_diff:>12.3f}{decode_diff:>24}")


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
    parser.add_argument("--compare-decoders", default="", metavar="DIR",
                        help="compare PIL vs torchvision.io decode + resize on the JPEGs of DIR, then exit")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.compare_decoders:
        compare_decoders(args.compare_decoders, args.resolution)
        return

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
