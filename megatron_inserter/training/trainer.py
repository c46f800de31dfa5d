"""The training loop: steps, logging, validation and checkpoints.

    result = train(parse_args(argv))     # under torchrun / srun / a single process

Each step reads this rank's micro-batches, runs megatron-core's forward-backward schedule through
``engine.train_step`` (mcore DDP, the Megatron optimizer with gradient clipping, the LR schedule) and
records the loss, its after-speech / after-text split, grad norm, LR, throughput and memory.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.distributed as dist
from megatron.core import parallel_state as ps
from megatron.core.optimizer_param_scheduler import get_canonical_lr_for_logging

from megatron_inserter.models.context_parallel import slice_for_cp
from megatron_inserter.runtime import device
from megatron_inserter.training import checkpointing as ckpt
from megatron_inserter.training.arguments import TrainingArguments
from megatron_inserter.training.data import BatchSource, build_train_valid, step_iterators
from megatron_inserter.training.engine import eval_step, train_step
from megatron_inserter.training.flops import peak_tflops_per_device
from megatron_inserter.training.losses import (
    AFTER_SPEECH,
    AFTER_TEXT,
    LM_LOSS,
    LossFunction,
    after_speech_mask,
)
from megatron_inserter.training.metrics import MetricsLogger, format_train_line
from megatron_inserter.training.setup import Run, build_run

logger = logging.getLogger(__name__)
LOSS_NAMES = (LM_LOSS, AFTER_SPEECH, AFTER_TEXT)


@dataclass
class TrainResult:
    iteration: int
    consumed_samples: int
    history: list[dict] = field(default_factory=list)  # one record per step of this process's run
    validation: list[dict] = field(default_factory=list)
    checkpoint: str | None = None
    loss_plot: str | None = None
    seconds: float = 0.0


def _memory_gib() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _mean(values: list) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


def _lr(optimizer) -> float:
    lr = get_canonical_lr_for_logging(optimizer.param_groups)
    return float(lr if lr is not None else optimizer.param_groups[0]["lr"])


class Trainer:
    def __init__(self, run: Run):
        self.run = run
        self.args = run.args
        self.state = ckpt.TrainState(layout=run.parallel_layout(),
                                     distributed_optimizer=self.args.use_distributed_optimizer)
        tok = run.tokenizer
        self._special = (tok.audio_eos_id, tok.eod_id)
        self._peak = peak_tflops_per_device(self.args.peak_tflops)
        self._reads_audio = ps.is_pipeline_first_stage(ignore_virtual=True) and \
            ps.get_tensor_model_parallel_rank() == 0
        self._clip_lengths: list[int] = []

    # --- one micro-batch --------------------------------------------------------------------------
    def forward_step(self, data_iterator, model):
        batch = next(data_iterator)
        output = self.run.family.forward(model, batch)
        if batch is None:
            return output, _no_loss
        # Masks over the whole sequence, then this context-parallel rank's part (the loss is sliced alike).
        mask = after_speech_mask(batch["tokens"], batch["loss_mask"], *self._special, self.args.after_speech_window)
        return output, LossFunction(slice_for_cp(batch["loss_mask"], 1), slice_for_cp(mask, 1))

    def _collect_clip_lengths(self, microbatches) -> None:
        if self._reads_audio:
            for b in microbatches:
                if b is not None and "audio_lengths" in b:
                    self._clip_lengths.extend(int(n) for n in b["audio_lengths"].tolist())

    # --- the loop ------------------------------------------------------------------------------------
    def train(self, train_ds, valid_ds) -> TrainResult:
        a, run = self.args, self.run
        dev = device()
        source = BatchSource(train_ds, self.state.consumed_train_samples, run.layout, a.micro_batch_size,
                             a.num_workers, run.family.with_audio, dev)
        metrics = MetricsLogger(log_dir_of(a), a.tensorboard_dir, self.state.iteration)
        result = TrainResult(self.state.iteration, self.state.consumed_train_samples)
        t_start = time.perf_counter()
        window = {"seconds": 0.0, "iters": 0}  # step time only: validation and checkpoints excluded
        has_valid = a.eval_iters > 0 and _any_rank(valid_ds is not None)
        last_saved, start_iteration = None, self.state.iteration
        if a.skip_train and has_valid:
            self._validate(valid_ds, metrics, result, dev)
        while self.state.iteration < a.train_iters and not a.skip_train:
            t0 = time.perf_counter()
            record = self._step(source)
            window["seconds"] += time.perf_counter() - t0
            window["iters"] += 1
            for name in LOSS_NAMES:
                window.setdefault(name, []).append(record.get(name))
            it = self.state.iteration
            if it % a.log_interval == 0 or it == a.train_iters:
                averages = {n: _mean(window.pop(n, [])) for n in LOSS_NAMES}  # the line shows interval means
                record.update(self._throughput(window))
                metrics.line(format_train_line(it, a.train_iters, {**record, **averages}))
            result.history.append({"iteration": it, **record})
            metrics.record("train", it, record)
            if has_valid and (it % a.eval_interval == 0 or it == a.train_iters):
                self._validate(valid_ds, metrics, result, dev)
            exiting = bool(a.exit_interval) and it % a.exit_interval == 0
            if a.save and ((a.save_interval and it % a.save_interval == 0) or exiting):
                last_saved = self._save()
            if exiting:
                metrics.line(f"exiting at iteration {it} (--exit-interval {a.exit_interval})")
                break
        if a.save and last_saved != self.state.iteration and self.state.iteration > start_iteration:
            last_saved = self._save()
        result.iteration, result.consumed_samples = self.state.iteration, self.state.consumed_train_samples
        result.checkpoint = ckpt.iteration_dir(a.save, last_saved) if a.save and last_saved else None
        result.loss_plot = metrics.close()
        result.seconds = time.perf_counter() - t_start
        return result

    def _step(self, source: BatchSource) -> dict:
        a, run = self.args, self.run
        microbatches = source.next_step()
        self._collect_clip_lengths(microbatches)
        step = train_step(self.forward_step, step_iterators(microbatches, len(run.chunks)), run.chunks,
                          run.optimizer, run.scheduler, run.layout.num_microbatches, a.seq_length,
                          a.micro_batch_size, increment=run.layout.global_batch_size)
        self.state.iteration += 1
        self.state.consumed_train_samples = source.consumed_samples
        return {"consumed_samples": self.state.consumed_train_samples, "lr": _lr(run.optimizer),
                "grad_norm": None if step.grad_norm is None else float(step.grad_norm),
                "skipped": int(step.skipped), **step.losses}

    def _throughput(self, window: dict) -> dict:
        a, run = self.args, self.run
        elapsed, iters = max(window["seconds"], 1e-9), window["iters"]
        family, gbs = run.family, run.layout.global_batch_size
        # Encoder FLOPs depend on the clips, which only the ranks reading speech know: summed over ranks.
        speech = family.step_flops(a.seq_length, 0, self._clip_lengths) if self._clip_lengths else 0.0
        speech = torch.tensor([speech], dtype=torch.float64, device=device())
        dist.all_reduce(speech)
        self._clip_lengths = []
        text = family.step_flops(a.seq_length, gbs, [])
        tflops = (text * iters + float(speech.item())) / elapsed / run.layout.world_size / 1e12
        window.update(seconds=0.0, iters=0)
        return {"ms_per_iter": 1000 * elapsed / iters, "tokens_per_s": gbs * a.seq_length * iters / elapsed,
                "tflops_per_device": tflops, "mfu": tflops / self._peak if self._peak else None,
                "memory_gib": _memory_gib()}

    def _validate(self, valid_ds, metrics: MetricsLogger, result: TrainResult, dev) -> None:
        a, run = self.args, self.run
        source = BatchSource(valid_ds, 0, run.layout, a.micro_batch_size, 0, run.family.with_audio, dev)
        microbatches = [mb for _ in range(a.eval_iters) for mb in source.next_step()]
        losses = eval_step(self.forward_step, step_iterators(microbatches, len(run.chunks)), run.chunks,
                           len(microbatches), a.seq_length, a.micro_batch_size)
        metrics.record("valid", self.state.iteration, losses)
        metrics.line(f"validation at iteration {self.state.iteration}: " +
                    " | ".join(f"{k} {v:.4f}" for k, v in losses.items()))
        result.validation.append({"iteration": self.state.iteration, **losses})

    def _save(self) -> int:
        run = self.run
        ckpt.save_checkpoint(self.args.save, self.state, run.chunks, run.optimizer, run.scheduler,
                             self.args.to_dict())
        return self.state.iteration


def _apply_schedule_flags(run: Run, args: TrainingArguments) -> None:
    """The command line's LR bounds win over those stored in the checkpoint's optimizer param groups."""
    for group in run.optimizer.param_groups:
        if "max_lr" in group:
            group["max_lr"] = args.lr
        if "min_lr" in group:
            group["min_lr"] = args.min_lr
    run.scheduler.step(0)


def log_dir_of(args: TrainingArguments) -> str | None:
    return args.log_dir or (os.path.join(args.save, "logs") if args.save else None)


def _any_rank(flag: bool) -> bool:
    t = torch.tensor([int(flag)], device=device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _no_loss(output):
    raise RuntimeError("loss requested on a pipeline stage without data")


# Flags that decide which samples a step reads: changing them on resume changes the data order.
DATA_ORDER_FLAGS = ("data_path", "split", "seq_length", "seed", "train_iters", "global_batch_size", "eval_iters")


def _warn_if_data_order_changes(args: TrainingArguments, run: Run) -> None:
    if ckpt.resolve_load_dir(args.load) is None:
        return
    saved = ckpt.checkpoint_args(args.load)
    now = {**args.to_dict(), "global_batch_size": run.layout.global_batch_size}
    changed = [f for f in DATA_ORDER_FLAGS if f in saved and saved[f] is not None and saved[f] != now[f]]
    if changed and dist.get_rank() == 0:
        logger.warning("resuming with different %s than the checkpoint (%s): the blend's sample order changes, "
                       "so the run does not continue exactly where it stopped",
                       ", ".join(f"--{f.replace('_', '-')}" for f in changed),
                       ", ".join(f"{f}={saved[f]!r}" for f in changed))


def train(args: TrainingArguments) -> TrainResult:
    run = build_run(args)
    trainer = Trainer(run)
    if args.load and not args.finetune:
        _warn_if_data_order_changes(args, run)
    if args.load:
        loaded = ckpt.load_checkpoint(args.load, run.chunks, run.optimizer, run.scheduler, trainer.state,
                                      load_optim=args.load_optim, load_rng=args.load_rng, finetune=args.finetune)
        if loaded is not None:
            trainer.state.iteration = loaded.iteration
            trainer.state.consumed_train_samples = loaded.consumed_train_samples
            _apply_schedule_flags(run, args)
    train_ds, valid_ds = build_train_valid(args, run.layout, run.tokenizer, run.family.frame_spec)
    result = trainer.train(train_ds, valid_ds)
    log_dir = log_dir_of(args)
    if log_dir and dist.get_rank() == 0:
        summary = {k: v for k, v in asdict(result).items() if k != "history"}
        summary["final"] = result.history[-1] if result.history else None
        tmp = os.path.join(log_dir, "summary.json.tmp")
        os.makedirs(log_dir, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
        os.replace(tmp, os.path.join(log_dir, "summary.json"))
    return result
