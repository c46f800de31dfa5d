"""A run's headline numbers from its ``metrics.jsonl``: losses and the modality gap at start and end,
throughput. Used by ``inserter demo`` and handy after any run:

    python -c "from megatron_inserter.training.run_summary import summarize; print(summarize('run/logs/metrics.jsonl'))"
"""

from __future__ import annotations

import math

from megatron_inserter.training.losses import (
    AFTER_RANDOM_TEXT,
    AFTER_SPEECH,
    AFTER_TEXT,
    LM_LOSS,
    component_loss_name,
)
from megatron_inserter.training.metrics import components_of, read_metrics

LOSSES = (LM_LOSS, AFTER_SPEECH, AFTER_TEXT, AFTER_RANDOM_TEXT)


def _mean(values: list) -> float | None:
    vals = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


def _gap(speech: float | None, control: float | None) -> float | None:
    return speech - control if speech is not None and control is not None else None


def _window(records: list[dict], k: int) -> dict:
    out = {name: _mean([r.get(name) for r in records[:k]]) for name in LOSSES}
    if out[AFTER_SPEECH] is not None and out[AFTER_TEXT] is not None:
        out["gap (after speech - after text)"] = out[AFTER_SPEECH] - out[AFTER_TEXT]
    if out[AFTER_RANDOM_TEXT] is not None:
        out["gap (after speech - after random text)"] = _gap(out[AFTER_SPEECH], out[AFTER_RANDOM_TEXT])
    components = components_of(records[0]) if records else []
    if components:
        out["gap per component (after speech - after random text)"] = {
            c: _gap(_mean([r.get(component_loss_name(AFTER_SPEECH, c)) for r in records[:k]]),
                    _mean([r.get(component_loss_name(AFTER_RANDOM_TEXT, c)) for r in records[:k]]))
            for c in components}
    return out


def summarize(metrics_path: str, window: int = 10) -> dict:
    """Train-loss means over the first and last ``window`` iterations, the last validation, throughput."""
    records = read_metrics(metrics_path)
    train = [r for r in records if r.get("kind") == "train"]
    valid = [r for r in records if r.get("kind") == "valid"]
    if not train:
        return {"iterations": 0}
    k = max(1, min(window, len(train) // 2 or 1))
    timed = [r for r in train if r.get("tokens_per_s")]
    steady = timed[1:] or timed  # the first interval holds one-off start-up work
    return {
        "iterations": train[-1]["iteration"],
        "window": k,
        "start": {"iterations": [train[0]["iteration"], train[k - 1]["iteration"]], **_window(train, k)},
        "end": {"iterations": [train[-k]["iteration"], train[-1]["iteration"]], **_window(train[-k:], k)},
        "last_validation": {key: valid[-1].get(key) for key in ("iteration", *LOSSES)}
        if valid else None,
        "tokens_per_s": _mean([r["tokens_per_s"] for r in steady]),
        "ms_per_iter": _mean([r.get("ms_per_iter") for r in steady]),
        "tflops_per_device": _mean([r.get("tflops_per_device") for r in steady]),
        "mfu": _mean([r.get("mfu") for r in steady]),
        "memory_gib": max((r.get("memory_gib") or 0.0) for r in train),
    }
