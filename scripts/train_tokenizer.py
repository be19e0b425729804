"""Train a VQGAN+ / MaskBit tokenizer (Stage I).

    accelerate launch scripts/train_tokenizer.py config=configs/tokenizer/maskbit_tokenizer_12bit.yaml \
        dataset.params.train_shards_path_or_url='DIR/imagenet-train-{0000..0252}.tar' [section.key=value ...]
    python scripts/train_tokenizer.py config=configs/quickstart/tokenizer_tiny.yaml      # CPU smoke run
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 scripts/train_tokenizer.py ...  # 2 CPU procs

(`accelerate launch --cpu --num_processes 2` starts a single process in accelerate 1.x unless mpirun is used.)

Output goes to $WORKSPACE/outputs/<experiment.name> (WORKSPACE defaults to ./runs) or experiment.output_dir;
re-running the same command resumes from the newest complete checkpoint.
"""
from training import trainer_class
from utils.config import parse_args_or_exit
from utils.errors import run_main


def main() -> None:
    config = parse_args_or_exit(prog="train_tokenizer.py")
    trainer_class("tokenizer", config)(config).train()  # the trainer registered for model.vq_model.model_class


if __name__ == "__main__":
    run_main(main, prog="train_tokenizer.py")
