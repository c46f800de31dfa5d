"""Will a training run fit, and how long will it take: one ``Plan`` from the run's flags.

    plan = build_plan(args, Hardware(gpus=64, memory_gib=79.6, peak_tflops=989.0, mfu=0.4))
    print(plan.report()); plan.to_json()["fits"]

``inserter plan`` (``plan_cli``) prints it; ``inserter train`` calls ``check_training_plan`` first and refuses
a run whose plan does not fit (``--no-plan-check`` runs anyway). Memory per GPU comes from
``memory_model``, speech per sample from ``clip_stats`` (the datasets' own lengths when ``--data-path`` is
given), FLOPs from ``models.flops``. Time per step is the step's FLOPs over the GPUs' peak at an assumed
MFU; the encoder's FLOPs are counted once per step (model FLOPs), but every context-parallel rank runs the
encoder on its micro-batch's clips, so the time counts them CP times.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass

from megatron_inserter.training.arguments import ArgumentError
from megatron_inserter.training.memory_model import GIB, Layout, ModelShapes, SpeechLoad, StageMemory

SECONDS_PER_DAY = 86400.0


class PlanError(ArgumentError):
    """The run's plan does not fit in GPU memory (the message names the stage and the overflow)."""


@dataclass(frozen=True)
class Hardware:
    gpus: int
    memory_gib: float
    peak_tflops: float
    mfu: float = 0.4
    name: str = "GPU"
    gpus_per_node: int | None = None
    kernels: str = "te"  # "te": Transformer Engine kernels; "local": megatron-core's local spec


@dataclass
class Plan:
    model: str
    model_type: str
    input_mode: str | None
    hardware: Hardware
    layout: Layout
    global_batch_size: int
    train_iters: int | None
    clips: object  # clip_stats.ClipStats
    load: SpeechLoad
    stages: list[StageMemory]
    flops: dict[str, float]  # model FLOPs per step: {"llm", "encoder"}
    seconds_per_step: float
    fp8: bool = False

    @property
    def fits(self) -> bool:
        return all(s.total <= self.hardware.memory_gib * GIB for s in self.stages)

    @property
    def tokens_per_second(self) -> float:
        return self.global_batch_size * self.layout.seq_length / self.seconds_per_step

    @property
    def days(self) -> float | None:
        return None if self.train_iters is None else self.train_iters * self.seconds_per_step / SECONDS_PER_DAY

    @property
    def bubble(self) -> float:
        """Pipeline bubble as a share of the step ((pp - 1) / (vp * m) of the ideal time)."""
        lay = self.layout
        return (lay.pp - 1) / (lay.chunks * lay.num_microbatches) if lay.pp > 1 else 0.0

    def worst_stage(self) -> StageMemory:
        return max(self.stages, key=lambda s: s.total)

    def overflow_message(self) -> str:
        s = self.worst_stage()
        over = (s.total - self.hardware.memory_gib * GIB) / GIB
        parts = {"weights": s.weights, "gradients": s.grads, "optimizer state": s.optimizer,
                 "LLM activations": s.llm_activations, "encoder activations": s.encoder_activations,
                 "logits": s.logits}
        largest = max(parts, key=parts.get)
        return (f"the plan does not fit: pipeline stage {s.rank} needs {s.total / GIB:.1f} GiB per GPU, {over:.1f} "
                f"GiB more than the GPU's {self.hardware.memory_gib:g} GiB ({self.hardware.name}); its largest part is "
                f"{largest} ({parts[largest] / GIB:.1f} GiB): {self._advice(largest)}")

    def _advice(self, largest: str) -> str:
        lay = self.layout
        if largest == "encoder activations":
            if self.input_mode == "window":
                return "--encoder-input-mode packed encodes each clip's own frames instead of 30 s windows"
            return "--freeze-encoder keeps none, or a smaller --micro-batch-size"
        if largest == "optimizer state" and not lay.distributed_optimizer:
            return "--use-distributed-optimizer shards it over data-parallel ranks"
        if largest == "logits":
            return "a larger --tensor-model-parallel-size splits the vocabulary"
        if largest == "LLM activations":
            sp = "" if lay.sequence_parallel or lay.tp == 1 else "--sequence-parallel, "
            return (f"{sp}a larger --pipeline-model-parallel-size or --tensor-model-parallel-size, or a smaller "
                    f"--micro-batch-size or --seq-length")
        return "a larger --tensor-model-parallel-size or --pipeline-model-parallel-size"

    def to_json(self) -> dict:
        lay, hw = self.layout, self.hardware
        return {
            "fits": self.fits,
            "model": self.model, "model_type": self.model_type, "encoder_input_mode": self.input_mode,
            "hardware": dataclasses.asdict(hw),
            "layout": {**dataclasses.asdict(lay), "global_batch_size": self.global_batch_size},
            "speech": {"source": self.clips.source, "mean_clip_seconds": self.clips.mean_clip_seconds,
                       "audio_share": self.clips.audio_share,
                       "clips_per_sample": self.clips.clips_per_sample(lay.seq_length)},
            "per_rank": [{
                "stage": s.rank, "params": round(s.params), "trainable_params": round(s.trainable),
                "fits": s.total <= hw.memory_gib * GIB,
                "memory_gib": _memory_gib(s),
                "alternatives_gib": {
                    "optimizer_" + ("without" if lay.distributed_optimizer else "with") + "_distributed_optimizer":
                        s.optimizer_other / GIB,
                    "activations_per_microbatch": s.activations_per_microbatch / GIB,
                    "activations_per_microbatch_full_recompute": s.activations_full_recompute / GIB,
                },
                "in_flight_microbatches": s.in_flight,
            } for s in self.stages],
            "flops_per_step": dict(self.flops),
            "seconds_per_step": self.seconds_per_step,
            "tokens_per_second": self.tokens_per_second,
            "pipeline_bubble": self.bubble,
            "train_iters": self.train_iters,
            "days": self.days,
        }

    def report(self) -> str:
        from megatron_inserter.training.plan_report import format_report

        return format_report(self)


def _memory_gib(s: StageMemory) -> dict[str, float]:
    return {"weights": s.weights / GIB, "grads": s.grads / GIB, "optimizer": s.optimizer / GIB,
            "activations": s.activations / GIB, "audio": s.audio / GIB, "runtime": s.runtime / GIB,
            "total": s.total / GIB}


# --- building a plan ------------------------------------------------------------------------------------


def model_config(args, tokenizer=None):
    """The run's InserterModelConfig: the preset (or model_config.json) with the tokenizer's vocabulary
    when one is given, and the freeze switches."""
    from megatron_inserter.models.presets import resolve

    try:
        cfg = resolve(args.model_preset)
        if tokenizer is not None:
            cfg = cfg.with_tokenizer(tokenizer)
    except ValueError as e:
        raise ArgumentError(f"--model-preset {args.model_preset!r}: {e}") from None
    return cfg.replace(freeze_encoder=args.freeze_encoder, freeze_adapter=args.freeze_adapter,
                       freeze_llm=args.freeze_llm)


def _layout(args, gpus: int, num_layers: int, kernels: str, bf16: bool) -> tuple[Layout, int]:
    from megatron_inserter.training.flag_checks import virtual_pipeline_size

    tp, pp, cp = args.tensor_model_parallel_size, args.pipeline_model_parallel_size, args.context_parallel_size
    problems = [f"--{n.replace('_', '-')} must be >= 1" for n in
                ("tensor_model_parallel_size", "pipeline_model_parallel_size", "context_parallel_size",
                 "micro_batch_size", "seq_length") if getattr(args, n) < 1]
    if problems:
        raise ArgumentError("; ".join(problems))
    if gpus % (tp * pp * cp):
        raise ArgumentError(f"{gpus} GPUs are not divisible by --tensor-model-parallel-size ({tp}) x "
                            f"--pipeline-model-parallel-size ({pp}) x --context-parallel-size ({cp})")
    dp = gpus // (tp * pp * cp)
    mbs = args.micro_batch_size
    gbs = args.global_batch_size if args.global_batch_size is not None else mbs * dp
    if gbs < 1 or gbs % (mbs * dp):
        raise ArgumentError(f"--global-batch-size {gbs} is not divisible by --micro-batch-size ({mbs}) x "
                            f"data-parallel size ({dp})")
    if args.sequence_parallel and tp == 1:
        raise ArgumentError("--sequence-parallel needs --tensor-model-parallel-size > 1")
    if args.seq_length % (cp * (tp if args.sequence_parallel else 1)):
        raise ArgumentError(f"--seq-length {args.seq_length} is not divisible by the context-parallel size "
                            f"({cp}){' x tensor-parallel size (sequence parallelism)' if args.sequence_parallel else ''}")
    vp = virtual_pipeline_size(args, num_layers)
    microbatches = gbs // (mbs * dp)
    if vp and microbatches % pp:
        raise ArgumentError(f"the interleaved schedule needs the {microbatches} micro-batches per step divisible "
                            f"by --pipeline-model-parallel-size {pp}")
    layout = Layout(seq_length=args.seq_length, micro_batch_size=mbs, num_microbatches=microbatches, tp=tp, pp=pp,
                    vp=vp, cp=cp, dp=dp, sequence_parallel=args.sequence_parallel,
                    distributed_optimizer=args.use_distributed_optimizer, bf16=bf16, kernels=kernels,
                    recompute=getattr(args, "recompute_granularity", None) or "none")
    return layout, gbs


def _clip_stats(args, spec, model_type: str):
    from megatron_inserter.training.clip_stats import ClipStats, clip_stats_of_blend

    if model_type == "gpt":
        return ClipStats.assumed(spec, audio_share=0.0)
    if args.data_path:
        return clip_stats_of_blend(args.data_path, spec)
    try:
        return ClipStats.assumed(spec, getattr(args, "clip_seconds", None), getattr(args, "audio_share", None))
    except ValueError as e:
        raise ArgumentError(str(e)) from None


def step_flops(cfg, model_type: str, seq_length: int, global_batch_size: int, clips) -> dict[str, float]:
    """Model FLOPs of one step: the LLM on every sample, the encoder on the expected clips."""
    import numpy as np

    from megatron_inserter.models.flops import (
        encoder_window_forward_flops,
        llm_forward_flops,
        training_factors,
    )

    factors = training_factors(cfg) if model_type == "inserter" else {"llm": 3, "encoder": 0}
    llm = llm_forward_flops(cfg.llm, seq_length, global_batch_size) * factors["llm"]
    windows = clips.windows_per_position * seq_length * global_batch_size
    hop = cfg.encoder.hop_length
    per_window = sum(float(p) * encoder_window_forward_flops(cfg, int(m) * hop)
                     for m, p in zip(np.flatnonzero(clips.mel_hist), clips.mel_hist[clips.mel_hist > 0]))
    return {"llm": llm, "encoder": windows * per_window * factors["encoder"]}


def executed_encoder_flops(cfg, mode: str | None, model_flops: float, load: SpeechLoad, global_batch_size: int,
                           layout: Layout) -> float:
    """The encoder FLOPs a step runs: model FLOPs, except that ``masked`` batches also encode the padding up
    to their longest clip."""
    if mode != "masked" or not load.clips:
        return model_flops
    from megatron_inserter.models.flops import encoder_window_forward_flops, training_factors

    padded_mel = round(load.mel_frames / load.clips)
    per_microbatch = load.clips * encoder_window_forward_flops(cfg, padded_mel * cfg.encoder.hop_length)
    microbatches = global_batch_size // layout.micro_batch_size
    return max(model_flops, per_microbatch * microbatches * training_factors(cfg)["encoder"])


def build_plan(args, hardware: Hardware, tokenizer=None, clips=None) -> Plan:
    """The plan of the run ``args`` (TrainingArguments or the plan command's flags) on ``hardware``."""
    from megatron_inserter.training.clip_stats import speech_load
    from megatron_inserter.training.memory_model import stage_memory

    cfg = model_config(args, tokenizer)
    mode = getattr(args, "encoder_input_mode", None) or cfg.encoder.input_mode
    if args.model_type == "inserter" and mode != cfg.encoder.input_mode:
        cfg = cfg.replace(encoder=dataclasses.replace(cfg.encoder, input_mode=mode))
    layout, gbs = _layout(args, hardware.gpus, cfg.llm.num_layers, hardware.kernels, args.bf16)
    spec = cfg.frame_spec()
    clips = clips if clips is not None else _clip_stats(args, spec, args.model_type)
    shapes = ModelShapes.of(cfg, args.model_type)
    load = SpeechLoad.none() if args.model_type == "gpt" else speech_load(
        clips, spec, layout.seq_length, layout.micro_batch_size, mode, cfg.encoder.positions_per_window,
        thd=hardware.kernels == "te")
    stages = stage_memory(shapes, layout, load)
    flops = step_flops(cfg, args.model_type, layout.seq_length, gbs, clips)
    executed = flops["llm"] + executed_encoder_flops(cfg, mode, flops["encoder"], load, gbs, layout) * layout.cp
    seconds = executed / (hardware.gpus * hardware.peak_tflops * 1e12 * hardware.mfu)
    return Plan(model=cfg.name, model_type=args.model_type, input_mode=mode if args.model_type == "inserter" else None,
                hardware=hardware, layout=layout, global_batch_size=gbs, train_iters=args.train_iters, clips=clips,
                load=load, stages=stages, flops=flops, seconds_per_step=seconds,
                fp8=bool(getattr(args, "fp8_format", None)))


# --- the check ``inserter train`` runs first --------------------------------------------------------------


def check_training_plan(args) -> Plan | None:
    """Refuse a run whose plan does not fit (rank 0 prints the breakdown first); None when skipped.

    Skipped with ``--no-plan-check``, and on a machine without CUDA unless ``--gpu-memory-gib`` says what
    to plan for. The GPU's own memory is used otherwise.
    """
    if not getattr(args, "plan_check", True):
        return None
    import torch

    from megatron_inserter.data.tokenizers import build_tokenizer
    from megatron_inserter.models.specs import use_transformer_engine
    from megatron_inserter.runtime import resolve_dist_env
    from megatron_inserter.training.flops import peak_tflops_per_device

    memory = getattr(args, "gpu_memory_gib", None)
    cuda = torch.cuda.is_available()
    if memory is None and not cuda:
        return None
    env = resolve_dist_env()
    name = "GPU"
    if memory is None:
        props = torch.cuda.get_device_properties(env.local_rank % torch.cuda.device_count())
        memory, name = props.total_memory / GIB, props.name
    hardware = Hardware(gpus=env.world_size, memory_gib=memory, peak_tflops=peak_tflops_per_device(args.peak_tflops)
                        or 989.0, name=name, kernels="te" if use_transformer_engine() else "local")
    tokenizer = build_tokenizer(args.tokenizer_type, args.tokenizer_model)
    plan = build_plan(args, hardware, tokenizer)
    if plan.fits:
        return plan
    if env.rank == 0:
        print(plan.report(), file=sys.stderr, flush=True)
    raise PlanError(plan.overflow_message() + "; --no-plan-check starts it anyway")

