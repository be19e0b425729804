"""The training loop shared by the Stage-I tokenizer and Stage-II generator trainers.

A subclass implements
    build()             create models, optimizers and LR schedulers and hand them to `register(...)`
    train_step(batch)   one micro-batch (runs inside `accelerator.accumulate`); returns detached scalar loss terms
and may override `visualize(batch)`, `evaluate()`, `extra_logs()` and `flops_per_sample()` (for MFU).

The base class owns the rest: the output directory (one writer at a time: `training.run_lock`; its run identity,
`run.json` and the merged `config.yaml`, written once the run has started: `training.run_identity`), logging (log file, tensorboard/wandb,
`metrics.jsonl`, tqdm), the deterministic data stream restarted at `global_step * accumulation` batches on resume,
EMA of the main model, clipping/stepping via `optimizer_step(name)`, the non-finite-loss guard, periodic
checkpoints (`training.checkpoint`; a checkpoint that does not load is moved to corrupt-checkpoint-<step> and the
next older one is used), exact resume / warm start (the config's lr, schedule and weight decay apply unless
experiment.resume_optimizer_hparams=checkpoint), and the final export of the (EMA) weights to
`<output_dir>/pytorch_model.bin` in the released plain-state-dict format, and as `<output_dir>/model.safetensors`.

Fast paths (config flags, applied in `register`; docs in README "Fast paths"): `training.compile` (torch.compile of
each trained model's forward, eager fallback with one warning), `training.gradient_checkpointing` (models with
`modeling.recompute` stages). The log names once the attention kernel (SDPA backend) the main model gets, and every
log line gives images/s (tokens/s for Stage II), the share of the step spent waiting for data (warned about once
above 20%) and, on CUDA devices of known peak, MFU (`training.throughput`).
"""
from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Iterator, Mapping, Optional

import torch
from tqdm.auto import tqdm

from data.shards import ClassIdError
from modeling.recompute import set_gradient_checkpointing
from training.checkpoint import (CheckpointManager, CheckpointNotFoundError, is_complete_checkpoint,
                                 list_checkpoints)
from training.ema import EMAModel
from training.lr_schedule import apply_resume_hparams, configured_hparams
from training.metrics import MetricsLogger, WindowMeans
from training.nonfinite import NonFiniteGuard, NonFiniteLossError
from training.run_identity import plan_run, record_start
from training.run_lock import RunLock
from training.run_setup import build_accelerator, setup_file_logging
from training.run_validation import validate_training_config
from training.throughput import DATA_WAIT_WARNING, Throughput, data_wait_advice, peak_flops
from utils.atomic import atomic_save_safetensors, atomic_torch_save
from utils.compile import compile_forward
from utils.config import as_config, to_plain
from utils.errors import MaskbitError
from utils.run_layout import (CORRUPT_PREFIX, METADATA_FILE, WEIGHTS_BIN, WEIGHTS_SAFETENSORS, checkpoint_name,
                              resolve_output_dir)


class Trainer:
    main_loss = "total_loss"  # the train_step log entry shown in the progress bar and log lines
    tokens_per_sample = 0  # Stage II: tokens per image, for the tokens/s of the logs (0: not logged)

    def __init__(self, config):
        self.config = cfg = as_config(config)
        validate_training_config(cfg)
        init = cfg.experiment.init_checkpoint
        if init and not is_complete_checkpoint(Path(init)):
            raise CheckpointNotFoundError(
                f"experiment.init_checkpoint='{init}' is not a checkpoint folder (expected a checkpoint-<step> folder "
                f"with {METADATA_FILE} written by this trainer). Fix the path, or set experiment.init_checkpoint='' to "
                f"train from scratch.")
        self.output_dir = resolve_output_dir(cfg)
        self.accelerator = acc = build_accelerator(cfg, self.output_dir)
        self.lock = RunLock(self.output_dir).acquire() if acc.is_main_process else None
        try:
            self._setup()
        except BaseException:
            self.release()
            raise

    def _setup(self) -> None:
        cfg, acc = self.config, self.accelerator
        self.run_plan = plan_run(self.output_dir, cfg)  # reads only: a run that cannot continue stops here
        acc.wait_for_everyone()
        if acc.is_main_process:
            self.run_plan.apply()
        acc.wait_for_everyone()
        self.logger = setup_file_logging(self.output_dir, acc.is_main_process)
        self.device = acc.device
        self.global_step = 0
        self.models: dict[str, torch.nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
        self.buffers: dict[str, torch.nn.Module] = {}
        self.main_model = ""
        self.ema: Optional[EMAModel] = None
        self.guard = NonFiniteGuard(acc)
        self.window = WindowMeans()
        self.metrics = MetricsLogger(acc, self.output_dir)
        self.checkpoints = CheckpointManager(self.output_dir, acc, cfg.experiment.keep_last)
        self.build()
        self._init_trackers()
        if self.lock is not None and self.lock.stale_holder:
            self.logger.warning(f"Took over the stale lock of a run that ended without releasing it: "
                                f"{self.lock.stale_holder}")
        if self.run_plan.moved_to is not None:
            self.logger.info(f"experiment.overwrite: moved the previous run to {self.run_plan.moved_to}")

    def release(self) -> None:
        """Give up the output folder's lock (at the end of `train`, on errors; also on interpreter exit)."""
        if getattr(self, "lock", None) is not None:
            self.lock.release()
            self.lock = None

    # ----------------------------------------------------------------------------------- subclass interface
    def build(self) -> None:
        raise NotImplementedError

    def train_step(self, batch: Mapping) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def visualize(self, batch: Mapping) -> None:
        """Called every `experiment.generate_every` steps on every process (save images on the main one)."""

    def evaluate(self) -> None:
        """Called every `experiment.eval_every` steps on every process."""

    def extra_logs(self) -> dict[str, float]:
        """Extra scalars for each log step (called on every process: collectives are allowed)."""
        return {}

    def flops_per_sample(self) -> Optional[float]:
        """Training FLOPs of the main model per sample (forward + backward), for MFU; None: not reported."""
        return None

    # ------------------------------------------------------------------------------------------- helpers
    def register(self, main_model: str, models: Mapping, optimizers: Mapping, schedulers: Mapping,
                 buffers: Optional[Mapping] = None) -> None:
        """Declare what is trained and checkpointed. Models/optimizers must already be `accelerator.prepare`d;
        schedulers are NOT prepared (they step once per optimizer step, see `training.lr_schedule`). `buffers`:
        modules whose state (e.g. LeCAM EMAs) is part of the training state. Creates the EMA of `main_model`."""
        self.main_model = main_model
        self.models, self.optimizers, self.schedulers = dict(models), dict(optimizers), dict(schedulers)
        # accelerate's unwrap_model walks the wrapper's modules on every call (~0.5 ms): once per model here
        self._unwrapped = {name: self.accelerator.unwrap_model(model) for name, model in self.models.items()}
        self.buffers = {k: v for k, v in (buffers or {}).items() if v is not None}
        if self.config.training.use_ema:
            self.ema = EMAModel(self.unwrap(main_model), max_decay=self.config.training.ema_decay)
        self._apply_fast_paths()  # after the EMA copy: it stays a plain eager module

    def _apply_fast_paths(self) -> None:
        cfg = self.config.training
        main = self.unwrap(self.main_model)
        if cfg.gradient_checkpointing and not set_gradient_checkpointing(main, True):
            raise MaskbitError(f"training.gradient_checkpointing=true is not supported by the "
                               f"{type(main).__name__} ({self.main_model}): it has no recomputable stages "
                               f"(modeling.recompute); set it to false.")
        if cfg.compile:
            for name in self.models:
                compile_forward(self.unwrap(name), f"the {name} forward")
        self._log_attention_backend(main)

    def _log_attention_backend(self, model: torch.nn.Module) -> None:
        """Say once which SDPA kernel the main model's attention gets on this device (MATH = unfused fallback)."""
        from modeling.cpu_bf16 import kernel_dtype
        from modeling.transformer import SelfAttention, sdpa_backend
        attention = next((m for m in model.modules() if isinstance(m, SelfAttention)), None)
        if attention is None:
            return
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.config.training.mixed_precision,
                                                                      torch.float32)
        heads, dim = attention.heads, attention.in_proj_weight.shape[1]
        seq_len = getattr(model, "seq_len", 256) + 1
        kernel = kernel_dtype(self.device.type, dtype, needs_grad=True)  # a CPU runs bf16 attention in float32
        backend = sdpa_backend(self.device, kernel, heads, dim // heads, seq_len, attention.dropout)
        upcast = " under bf16 autocast" if kernel != dtype else ""
        where = f"{self.device.type} {str(kernel).replace('torch.', '')}{upcast}, attention dropout {attention.dropout}"
        message = f"Attention: scaled_dot_product_attention uses the {backend} kernel ({where})"
        if backend == "MATH" and self.device.type == "cuda":
            self.logger.warning(message + ": the unfused fallback (slow, memory-hungry). Flash / memory-efficient "
                                "kernels need bf16/fp16 (training.mixed_precision=bf16) and supported head sizes.")
        else:
            self.logger.info(message + (" (fused CPU kernel)" if backend == "FLASH_ATTENTION" and
                                        self.device.type == "cpu" else ""))

    def unwrap(self, name: str) -> torch.nn.Module:
        """The plain module of model `name` (without the DDP / compile wrappers of `accelerator.prepare`)."""
        return self._unwrapped[name]

    def optimizer_step(self, name: str) -> None:
        """Clip, step, advance the LR schedule and zero grads of model `name` (no-ops while accumulating)."""
        acc, max_norm = self.accelerator, self.config.training.max_grad_norm
        optimizer = self.optimizers[name]
        if acc.sync_gradients and max_norm and max_norm > 0:
            norm = acc.clip_grad_norm_(self.models[name].parameters(), max_norm)
            if acc.scaler is None and torch.is_tensor(norm):  # under fp16 an inf norm is a skipped step, not a fault
                self.guard.observe(self.global_step + 1, {f"grad_norm/{name}": norm})
        optimizer.step()
        if acc.sync_gradients:
            if not getattr(optimizer, "step_was_skipped", False):  # fp16 overflow: keep the schedule in place
                self.schedulers[name].step()
            if acc.is_main_process and (self.global_step + 1) % self.config.experiment.log_grad_norm_every == 0:
                self._log_grad_norms(name)
        optimizer.zero_grad(set_to_none=True)

    def train_batches(self, start_batch: int) -> Iterator[Mapping]:
        """The training stream from batch `start_batch` on, exactly as if that many batches had been consumed."""
        from data import build_train_dataloader
        acc, cfg = self.accelerator, self.config

        def loader(start: int):
            return build_train_dataloader(cfg.dataset, cfg.training.per_gpu_batch_size, cfg.training.seed,
                                          acc.process_index, acc.num_processes, start)

        if not cfg.training.overfit_batch:
            stream = loader(start_batch)
            self._train_dataset = stream.dataset
            return iter(stream)
        n = cfg.training.overfit_batch_num
        stream = loader(0)
        self._train_dataset = stream.dataset
        fixed = list(itertools.islice(iter(stream), n))
        return (fixed[i % n] for i in itertools.count(start_batch))

    # ---------------------------------------------------------------------------------------------- loop
    def train(self) -> None:
        try:
            self._train()
        finally:
            self.release()

    def _train(self) -> None:
        cfg, acc = self.config, self.accelerator
        resumed = self.resume()
        accumulation = cfg.training.gradient_accumulation_steps
        rng = torch.get_rng_state() if resumed else None
        batches = self.train_batches(start_batch=self.global_step * accumulation)
        if rng is not None:  # creating a DataLoader iterator draws a seed from the global RNG; the run that wrote the
            torch.set_rng_state(rng)  # checkpoint drew it before, so a resumed run must not draw it again (dropout)
        for model in self.models.values():
            model.train()
        self.logger.info(f"Training from step {self.global_step} to {cfg.training.max_train_steps}: "
                         f"{acc.num_processes} process(es) x {cfg.training.per_gpu_batch_size} images x "
                         f"{accumulation} accumulation step(s), output in {self.output_dir}")
        progress = tqdm(total=cfg.training.max_train_steps, initial=self.global_step, dynamic_ncols=True,
                        disable=not acc.is_main_process)
        self._window_start, self._window_steps, self._data_time = time.perf_counter(), 0, 0.0
        self._windows_logged, self._data_wait_warned = 0, False
        first_batch = True
        while self.global_step < cfg.training.max_train_steps:
            self.guard.check_due()  # earlier steps' losses: each iteration on one process, every 10th with more
            start = time.perf_counter()
            batch = next(batches)
            if first_batch:
                self.check_first_batch(batch)
                self._record_start()
                first_batch = False
            self._data_time += time.perf_counter() - start
            with acc.accumulate(*self.models.values()):
                logs = self.train_step(batch)
            self.window.add(logs)
            self.guard.observe(self.global_step + 1, logs)
            if not acc.sync_gradients:
                continue
            if self.ema is not None:
                self.ema.update(self.unwrap(self.main_model))
            self.global_step += 1
            self._window_steps += 1
            progress.update(1)
            self._periodic(batch, progress)
        progress.close()
        if first_batch:  # resumed at the last step: nothing trained, the run still (re)started
            self._record_start()
        self.logger.info(f"Training reached step {self.global_step}: {self.num_skipped_samples()} unreadable "
                         f"sample(s) skipped on this process")
        self.save_checkpoint()
        self.export_weights()
        acc.end_training()

    def _record_start(self) -> None:
        """The run has started (built, resumed, first batch read and checked): only now are config.yaml and run.json
        written, so a launch that fails earlier leaves the folder as it was."""
        if not self.accelerator.is_main_process:
            return
        record = record_start(self.output_dir, self.config, self.run_plan, self.global_step)
        for key, (before, now) in self.run_plan.changes.items():
            self.logger.info(f"Config change on resume: {key}: {before!r} -> {now!r} (recorded in run.json)")
        self.logger.info(f"Run {record['run_id']} (config hash {record['config_hash']}, code "
                         f"{record['history'][-1]['code_version']})")

    def check_first_batch(self, batch: Mapping) -> None:
        """Inputs the model cannot take, found on the first batch instead of as an index error deep inside: class ids
        outside [0, num_classes) of a class-conditional main model."""
        classes = getattr(self.unwrap(self.main_model), "num_classes", None)
        ids = batch.get("class_id") if isinstance(batch, Mapping) else None
        if not isinstance(classes, int) or not torch.is_tensor(ids):
            return
        bad = ids[(ids < 0) | (ids >= classes)]
        if len(bad):
            raise ClassIdError(
                f"The first training batch has class id(s) {sorted(set(bad.tolist()))[:5]} outside [0, {classes}) "
                f"of the {self.main_model} (its num_classes is {classes}). Fix the labels of the training data, or "
                f"the model's class count in the config.")

    def num_skipped_samples(self) -> int:
        """Unreadable training samples skipped so far by this process's data stream (all its workers)."""
        return int(getattr(getattr(self, "_train_dataset", None), "num_skipped", 0))

    def _epoch_of(self, step: int) -> float:
        cfg = self.config
        global_batch = (cfg.training.per_gpu_batch_size * cfg.training.gradient_accumulation_steps
                        * self.accelerator.num_processes)
        return step * global_batch / cfg.experiment.max_train_examples

    def _periodic(self, batch: Mapping, progress) -> None:
        step, every = self.global_step, self.config.experiment
        if int(self._epoch_of(step)) > int(self._epoch_of(step - 1)):
            self.logger.info(f"Epoch {int(self._epoch_of(step))} finished at step {step} "
                             f"(experiment.max_train_examples={every.max_train_examples}): "
                             f"{self.num_skipped_samples()} unreadable sample(s) skipped so far on this process")
        if step % every.log_every == 0:
            self._log(progress)
        start = time.perf_counter()
        if step % every.save_every == 0:
            self.save_checkpoint()
        if step % every.generate_every == 0:
            self.visualize(batch)
        if step % every.eval_every == 0:
            self.evaluate()
        self._window_start += time.perf_counter() - start  # samples/s measures training, not this

    # ------------------------------------------------------------------------------------------- logging
    def _init_trackers(self) -> None:
        cfg = self.config
        kwargs = {}
        if cfg.experiment.logger == "wandb":
            kwargs = {"wandb": {"name": cfg.experiment.name, "dir": str(self.output_dir / "logs"),
                                "config": to_plain(cfg)}}
        self.accelerator.init_trackers(cfg.experiment.project, init_kwargs=kwargs)

    def _log(self, progress) -> None:
        cfg, acc = self.config, self.accelerator
        scalars = {f"train/{k}": v for k, v in self.window.pop(acc).items()}
        for name, scheduler in self.schedulers.items():
            scalars[f"lr/{name}"] = scheduler.get_last_lr()[0]
        scalars["lr"] = self.schedulers[self.main_model].get_last_lr()[0]
        elapsed = time.perf_counter() - self._window_start
        meter = Throughput(cfg.training.per_gpu_batch_size * cfg.training.gradient_accumulation_steps,
                           acc.num_processes, self.tokens_per_sample)
        peak = peak_flops(self.device, cfg.training.mixed_precision, cfg.training.enable_tf32)
        if peak is not None and not hasattr(self, "_flops_per_sample"):
            self._flops_per_sample = self.flops_per_sample()
        scalars.update(meter.scalars(self._window_steps, elapsed, self._data_time,
                                     getattr(self, "_flops_per_sample", None), peak))
        self._warn_data_wait(scalars["perf/data_wait_fraction"])
        scalars["epoch"] = self._epoch_of(self.global_step)
        scalars["data/skipped_samples"] = self.num_skipped_samples()
        scalars.update(self.extra_logs())
        self.metrics.log(self.global_step, scalars)
        key = f"train/{self.main_loss}"
        key = key if key in scalars else next((k for k in scalars if k.startswith("train/")), key)
        loss = scalars.get(key, float("nan"))
        self.logger.info(f"step {self.global_step}: loss {loss:.4f} lr {scalars['lr']:.3e} "
                         f"{self._perf_summary(scalars)} | " + " ".join(
                             f"{k[6:]} {v:.4g}" for k, v in scalars.items() if k.startswith("train/")))
        progress.set_postfix(loss=f"{loss:.4f}", lr=f"{scalars['lr']:.2e}")
        self._window_start, self._window_steps, self._data_time = time.perf_counter(), 0, 0.0

    @staticmethod
    def _perf_summary(scalars: Mapping[str, float]) -> str:
        """`12.3 images/s (6.2/process) 3150 tokens/s, data wait 4%, MFU 31.0%` (tokens and MFU where known)."""
        text = (f"{scalars['perf/images_per_sec']:.1f} images/s "
                f"({scalars['perf/images_per_sec_per_process']:.1f}/process)")
        if "perf/tokens_per_sec" in scalars:
            text += f" {scalars['perf/tokens_per_sec']:.0f} tokens/s"
        text += f", data wait {scalars['perf/data_wait_fraction']:.0%}"
        if "perf/mfu" in scalars:
            text += f", MFU {scalars['perf/mfu']:.1%}"
        return text

    def _warn_data_wait(self, fraction: float) -> None:
        """Once per run (main process), from the second log window on (the first includes the workers' start-up)."""
        self._windows_logged += 1
        if not self.accelerator.is_main_process or self._data_wait_warned or self._windows_logged < 2 or fraction <= DATA_WAIT_WARNING:
            return
        self._data_wait_warned = True
        self.logger.warning(data_wait_advice(fraction, self.config.dataset.params.num_workers_per_gpu,
                                             self.tokens_per_sample > 0))

    def log_image(self, key: str, grid: torch.Tensor) -> None:
        """Send a (3, H, W) uint8 image grid to the tracker (main process only)."""
        if not self.accelerator.is_main_process:
            return
        if self.config.experiment.logger == "wandb":
            self.accelerator.get_tracker("wandb").log_images({key: [grid.permute(1, 2, 0).numpy()]},
                                                             step=self.global_step)
        else:
            self.accelerator.get_tracker("tensorboard").log_images({key: grid[None]}, step=self.global_step)

    def _log_grad_norms(self, name: str) -> None:
        norms = {f"grad_norm/{name}/{k}": (p.grad.detach().norm(p=2) / p.grad.numel()).item()
                 for k, p in self.unwrap(name).named_parameters() if p.grad is not None}
        self.accelerator.log(norms, step=self.global_step + 1)

    # ------------------------------------------------------------------------------------------- state
    def save_checkpoint(self) -> Path:
        """Write checkpoint-<global_step> (after making sure no loss, gradient norm or parameter went non-finite)."""
        self.guard.check()
        self._check_finite_parameters()
        existing = self.output_dir / checkpoint_name(self.global_step)
        if is_complete_checkpoint(existing):  # e.g. the final save right after a periodic one
            return existing
        scaler = self.accelerator.scaler
        training_state = {
            "models": {n: self.unwrap(n).state_dict() for n in self.models if n != self.main_model},
            "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
            "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
            "buffers": {n: m.state_dict() for n, m in self.buffers.items()},
            "scaler": scaler.state_dict() if scaler is not None else None,
        }
        ema_state = self.ema.state_dict() if self.ema is not None else None
        path = self.checkpoints.save(self.global_step, self.unwrap(self.main_model).state_dict(), training_state,
                                     ema_state)
        self.logger.info(f"Saved {path}")
        return path

    def _check_finite_parameters(self) -> None:
        modules = {name: self.unwrap(name) for name in self.models}
        if self.ema is not None:
            modules["EMA"] = self.ema.module
        for name, module in modules.items():
            params = [p.detach() for p in module.parameters()]
            if params and not bool(torch.stack([p.isfinite().all() for p in params]).all()):
                raise NonFiniteLossError(
                    f"Non-finite parameters in the {name} model after optimizer step {self.global_step}; training "
                    f"stopped without saving them (the newest checkpoint-<step> folder predates this step). Lower "
                    f"the learning rate (optimizer.params.learning_rate=...), use fp32 or bf16 instead of fp16, or "
                    f"check the data, then resume.")

    def resume(self) -> bool:
        """Continue from the newest checkpoint that loads (experiment.resume) or warm-start from init_checkpoint;
        True when a checkpoint was loaded. A checkpoint that fails to load is moved to corrupt-checkpoint-<step>."""
        cfg = self.config
        if cfg.experiment.resume:
            for _, path in reversed(list_checkpoints(self.output_dir)):
                state = self._try_load(path)
                if state is not None:
                    self._apply_state(state, path)
                    return True
        if cfg.experiment.init_checkpoint:
            self.load_checkpoint(Path(cfg.experiment.init_checkpoint))
            return True
        self.logger.info("No checkpoint to resume from: training from scratch.")
        return False

    def _try_load(self, path: Path) -> Optional[dict]:
        """The checkpoint's state, or None after moving a damaged checkpoint aside (agreed by every process)."""
        acc = self.accelerator
        try:
            state, error = self.checkpoints.load(path), None
        except Exception as err:  # truncated/garbled files, missing keys, pickled objects: not a usable checkpoint
            state, error = None, err
        ok = torch.tensor([0.0 if state is None else 1.0], device=acc.device)
        if acc.num_processes > 1:
            ok = acc.reduce(ok, reduction="sum") / acc.num_processes
        if bool(ok.item() == 1.0):
            return state
        acc.wait_for_everyone()
        if acc.is_main_process:
            target = path.with_name(f"{CORRUPT_PREFIX}{path.name}")
            n = 1
            while target.exists():
                n += 1
                target = path.with_name(f"{CORRUPT_PREFIX}{path.name}.{n}")
            path.rename(target)
            reason = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}" if error else "another process"
            self.logger.warning(f"Checkpoint {path} could not be loaded ({reason}); moved it to {target} and "
                                f"trying the next older checkpoint.")
        acc.wait_for_everyone()
        return None

    def load_checkpoint(self, path: Path) -> None:
        self._apply_state(self.checkpoints.load(path), path)

    def _apply_state(self, state: dict, path: Path) -> None:
        training_state = state["training_state"]
        self.unwrap(self.main_model).load_state_dict(state["model"])
        for name in self.models:
            if name != self.main_model:
                self.unwrap(name).load_state_dict(training_state["models"][name])
        configured = {name: configured_hparams(o, self.schedulers[name]) for name, o in self.optimizers.items()}
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(training_state["optimizers"][name])
        for name, scheduler in self.schedulers.items():
            if self.config.experiment.resume_lr_scheduler:
                scheduler.load_state_dict(training_state["schedulers"][name])
            else:  # restart the schedule; drop the lr stored with the optimizer
                for group, lr in zip(self.optimizers[name].param_groups, scheduler.get_last_lr()):
                    group["lr"] = lr
        source = self.config.experiment.resume_optimizer_hparams
        for name, optimizer in self.optimizers.items():
            message = apply_resume_hparams(optimizer, self.schedulers[name], configured[name], source)
            self.logger.info(f"Resume hyper-parameters of {name}: {message}")
        for name, module in self.buffers.items():
            module.load_state_dict(training_state["buffers"][name])
        if self.accelerator.scaler is not None and training_state.get("scaler"):
            self.accelerator.scaler.load_state_dict(training_state["scaler"])
        self.global_step = state["global_step"]
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"] if state["ema"] is not None else state["model"], self.global_step)
        self.logger.info(f"Resumed from {path} at step {self.global_step}")

    def export_weights(self) -> Path:
        """Save the final EMA (else plain) weights of the main model as a plain state dict (`pytorch_model.bin`,
        the released format) and as `model.safetensors` (same tensors); returns the .bin path."""
        path = self.output_dir / WEIGHTS_BIN
        if self.accelerator.is_main_process:
            module = self.ema.module if self.ema is not None else self.unwrap(self.main_model)
            state = module.state_dict()
            # safetensors first: the .bin is what the quickstart and users take as "the run finished"
            # (safetensors refuses tensors that share memory; contiguous copies keep every key of the state dict)
            atomic_save_safetensors({k: v.detach().clone().contiguous() for k, v in state.items()},
                                    self.output_dir / WEIGHTS_SAFETENSORS)
            atomic_torch_save(state, path)
            self.logger.info(f"Exported final {'EMA ' if self.ema else ''}weights to {path} and "
                             f"{WEIGHTS_SAFETENSORS}")
        self.accelerator.wait_for_everyone()
        return path
