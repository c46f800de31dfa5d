"""The devices MFU and ``inserter plan`` are measured against, and who counts the encoder's FLOPs.

Model FLOPs themselves: ``megatron_inserter.models.flops``.
"""

from __future__ import annotations

from dataclasses import dataclass

# Dense bf16 peak TFLOP/s per device, by substring of torch.cuda.get_device_name().
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "H800": 989.0, "GB200": 2500.0, "B200": 2250.0,
                    "A100": 312.0, "A800": 312.0, "L40S": 362.0, "A10": 125.0, "L4": 121.0}


@dataclass(frozen=True)
class GPU:
    """A GPU ``inserter plan`` can plan for: memory as CUDA reports it, dense bf16 peak."""

    name: str
    memory_gib: float
    peak_tflops: float


# SXM parts: 80 GB HBM3 and 141 GB HBM3e, of which CUDA reports about 79.6 and 139.8 GiB.
GPUS = {"h100": GPU("H100-80GB", 79.6, PEAK_BF16_TFLOPS["H100"]),
        "h200": GPU("H200-141GB", 139.8, PEAK_BF16_TFLOPS["H200"])}


def peak_tflops_per_device(override: float | None = None) -> float | None:
    """``--peak-tflops`` if given, else the table's value for this GPU; None on CPU or an unknown GPU."""
    if override:
        return override
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):
        if key in name:
            return PEAK_BF16_TFLOPS[key]
    return None


def counts_encoder_flops() -> bool:
    """Whether this rank adds the encoder FLOPs of the clips it sees to a step's count.

    Every tensor- and context-parallel rank of the first pipeline stage encodes the same clips (the encoder
    runs without tensor-parallel splitting of its input and without context parallelism), so exactly one
    of them counts: tensor-parallel rank 0, context-parallel rank 0. Summed over ranks, each clip of the
    global batch is then counted once.
    """
    from megatron.core import parallel_state as ps

    return (ps.is_pipeline_first_stage(ignore_virtual=True) and ps.get_tensor_model_parallel_rank() == 0
            and ps.get_context_parallel_rank() == 0)
