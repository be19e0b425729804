"""Write FID reference statistics (mu, sigma of the 2048-d Inception pool features) of a data set.

    python scripts/compute_fid_stats.py config=CONFIG --split train --output train_stats.npz
    accelerate launch --num_processes 8 scripts/compute_fid_stats.py config=CONFIG \
        dataset.params.source=image_folder dataset.params.train_shards_path_or_url=/data/imagenet/train \
        --split train --output train_imagenet256_stats.npz

Images come from the data readers (webdataset shards or an image folder, per dataset.params.source) with the
eval transform (shorter side resized to dataset.preprocessing.resolution, center crop), each read once over all
processes. The .npz has the keys `mu`, `sigma` of the official `train_imagenet256_stats.npz`, ADM's spatial
(sFID) statistics `mu_s`, `sigma_s`, and says what it is: `source`, `split`, `count`, `resolution` and `what`
(gfid-reference for the train split, rfid-reference for the eval split; evaluation/protocol.py). Note that
published gFID numbers use the ADM suite's reference batch, whose preprocessing differs slightly from ours.
"""
from __future__ import annotations

import argparse
import sys

import torch
from tqdm import tqdm

from data.loaders import build_eval_dataloader
from evaluation import GaussianStats, save_fid_stats, to_uint8
from evaluation.builders import inception_from_config
from evaluation.protocol import GFID_REFERENCE, RFID_REFERENCE
from training.run_setup import process_state
from utils.config import ConfigError, parse_args_or_exit
from utils.errors import run_main


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="where to write the .npz (keys mu, sigma)")
    parser.add_argument("--split", choices=("train", "eval"), default="train",
                        help="read dataset.params.train_shards_path_or_url or eval_shards_path_or_url")
    parser.add_argument("--batch-size", type=int, default=None, help="default: evaluation.batch_size")
    args, overrides = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    config = parse_args_or_exit(overrides, prog="compute_fid_stats.py")
    if args.split == "train":  # read the train source with the ordered, read-once eval stream
        config.dataset.params.eval_shards_path_or_url = config.dataset.params.train_shards_path_or_url
    if not config.evaluation.compute_inception:
        raise ConfigError("evaluation.compute_inception=false leaves nothing to compute")

    state = process_state()
    inception = inception_from_config(config, state.device)
    loader = build_eval_dataloader(config.dataset, args.batch_size or config.evaluation.batch_size,
                                   state.process_index, state.num_processes)
    stats = GaussianStats(inception.num_features, state.device)
    spatial = GaussianStats(inception.num_spatial_features, state.device)
    with torch.no_grad():
        for batch in tqdm(loader, desc="Inception features", unit="batch", disable=not state.is_main_process):
            feats = inception.features(to_uint8(batch["image"].to(state.device)))
            stats.update(feats["pool"])
            spatial.update(feats["spatial"])
    stats.all_reduce()
    spatial.all_reduce()
    result = {"mu": stats.mean(), "sigma": stats.covariance(), "count": int(stats.count)}
    if state.is_main_process:
        save_fid_stats(args.output, result["mu"], result["sigma"], mu_s=spatial.mean(), sigma_s=spatial.covariance(),
                       source=str(config.dataset.params.eval_shards_path_or_url), split=args.split, count=result["count"],
                       resolution=config.dataset.preprocessing.resolution,
                       what=GFID_REFERENCE if args.split == "train" else RFID_REFERENCE)
        print(f"wrote {args.output}: statistics of {result['count']} images ({args.split} split)")
    state.wait_for_everyone()
    return result


if __name__ == "__main__":
    run_main(main, prog="compute_fid_stats.py")
