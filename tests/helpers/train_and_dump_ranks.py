"""Run the tokenizer trainer (under `accelerate launch`) and save every rank's final weights to
<output_dir>/rank<r>.pt, so a test can check that all processes hold identical parameters, and the settings each
DistributedDataParallel wrapper runs with to <output_dir>/ddp_rank<r>.json."""
import json
import sys

import torch

from training import TokenizerTrainer
from utils.config import load_config

trainer = TokenizerTrainer(load_config(sys.argv[1:]))
trainer.train()
state = {f"{name}.{k}": v for name in trainer.models for k, v in trainer.unwrap(name).state_dict().items()}
state.update({f"lecam.{k}": v for k, v in trainer.loss_fn.lecam.state_dict().items()})
state.update({f"ema.{k}": v for k, v in trainer.ema.state_dict().items()})
torch.save(state, trainer.output_dir / f"rank{trainer.accelerator.process_index}.pt")
ddp = {name: {"bucket_bytes_cap": model.bucket_bytes_cap, "gradient_as_bucket_view": model.gradient_as_bucket_view}
       for name, model in trainer.models.items() if isinstance(model, torch.nn.parallel.DistributedDataParallel)}
(trainer.output_dir / f"ddp_rank{trainer.accelerator.process_index}.json").write_text(json.dumps(ddp))
