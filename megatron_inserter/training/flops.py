"""The device peak that MFU is measured against (model FLOPs themselves: ``megatron_inserter.models.flops``)."""

from __future__ import annotations

# Dense bf16 peak TFLOP/s per device, by substring of torch.cuda.get_device_name().
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "H800": 989.0, "GB200": 2500.0, "B200": 2250.0,
                    "A100": 312.0, "A800": 312.0, "L40S": 362.0, "A10": 125.0, "L4": 121.0}


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
