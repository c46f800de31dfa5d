"""The demo's summary: written to ``WORKDIR/summary.json`` and printed."""

from __future__ import annotations

import os

from megatron_inserter.files import write_json_atomic
from megatron_inserter.training.losses import AFTER_SPEECH, AFTER_TEXT, LM_LOSS
from megatron_inserter.training.metrics import METRICS_FILE, PLOT_FILE
from megatron_inserter.training.run_summary import summarize


def build_summary(demo, outputs: dict, wall_seconds: float) -> dict:
    logs = demo.path("train", "logs")
    summary = {
        "workdir": demo.workdir,
        "config": vars(demo.cfg) if not hasattr(demo.cfg, "__dataclass_fields__") else
        {k: getattr(demo.cfg, k) for k in demo.cfg.__dataclass_fields__},
        "stage_seconds": demo.timings,
        "wall_seconds_this_run": round(wall_seconds, 2),
        "data": {**outputs.get("synth", {}), **outputs.get("preprocess", {})},
        "training": summarize(os.path.join(logs, METRICS_FILE)),
        "generation": outputs.get("generate"),
        "files": {"checkpoint": outputs.get("train", {}).get("checkpoint"), "loss_plot": os.path.join(logs, PLOT_FILE),
                  "metrics": os.path.join(logs, METRICS_FILE), "tensorboard": demo.path("train", "tensorboard")},
    }
    for section in ("data",):
        summary[section].pop("seconds", None)
    path = demo.path("summary.json")
    write_json_atomic(path, summary)
    summary["files"]["summary"] = path
    return summary


def _f(x, spec=".4f") -> str:
    return "-" if x is None else format(x, spec)


def format_summary(s: dict) -> str:
    t = s["training"]
    lines = ["", "=== InSerter CPU demo: summary ===", "stage timings (s):"]
    for name, info in s["stage_seconds"].items():
        lines.append(f"  {name:<11} {info['seconds']:8.1f}{'  (done earlier)' if info['skipped'] else ''}")
    lines.append(f"  this run    {s['wall_seconds_this_run']:8.1f}")
    d = s["data"]
    if d.get("speech_seconds") is not None:
        lines.append(f"data: {d.get('docs_written')} documents, {d.get('spans')} speech spans, "
                     f"{d['speech_seconds'] / 60:.1f} min of speech (ratio {_f(d.get('speech_ratio'), '.2f')})")
    if t.get("iterations"):
        lines.append(f"training: {t['iterations']} steps, {_f(t['tokens_per_s'], '.0f')} tokens/s, "
                     f"{_f(t['ms_per_iter'], '.0f')} ms/step, {_f(t['tflops_per_device'], '.3g')} TFLOP/s, "
                     f"peak memory {_f(t['memory_gib'], '.2f')} GiB")
        lines.append(f"  {'':<14}{LM_LOSS:>12}{AFTER_SPEECH:>20}{AFTER_TEXT:>18}{'gap':>9}")
        for when in ("start", "end"):
            w = t[when]
            lines.append(f"  {when} (it {w['iterations'][0]}-{w['iterations'][1]})".ljust(16) +
                         f"{_f(w[LM_LOSS]):>12}{_f(w[AFTER_SPEECH]):>20}{_f(w[AFTER_TEXT]):>18}"
                         f"{_f(w.get('gap (after speech - after text)'), '+.3f'):>9}")
        v = t.get("last_validation")
        if v:
            lines.append(f"  validation at {v['iteration']}: {LM_LOSS} {_f(v[LM_LOSS])}, "
                         f"{AFTER_SPEECH} {_f(v[AFTER_SPEECH])}, {AFTER_TEXT} {_f(v[AFTER_TEXT])}")
    g = s.get("generation")
    if g:
        lines += ["spoken prompt (a document of the training corpus):",
                  f"  text before : ...{g['text_before_speech'][-80:]!r}",
                  f"  spoken      : {g['spoken_span']!r} ({g['speech_seconds']} s of audio)",
                  f"  expected    : {g['expected_continuation']!r}",
                  f"  greedy      : {g['greedy_continuation']!r}"]
    lines += [f"loss curve: {s['files']['loss_plot']}", f"summary: {s['files']['summary']}"]
    return "\n".join(lines)
