"""Run the generator trainer (under `accelerate launch`) and save every rank's final generator weights to
<output_dir>/rank<r>.pt, so a test can check that all processes hold identical parameters."""
import sys

import torch

from training.generator_trainer import GeneratorTrainer
from utils.config import load_config

trainer = GeneratorTrainer(load_config(sys.argv[1:]))
trainer.train()
torch.save(trainer.unwrap("generator").state_dict(), trainer.output_dir / f"rank{trainer.accelerator.process_index}.pt")
