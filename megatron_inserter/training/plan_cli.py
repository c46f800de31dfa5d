"""``inserter plan``: will a training run fit in GPU memory, and how long will it take.

    inserter plan --model-preset qwen2-audio-7b --tensor-model-parallel-size 4 --pipeline-model-parallel-size 2 \
        --sequence-parallel --use-distributed-optimizer --bf16 --seq-length 8192 --micro-batch-size 1 \
        --global-batch-size 1024 --train-iters 20000 --nodes 8 --gpus-per-node 8 --gpu h100

It takes the flags of ``inserter train`` (``--config`` included) and prints, per GPU of each pipeline stage,
the memory of weights, gradients, optimizer state, activations in flight, encoder and audio, logits and
runtime, then the step's FLOPs, time per step and tokens per second at an assumed MFU. ``--tokenizer-model``,
``--lr`` and ``--data-path`` are not needed; with ``--data-path`` the clip lengths and the share of audio
positions come from the datasets. The exit status is 1 when a stage does not fit (the breakdown is printed
all the same). ``--json`` prints one JSON object instead of the table.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import ClassVar

from megatron_inserter.flags import arg, run_command
from megatron_inserter.training.arguments import TrainingArguments

PROG = "inserter plan"


@dataclass
class PlanFlags(TrainingArguments):
    """``inserter train``'s flags plus the machine to plan for."""

    optional_flags: ClassVar[tuple[str, ...]] = ("lr", "train_iters", "tokenizer_model", "data_path")

    gpu: str = arg("h100", "GPU the plan is for: sets --gpu-memory-gib and --gpu-peak-tflops defaults",
                   choices=["h100", "h200"], group="plan")
    nodes: int = arg(1, "nodes of the run", group="plan")
    gpus_per_node: int = arg(8, "GPUs per node", group="plan")
    gpu_peak_tflops: float = arg(None, "dense bf16 peak TFLOP/s per GPU (default: --peak-tflops, else the "
                                       "--gpu's: 989 for H100 and H200)", group="plan")
    mfu: float = arg(0.4, "model FLOPs utilisation assumed for the time per step", group="plan")
    transformer_engine: bool = arg(True, "the run uses Transformer Engine kernels (flash attention); "
                                         "--no-transformer-engine plans megatron-core's local spec",
                                   group="plan")
    clip_seconds: float = arg(None, "mean clip length without --data-path (default: 3.5)", group="plan")
    audio_share: float = arg(None, "share of positions that are audio without --data-path (default: 0.7)",
                             group="plan")
    json: bool = arg(False, "print one JSON object instead of the table", group="plan")


def hardware_of(flags: PlanFlags):
    from megatron_inserter.errors import UsageError
    from megatron_inserter.training.flops import GPUS
    from megatron_inserter.training.plan import Hardware

    gpu = GPUS[flags.gpu]
    for name in ("nodes", "gpus_per_node"):
        if getattr(flags, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1")
    if not 0 < flags.mfu <= 1:
        raise UsageError(f"--mfu must be in (0, 1], got {flags.mfu}")
    for name in ("gpu_memory_gib", "gpu_peak_tflops", "peak_tflops", "clip_seconds"):
        value = getattr(flags, name)
        if value is not None and value <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {value}")
    return Hardware(gpus=flags.nodes * flags.gpus_per_node,
                    memory_gib=flags.gpu_memory_gib or gpu.memory_gib,
                    peak_tflops=flags.gpu_peak_tflops or flags.peak_tflops or gpu.peak_tflops,
                    mfu=flags.mfu, name=gpu.name, gpus_per_node=flags.gpus_per_node,
                    kernels="te" if flags.transformer_engine else "local")


def run(flags: PlanFlags) -> int:
    from megatron_inserter.training.plan import build_plan

    tokenizer = None
    if flags.tokenizer_model:
        from megatron_inserter.data.tokenizers import build_tokenizer

        tokenizer = build_tokenizer(flags.tokenizer_type, flags.tokenizer_model)
    plan = build_plan(flags, hardware_of(flags), tokenizer)
    if flags.json:
        print(json.dumps(plan.to_json(), indent=2))
    else:
        print(plan.report())
    return 0 if plan.fits else 1


def main(argv: list[str] | None = None) -> int:
    return run_command(PROG, PlanFlags, run, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
