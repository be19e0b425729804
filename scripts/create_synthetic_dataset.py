"""Write a synthetic class-conditional dataset (data/synthetic.py) as webdataset shards.

    python scripts/create_synthetic_dataset.py --output data_synth --num-train 5000 --num-val 500 --resolution 64

Writes OUTPUT/train/imagenet-train-%04d.tar and OUTPUT/val/imagenet-val-%04d.tar (lossless PNG images unless
--format jpg, which writes JPEG quality 95) and prints the brace patterns to put in a config.
"""
import argparse
import time


from data.shards import write_synthetic_shards
from utils.errors import run_main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="output directory (train/ and val/ are created inside)")
    parser.add_argument("--num-train", type=int, default=10_000)
    parser.add_argument("--num-val", type=int, default=1_000)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--maxcount", type=int, default=5079, help="samples per shard")
    parser.add_argument("--format", choices=("png", "jpg"), default="png", help="png (lossless) or jpg (quality 95)")
    args = parser.parse_args()
    if args.num_train < 0 or args.num_val < 0:
        parser.error("--num-train and --num-val must be >= 0")

    start = time.time()
    patterns = write_synthetic_shards(args.output, args.num_train, args.num_val, args.resolution, args.seed,
                                      args.num_classes, args.maxcount, args.format)
    print(f"wrote {args.num_train} train + {args.num_val} val images ({args.resolution}px {args.format}, "
          f"{args.num_classes} classes) in {time.time() - start:.1f}s")
    for split, key in (("train", "train_shards_path_or_url"), ("val", "eval_shards_path_or_url")):
        if split in patterns:
            print(f"dataset.params.{key}={patterns[split]}")
    print(f"model.mlm_model.num_classes={args.num_classes}")


if __name__ == "__main__":
    run_main(main, prog="create_synthetic_dataset.py")
