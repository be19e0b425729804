"""Train a MaskBit generator (Stage II) on the tokens of a frozen tokenizer.

    accelerate launch scripts/train_maskbit.py config=configs/generator/maskbit_generator_12bit.yaml \
        experiment.vqgan_checkpoint=/models/maskbit_tokenizer_12bit.bin \
        dataset.params.train_shards_path_or_url='DIR/imagenet-train-{0000..0252}.tar' [section.key=value ...]
    python scripts/train_maskbit.py config=configs/quickstart/generator_tiny.yaml      # CPU smoke run

Tokens come from the train images, tokenized every step (official), or from a token folder written by
scripts/pretokenize.py (dataset.params.pretokenized_shards_path_or_url=DIR). Output goes to
$WORKSPACE/outputs/<experiment.name> (WORKSPACE defaults to ./runs) or experiment.output_dir; re-running the
same command resumes from the newest complete checkpoint.
"""
from training import trainer_class
from utils.config import parse_args_or_exit
from utils.errors import run_main


def main() -> None:
    config = parse_args_or_exit(prog="train_maskbit.py")
    trainer_class("generator", config)(config).train()  # the trainer registered for the config's generator class


if __name__ == "__main__":
    run_main(main, prog="train_maskbit.py")
