"""Tokenize a train set once: each image stored as several augmented views' token grids plus its label.

    accelerate launch scripts/pretokenize.py config=configs/generator/maskbit_generator_12bit.yaml \
        experiment.vqgan_checkpoint=/models/maskbit_tokenizer_12bit.bin \
        dataset.params.pretokenized_shards_path_or_url=/data/tokens_12bit dataset.params.pretokenize_num_views=4
    python scripts/pretokenize.py config=configs/quickstart/generator_tiny.yaml \
        dataset.params.pretokenized_shards_path_or_url=runs/tokens_tiny
    python scripts/pretokenize.py config=configs/titok/titok_maskgit.yaml \
        experiment.vqgan_checkpoint=/models/tokenizer_titok_b64.bin dataset.params.pretokenized_shards_path_or_url=DIR
                                                          # TiTok: 1D grids (N,) of 12/13-bit tokens

Reads dataset.params.train_shards_path_or_url with the train augmentation of dataset.preprocessing (view v of
image i seeded by training.seed, i, v), encodes with the frozen tokenizer in fp32 (training.per_gpu_batch_size
images per batch), and writes one shard per process plus tokens_meta.json into the output folder. Train on it
with `scripts/train_maskbit.py ... dataset.params.pretokenized_shards_path_or_url=<folder>`.
"""

from data.pretokenize import pretokenize
from training.run_setup import process_state, set_backend_flags
from training.token_source import load_frozen_tokenizer
from utils.config import parse_args_or_exit, to_plain
from utils.errors import MaskbitError, run_main


def main() -> None:
    config = parse_args_or_exit(prog="pretokenize.py")
    state = process_state()
    set_backend_flags(config.training.enable_tf32)  # the same convolution settings as on-the-fly tokens
    tokenizer = load_frozen_tokenizer(config, state.device)
    meta = {"tokenizer": to_plain(config.model.vq_model),
            "tokenizer_checkpoint": str(config.experiment.vqgan_checkpoint)}
    try:
        summary = pretokenize(config.dataset, tokenizer, state, config.training.per_gpu_batch_size,
                              config.training.seed, tokenizer_meta=meta)
    except (FileNotFoundError, FileExistsError, ValueError) as err:  # paths and values of dataset.params
        raise MaskbitError(str(err)) from err
    if state.is_main_process:
        s = summary
        print(f"pretokenize.py: {s['num_images']:,} images ({s['skipped']} unreadable, left out) x {s['num_views']} "
              f"views of {'x'.join(map(str, s['grid']))} {s['token_bits']}-bit tokens in {s['seconds']:.1f} s "
              f"({s['num_images'] / max(s['seconds'], 1e-9):.1f} images/s over {state.num_processes} process(es)); "
              f"{s['bytes'] / 2**20:.1f} MiB in {config.dataset.params.pretokenized_shards_path_or_url}")


if __name__ == "__main__":
    run_main(main, prog="pretokenize.py")
