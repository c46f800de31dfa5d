"""The training loop: steps, logging, validation and checkpoints.

    result = train(parse_args(argv))     # under torchrun / srun / a single process

Each step reads this rank's micro-batches, runs megatron-core's forward-backward schedule through
``engine.train_step`` (mcore DDP, the Megatron optimizer with gradient clipping, the LR schedule) and
records the loss, its modality-gap split (after speech, after text, the random-text control, per blend
component), grad norm, LR, throughput and memory. Micro-batches stream: the schedule's forward step reads
each one when it needs it (``data.BatchSource.stream``), and validation adds up ``[sum, count]`` pairs one
schedule call at a time.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.distributed as dist
from megatron.core.optimizer_param_scheduler import get_canonical_lr_for_logging

from megatron_inserter import lifetime
from megatron_inserter.files import write_json_atomic
from megatron_inserter.models import config_file
from megatron_inserter.models.context_parallel import slice_for_cp
from megatron_inserter.runtime import device
from megatron_inserter.training import checkpointing as ckpt
from megatron_inserter.training.arguments import TrainingArguments
from megatron_inserter.training.data import (
    BatchSource,
    GapMasks,
    blend_components,
    build_train_valid,
    keep_host_memory_flat,
)
from megatron_inserter.training.engine import add_loss_sums, eval_sums, reduce_loss_sums, train_step
from megatron_inserter.training.flops import counts_encoder_flops, peak_tflops_per_device
from megatron_inserter.training.losses import LM_LOSS, LossFunction
from megatron_inserter.training.metrics import MetricsLogger, format_train_line
from megatron_inserter.training.models import InserterFamily
from megatron_inserter.training.plan import check_training_plan
from megatron_inserter.training.setup import Run, build_run

logger = logging.getLogger(__name__)


def is_loss_name(name: str) -> bool:
    return name == LM_LOSS or name.startswith("loss ")


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
        self.collate = GapMasks(tok.audio_eos_id, tok.eod_id, self.args.after_speech_window,
                                self.args.reset_position_ids, self.args.eod_mask_loss)
        components = blend_components(self.args.data_path)
        self.components = components if len(components) > 1 else []
        self._peak = peak_tflops_per_device(self.args.peak_tflops)
        self._counts_encoder = counts_encoder_flops()
        self._clip_lengths: list[int] = []

    # --- one micro-batch --------------------------------------------------------------------------
    def forward_step(self, data_iterator, model):
        batch = next(data_iterator)
        output = self.run.family.forward(model, batch)
        if batch is None or "after_speech" not in batch:  # not the last pipeline stage: no loss here
            return output, _no_loss
        # The masks cover the whole sequence; this context-parallel rank's part (the loss is sliced alike).
        return output, LossFunction(slice_for_cp(batch["loss_mask"], 1), slice_for_cp(batch["after_speech"], 1),
                                    slice_for_cp(batch["random_text"], 1), batch["dataset_id"], self.components)

    def batch_source(self, dataset, consumed_samples: int, dev) -> BatchSource:
        a, run = self.args, self.run
        return BatchSource(dataset, consumed_samples, run.layout, a.micro_batch_size, a.num_workers,
                           run.family.with_audio, dev, self.collate)

    # --- the loop ------------------------------------------------------------------------------------
    def train(self, train_ds, valid_ds) -> TrainResult:
        a = self.args
        dev = device()
        source = self.batch_source(train_ds, self.state.consumed_train_samples, dev)
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
            losses = window.setdefault("losses", {})
            for name in filter(is_loss_name, record):
                losses.setdefault(name, []).append(record[name])
            it = self.state.iteration
            if it % a.log_interval == 0 or it == a.train_iters:
                averages = {n: _mean(v) for n, v in window.pop("losses").items()}  # the line shows interval means
                record.update(self._throughput(window, source))
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
        stream = source.stream(len(run.chunks))
        step = train_step(self.forward_step, stream.data_iterator, run.chunks, run.optimizer, run.scheduler,
                          stream.num_microbatches, a.seq_length, a.micro_batch_size,
                          increment=run.layout.global_batch_size)
        stream.finish()
        self.state.iteration += 1
        self.state.consumed_train_samples = source.consumed_samples
        return {"consumed_samples": self.state.consumed_train_samples, "lr": _lr(run.optimizer),
                "grad_norm": None if step.grad_norm is None else float(step.grad_norm),
                "skipped": int(step.skipped), **step.losses}

    def _throughput(self, window: dict, source: BatchSource) -> dict:
        a, run = self.args, self.run
        elapsed, iters = max(window["seconds"], 1e-9), window["iters"]
        family, gbs = run.family, run.layout.global_batch_size
        # Encoder FLOPs depend on the clips, which only the ranks reading speech know: summed over ranks,
        # each clip counted by one rank (counts_encoder_flops), not by every context-parallel rank.
        clips = source.take_clip_lengths()
        self._clip_lengths = clips if self._counts_encoder else []
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
        source = self.batch_source(valid_ds, 0, dev)
        sums: dict = {}
        for _ in range(a.eval_iters):  # one global batch per schedule call, micro-batch by micro-batch
            stream = source.stream(len(run.chunks))
            add_loss_sums(sums, eval_sums(self.forward_step, stream.data_iterator, run.chunks,
                                          stream.num_microbatches, a.seq_length, a.micro_batch_size))
            stream.finish()
        losses = reduce_loss_sums(sums)
        metrics.record("valid", self.state.iteration, losses)
        metrics.line(f"validation at iteration {self.state.iteration}: " +
                    " | ".join(f"{k} {v:.4f}" for k, v in losses.items()))
        result.validation.append({"iteration": self.state.iteration, **losses})

    def _save(self) -> int:
        run = self.run
        lifetime.checkpoint_writers_die_with_parent()
        ckpt.save_checkpoint(self.args.save, self.state, run.chunks, run.optimizer, run.scheduler,
                             self.args.to_dict(), model_config=model_config_of(run))
        return self.state.iteration


def model_config_of(run: Run) -> dict:
    """The run's model as ``model_config.json``: its shapes and the vocabulary it was built with."""
    family = run.family
    config = family.config if isinstance(family, InserterFamily) else family.llm
    return config_file.to_dict(config, family.llm.padded_vocab_size(run.args.tensor_model_parallel_size))


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


def _describe_dir(path: str) -> str:
    if not os.path.exists(path):
        return "it does not exist"
    if not os.path.isdir(path):
        return "it is a file, not a directory"
    names = sorted(os.listdir(path))
    if not names:
        return "it is empty"
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    return f"it holds {shown}, but no {ckpt.TRACKER}"


def check_load_dir(args: TrainingArguments) -> None:
    """``--finetune``, or a ``--load`` that is not ``--save``, must find a checkpoint: starting from random
    weights is only right for a run that resumes itself (``--load`` = ``--save``) on its first start."""
    if not args.load or ckpt.resolve_load_dir(args.load) is not None:
        return
    resumes_itself = bool(args.save) and os.path.abspath(args.load) == os.path.abspath(args.save)
    if args.finetune:
        why = "--finetune starts from the weights it holds"
    elif not resumes_itself:
        why = "it is not the --save directory, so the run must start from it"
    else:
        return
    raise ckpt.CheckpointError(
        f"--load {args.load} holds no checkpoint ({_describe_dir(args.load)}); {why}: point --load at a "
        f"directory written by --save (with {ckpt.TRACKER}) or at one of its iter_XXXXXXX directories")


def train(args: TrainingArguments) -> TrainResult:
    check_load_dir(args)
    check_training_plan(args)  # refuses a run that would not fit in GPU memory (--no-plan-check)
    lifetime.install()  # loader workers and checkpoint writers die with this process
    if torch.cuda.is_available():  # host memory holds only batches there; on CPU it holds the activations too,
        keep_host_memory_flat()    # and an mmap per large block made CPU steps 2.4x slower
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
        write_json_atomic(os.path.join(log_dir, "summary.json"), summary)
    return result
