"""Flag checks that need more than one flag, or the machine: refused with a message naming the flags.

    layout = check_flags(args, world_size=8, cuda=True, transformer_engine=True)
    layout.data_parallel_size, layout.num_microbatches, layout.global_batch_size

Every problem found is reported at once, in one ``UsageError`` line.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from megatron_inserter.training.arguments import ArgumentError, TrainingArguments


@dataclass(frozen=True)
class RunLayout:
    world_size: int
    data_parallel_size: int
    global_batch_size: int
    num_microbatches: int  # per data-parallel rank and optimizer step


def _check(ok: bool, message: str, problems: list[str]) -> None:
    if not ok:
        problems.append(message)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def blend_problem(data_path: Sequence[str]) -> str | None:
    """What is wrong with a ``--data-path`` list (``PREFIX ...`` or ``WEIGHT PREFIX ...`` pairs), or None."""
    items = [p for p in data_path if p.strip()]
    if not items:
        return "--data-path is empty: give PREFIX ... or WEIGHT PREFIX pairs"
    numbers = [_number(x) for x in items]
    if all(n is None for n in numbers):
        return None
    if len(items) % 2 or any(n is None for n in numbers[0::2]) or any(n is not None for n in numbers[1::2]):
        return (f"--data-path {' '.join(items)}: a list with weights must be WEIGHT PREFIX pairs "
                f"(e.g. --data-path 0.7 data/a 0.3 data/b); give every prefix a weight, or no weights at all")
    bad = [w for w, n in zip(items[0::2], numbers[0::2]) if not (math.isfinite(n) and n > 0)]
    if bad:
        return f"--data-path weights must be positive numbers, got {', '.join(bad)}"
    return None


def split_problem(split: str, skip_train: bool) -> str | None:
    """What is wrong with ``--split`` (train,valid,test proportions, Megatron's syntax), or None."""
    parts = [x for x in re.split(r"[,/]", split.strip()) if x.strip()]
    values = [_number(x) for x in parts]
    if not 1 <= len(parts) <= 3 or any(v is None or not math.isfinite(v) or v < 0 for v in values):
        return f"--split {split!r}: give up to three non-negative train,valid,test proportions (e.g. 969,30,1)"
    if sum(values) <= 0:
        return f"--split {split!r} assigns no data to any split"
    if values[0] == 0 and not skip_train:
        return f"--split {split!r} leaves no training data: give the first (train) proportion a positive value"
    return None


def check_flags(args: TrainingArguments, world_size: int, cuda: bool, transformer_engine: bool) -> RunLayout:
    p: list[str] = []
    for problem in (blend_problem(args.data_path), split_problem(args.split, args.skip_train)):
        _check(problem is None, problem or "", p)
    tp, pp, cp = args.tensor_model_parallel_size, args.pipeline_model_parallel_size, args.context_parallel_size
    for name in ("tensor_model_parallel_size", "pipeline_model_parallel_size", "context_parallel_size",
                 "micro_batch_size", "seq_length", "train_iters", "log_interval"):
        _check(getattr(args, name) >= 1, f"--{name.replace('_', '-')} must be >= 1", p)
    model_parallel = tp * pp * cp
    _check(model_parallel >= 1 and world_size % max(model_parallel, 1) == 0,
           f"world size {world_size} is not divisible by --tensor-model-parallel-size ({tp}) x "
           f"--pipeline-model-parallel-size ({pp}) x --context-parallel-size ({cp})", p)
    dp = max(world_size // max(model_parallel, 1), 1)

    _check(not args.sequence_parallel or tp > 1,
           "--sequence-parallel needs --tensor-model-parallel-size > 1", p)
    _check(args.num_layers_per_virtual_pipeline_stage is None or pp > 1,
           "--num-layers-per-virtual-pipeline-stage needs --pipeline-model-parallel-size > 1", p)
    _check(args.num_layers_per_virtual_pipeline_stage is None or args.num_layers_per_virtual_pipeline_stage >= 1,
           "--num-layers-per-virtual-pipeline-stage must be >= 1", p)
    _check(args.fp8_format is None or (cuda and transformer_engine),
           f"--fp8-format {args.fp8_format} needs CUDA and Transformer Engine "
           f"({'no CUDA device' if not cuda else 'transformer_engine does not import'})", p)
    _check(args.fp8_format is None or args.bf16, "--fp8-format needs --bf16 (FP8 GEMMs with bf16 elsewhere)", p)
    _check(not args.bf16 or cuda, "--bf16 needs CUDA (megatron-core's mixed-precision optimizer refuses CPU "
                                  "parameters); train in fp32 on CPU", p)
    _check(not args.use_distributed_optimizer or cuda,
           "--use-distributed-optimizer needs CUDA (megatron-core refuses CPU parameters); drop it on CPU", p)
    _check(cp == 1 or (cuda and transformer_engine),
           "--context-parallel-size > 1 needs Transformer Engine attention on CUDA", p)

    gbs = args.global_batch_size if args.global_batch_size is not None else args.micro_batch_size * dp
    per_step = args.micro_batch_size * dp
    _check(gbs >= 1 and gbs % max(per_step, 1) == 0,
           f"--global-batch-size {gbs} is not divisible by --micro-batch-size ({args.micro_batch_size}) x "
           f"data-parallel size ({dp})", p)

    _check(args.lr > 0, "--lr must be positive", p)
    _check(0 <= args.min_lr <= args.lr, f"--min-lr ({args.min_lr}) must be in [0, --lr ({args.lr})]", p)
    decay = args.lr_decay_iters if args.lr_decay_iters is not None else args.train_iters
    _check(decay >= 1, "--lr-decay-iters must be >= 1", p)
    _check(0 <= args.lr_warmup_iters < max(decay, 1),
           f"--lr-warmup-iters ({args.lr_warmup_iters}) must be smaller than the decay iterations ({decay}, "
           f"--lr-decay-iters or --train-iters)", p)
    _check(args.clip_grad >= 0, "--clip-grad must be >= 0", p)
    _check(args.weight_decay >= 0, "--weight-decay must be >= 0", p)

    _check(args.save_interval is None or args.save is not None, "--save-interval needs --save", p)
    _check(args.save_interval is None or args.save_interval >= 1, "--save-interval must be >= 1", p)
    _check(args.exit_interval is None or args.exit_interval >= 1, "--exit-interval must be >= 1", p)
    _check(not args.finetune or args.load is not None, "--finetune needs --load", p)
    _check(args.eval_iters >= 0, "--eval-iters must be >= 0", p)
    _check(not args.skip_train or args.eval_iters > 0, "--skip-train with --eval-iters 0 has nothing to do", p)
    _check(args.eval_interval >= 1, "--eval-interval must be >= 1", p)
    _check(args.num_workers >= 0, "--num-workers must be >= 0", p)
    _check(args.after_speech_window >= 1, "--after-speech-window must be >= 1", p)
    _check(args.peak_tflops is None or args.peak_tflops > 0, "--peak-tflops must be positive", p)

    if args.model_type == "gpt":
        for name in ("freeze_encoder", "freeze_adapter"):
            _check(not getattr(args, name), f"--{name.replace('_', '-')} has no effect with --model-type gpt "
                                            f"(no speech encoder); drop it", p)
        _check(not args.freeze_llm, "--freeze-llm with --model-type gpt leaves nothing to train", p)
    else:
        _check(not (args.freeze_encoder and args.freeze_adapter and args.freeze_llm),
               "--freeze-encoder, --freeze-adapter and --freeze-llm together leave nothing to train", p)
    _check(args.tokenizer_type in ("sentencepiece", "huggingface"),
           f"--tokenizer-type {args.tokenizer_type!r}: use sentencepiece or huggingface", p)
    _check(args.tokenizer_model is None or os.path.exists(args.tokenizer_model),
           f"--tokenizer-model {args.tokenizer_model!r} does not exist", p)
    if p:
        raise ArgumentError("invalid flags: " + "; ".join(p))
    return RunLayout(world_size=world_size, data_parallel_size=dp, global_batch_size=gbs,
                     num_microbatches=gbs // per_step)


def virtual_pipeline_size(args: TrainingArguments, num_layers: int) -> int | None:
    """Model chunks per pipeline rank for --num-layers-per-virtual-pipeline-stage, checked against the model."""
    pp = args.pipeline_model_parallel_size
    if num_layers % pp:
        raise ArgumentError(f"the model's {num_layers} LLM layers do not split evenly over "
                            f"--pipeline-model-parallel-size {pp}")
    per_vp = args.num_layers_per_virtual_pipeline_stage
    if per_vp is None:
        return None
    if (num_layers // pp) % per_vp:
        raise ArgumentError(f"--num-layers-per-virtual-pipeline-stage {per_vp} does not divide the "
                            f"{num_layers // pp} layers of each pipeline stage")
    vp = num_layers // pp // per_vp
    return vp if vp > 1 else None
