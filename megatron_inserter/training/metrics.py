"""Where training numbers go: a log line every ``--log-interval``, TensorBoard scalars and one jsonl record
per iteration (and per validation), and a loss-curve PNG at the end. Only global rank 0 writes.

On a resumed run the jsonl keeps the records up to the resumed iteration (rewritten atomically), so the
file and the plot show one clean history.

The numbers are global: the trainer reduces every loss over the data-parallel and context-parallel ranks
before it gets here (``engine.reduce_loss_sums``). The log line shows the modality gap per blend component
as ``gap [name] S/R``: loss after speech over loss after random text (the matched control).
"""

from __future__ import annotations

import json
import math
import os
import sys

import torch.distributed as dist

from megatron_inserter.files import atomic_write
from megatron_inserter.training.losses import (
    AFTER_RANDOM_TEXT,
    AFTER_SPEECH,
    AFTER_TEXT,
    LM_LOSS,
    component_loss_name,
)

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss_curve.png"


def _is_writer() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def _finite(x):
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def read_metrics(path: str) -> list[dict]:
    """Records of a metrics.jsonl; a torn last line (a killed run) is ignored."""
    out = []
    if not os.path.isfile(path):
        return out
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return out


class MetricsLogger:
    def __init__(self, log_dir: str | None, tensorboard_dir: str | None, start_iteration: int):
        self.enabled = _is_writer()
        self.log_dir = log_dir
        self._jsonl = None
        self._tb = None
        if not self.enabled:
            return
        if log_dir:
            os.makedirs(log_dir, exist_ok=True)
            path = os.path.join(log_dir, METRICS_FILE)
            kept = [r for r in read_metrics(path) if r.get("iteration", 0) <= start_iteration]
            with atomic_write(path, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in kept)
            self._jsonl = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the run, closed in close()
        if tensorboard_dir:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=tensorboard_dir, purge_step=start_iteration + 1)

    def record(self, kind: str, iteration: int, values: dict) -> None:
        if not self.enabled:
            return
        clean = {k: _finite(v) if isinstance(v, float) else v for k, v in values.items()}
        if self._jsonl is not None:
            self._jsonl.write(json.dumps({"kind": kind, "iteration": iteration, **clean}) + "\n")
            self._jsonl.flush()
        if self._tb is not None:
            for k, v in clean.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None:
                    self._tb.add_scalar(f"{kind}/{k}", v, iteration)

    def line(self, text: str) -> None:
        if self.enabled:
            print(text, file=sys.stdout, flush=True)

    def close(self) -> str | None:
        """Flush, close and draw the loss curve; returns the PNG path (None when there is no log dir)."""
        if not self.enabled:
            return None
        if self._tb is not None:
            self._tb.close()
        if self._jsonl is not None:
            self._jsonl.close()
        if not self.log_dir:
            return None
        return plot_loss_curve(os.path.join(self.log_dir, METRICS_FILE), os.path.join(self.log_dir, PLOT_FILE))


def format_train_line(iteration: int, train_iters: int, v: dict) -> str:
    parts = [f"iteration {iteration:>7d}/{train_iters}", f"consumed samples {v['consumed_samples']}",
             f"lr {v['lr']:.3e}"]
    for name in (LM_LOSS, AFTER_SPEECH, AFTER_TEXT, AFTER_RANDOM_TEXT):
        if v.get(name) is not None:
            parts.append(f"{name} {v[name]:.4f}")
    for component in components_of(v):
        speech = v.get(component_loss_name(AFTER_SPEECH, component))
        control = v.get(component_loss_name(AFTER_RANDOM_TEXT, component))
        if speech is not None and control is not None and math.isfinite(speech) and math.isfinite(control):
            parts.append(f"gap [{component}] {speech:.3f}/{control:.3f}")
    if v.get("grad_norm") is not None:
        parts.append(f"grad norm {v['grad_norm']:.3f}")
    parts.append(f"{v['ms_per_iter']:.1f} ms/iter")
    parts.append(f"{v['tokens_per_s']:.0f} tokens/s")
    if v.get("tflops_per_device") is not None:
        parts.append(f"{v['tflops_per_device']:.3g} TFLOP/s/device")
    if v.get("mfu") is not None:
        parts.append(f"MFU {100 * v['mfu']:.1f}%")
    parts.append(f"mem {v['memory_gib']:.2f} GiB")
    if v.get("skipped"):
        parts.append(f"skipped {v['skipped']}")
    return " | ".join(parts)


def components_of(values: dict) -> list[str]:
    """The blend components that have per-component losses in a record, in order."""
    prefix = AFTER_SPEECH + " ["
    return [k[len(prefix):-1] for k in values if k.startswith(prefix) and k.endswith("]")]


def _smooth(values, weight: float = 0.9) -> list[float]:
    """Exponential moving average with bias correction (as TensorBoard's smoothing)."""
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight ** i))
    return out


def plot_loss_curve(metrics_path: str, png_path: str) -> str | None:
    records = read_metrics(metrics_path)
    train = [r for r in records if r.get("kind") == "train"]
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    raw = [(r["iteration"], r[LM_LOSS]) for r in train if r.get(LM_LOSS) is not None]
    if raw:
        ax.plot(*zip(*raw), "-", color="0.75", linewidth=0.8, label=f"train {LM_LOSS} (per step)")
    for name, style in ((LM_LOSS, "-"), (AFTER_SPEECH, "--"), (AFTER_TEXT, ":"), (AFTER_RANDOM_TEXT, "-.")):
        pts = [(r["iteration"], r[name]) for r in train if r.get(name) is not None]
        if pts:
            its, vals = zip(*pts)
            ax.plot(its, _smooth(vals), style, label=f"train {name} (smoothed)", linewidth=1.5)
    val = [(r["iteration"], r[LM_LOSS]) for r in records if r.get("kind") == "valid" and r.get(LM_LOSS) is not None]
    if val:
        ax.plot(*zip(*val), "o-", label=f"valid {LM_LOSS}", markersize=3)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (nats per text token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_write(png_path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)
    return png_path
