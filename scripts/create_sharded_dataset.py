"""Convert an ImageNet-layout folder into webdataset shards (the official `create_sharded_dataset.py` format).

    python scripts/create_sharded_dataset.py --data_root /data/imagenet --split train --output /data/imagenet_shards

Reads DATA_ROOT/SPLIT/<wnid>/*.JPEG (the val split must also be in per-class folders) and writes
OUTPUT/SPLIT/imagenet-SPLIT-%04d.tar: `<key>.cls` = index of the wnid among the sorted class folders,
`<key>.jpg` = the file's bytes unchanged (no re-encoding; a file whose content is PNG/WebP gets that extension).
Files are shuffled with a seeded RNG (the official script's shuffle is unseeded), keys are the 7-digit position
in that order (or the file stem with --filekey). Every file is fully decoded first (in parallel); one that is
not a readable image is reported and left out.
"""
import argparse
import io
import multiprocessing
import os
import random
import time

from PIL import Image
from tqdm import tqdm


from data.shards import ShardWriter, brace_pattern
from utils.errors import MaskbitError, run_main

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".webp")
FORMAT_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


def list_images(split_dir: str) -> tuple[list[str], list[tuple[str, int]]]:
    """(sorted class folder names, [(path, class id)]) of split_dir/<class>/<image>."""
    if not os.path.isdir(split_dir):
        raise MaskbitError(f"'{split_dir}' does not exist; expected DATA_ROOT/SPLIT/<wnid>/*.JPEG")
    classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir())
    files = []
    for class_id, name in enumerate(classes):
        folder = os.path.join(split_dir, name)
        files.extend((os.path.join(folder, f), class_id) for f in sorted(os.listdir(folder))
                     if f.lower().endswith(IMAGE_SUFFIXES))
    if not files:
        raise MaskbitError(f"no images found in the class folders of '{split_dir}'")
    return classes, files


def read_checked(path: str) -> tuple[bytes, str]:
    """(file bytes, member extension), or (b'', error message) when the file is not a decodable image."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        with Image.open(io.BytesIO(data)) as image:
            fmt = image.format
            if fmt == "JPEG":
                image.draft("RGB", (image.width // 8, image.height // 8))  # DCT-scaled decode: fast, still complete
            image.load()
        if fmt not in FORMAT_EXTENSIONS:
            return b"", f"unsupported image format {fmt}"
        return data, FORMAT_EXTENSIONS[fmt]
    except Exception as err:  # unreadable file of any kind
        return b"", f"{type(err).__name__}: {err}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_root", required=True, help="folder holding SPLIT/<wnid>/*.JPEG")
    parser.add_argument("--split", required=True, choices=("train", "val"))
    parser.add_argument("--output", required=True, help="shards go to OUTPUT/SPLIT/")
    parser.add_argument("--seed", type=int, default=0, help="seed of the file-order shuffle")
    parser.add_argument("--maxcount", type=int, default=5079, help="samples per shard")
    parser.add_argument("--maxsize", type=float, default=1e9, help="bytes per shard")
    parser.add_argument("--filekey", action="store_true", help="use the file stem as the sample key")
    parser.add_argument("--num_classes", type=int, default=None,
                        help="the model's class count: refuse class ids >= it (more class folders than classes)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes checking images")
    args = parser.parse_args()

    start = time.time()
    classes, files = list_images(os.path.join(args.data_root, args.split))
    if args.num_classes is not None and len(classes) > args.num_classes:
        raise MaskbitError(f"'{os.path.join(args.data_root, args.split)}' has {len(classes)} class folders, more than "
                           f"--num_classes={args.num_classes}: class ids would reach {len(classes) - 1}")
    random.Random(args.seed).shuffle(files)
    out_dir = os.path.join(args.output, args.split)
    skipped = 0
    with multiprocessing.Pool(max(1, args.workers)) as pool, ShardWriter(out_dir, args.split, args.maxcount,
                                                                         args.maxsize, args.num_classes) as writer:
        checked = pool.imap(read_checked, (path for path, _ in files), chunksize=16)
        for position, ((path, class_id), (data, ext)) in enumerate(tqdm(zip(files, checked), total=len(files))):
            if not data:
                skipped += 1
                tqdm.write(f"skipping {path}: {ext}")
                continue
            key = os.path.splitext(os.path.basename(path))[0] if args.filekey else f"{position:07d}"
            writer.write(key, data, class_id, ext=ext)
    written = len(files) - skipped
    print(f"{args.split}: {len(files)} files, {written} samples, {len(classes)} classes, {skipped} skipped, "
          f"{len(writer.paths)} shards in {time.time() - start:.0f}s")
    if writer.paths:
        print(f"pattern: {brace_pattern(out_dir, args.split, len(writer.paths))}")
    stale = [f for f in os.listdir(out_dir) if f.endswith(".tar") and os.path.join(out_dir, f) not in writer.paths]
    if stale:
        print(f"warning: {len(stale)} other .tar files in {out_dir} (e.g. {stale[0]}) are from an earlier run")


if __name__ == "__main__":
    run_main(main, prog="create_sharded_dataset.py")
