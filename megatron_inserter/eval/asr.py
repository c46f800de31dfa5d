"""ASR evaluation: WER for English and CER for Chinese on NeMo-style manifests.

A manifest is jsonl with ``audio_filepath`` (relative paths are relative to the manifest) and ``text``, and
optionally ``lang``/``language`` (``en``; ``zh``/``cn``) and ``id``. Without a language field the row's
language is ``--language``, or with ``auto`` Chinese when the reference has CJK ideographs.

The model is asked to transcribe each clip (the prompt depends on the language). References and hypotheses
are normalized as described in :mod:`megatron_inserter.eval.text_norm`. When NeMo is importable, its
``word_error_rate`` is computed on the same normalized texts and must agree (``nemo_cross_check`` in the
results). Outputs in ``--output``: ``asr_hypotheses.jsonl`` (resumable), ``asr_scored.jsonl``,
``asr_results.json`` and ``asr_results.md``.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from megatron_inserter.eval.generate import PendingItem, gather_sharded, generate_sharded, is_answered
from megatron_inserter.eval.records import (
    read_jsonl,
    write_json_atomic,
    write_jsonl_atomic,
    write_text_atomic,
)
from megatron_inserter.eval.responder import EvalRequest, Responder, SamplingParams
from megatron_inserter.eval.text_norm import error_counts, normalize_chinese, normalize_english

DEFAULT_PROMPTS = {"en": "Transcribe the speech into text.", "zh": "请将这段语音转写为文字。"}
LANGUAGE_ALIASES = {"en": "en", "english": "en", "zh": "zh", "cn": "zh", "chinese": "zh", "zh-cn": "zh"}


@dataclass
class AsrConfig:
    output_dir: Path
    name: str = "model"
    language: str = "auto"  # auto | en | zh
    prompts: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PROMPTS))
    system_prompt: str | None = None
    sampling: SamplingParams = field(default_factory=lambda: SamplingParams(max_new_tokens=448))
    batch_size: int = 8
    dp_rank: int = 0
    dp_size: int = 1
    gather_timeout_s: float = 0.0
    nemo_cross_check: bool = True
    progress: bool = True


def row_language(row: dict, default: str) -> str:
    value = str(row.get("lang", row.get("language", ""))).strip().lower()
    if value in LANGUAGE_ALIASES:
        return LANGUAGE_ALIASES[value]
    if default != "auto":
        return default
    return "zh" if any("\u4e00" <= c <= "\u9fff" for c in str(row.get("text", ""))) else "en"


def load_manifest(path: Path, config: AsrConfig) -> tuple[list[dict], dict]:
    """Rows with ``uid``, ``lang`` and resolved ``audio``; bad rows are counted, not fatal."""
    read = read_jsonl(path)
    rows, skipped = [], [str(b) for b in read.bad_lines]
    for i, row in enumerate(read.rows):
        audio, text = row.get("audio_filepath"), row.get("text")
        if not isinstance(audio, str) or not isinstance(text, str):
            skipped.append(f"{path}:{i + 1}: needs string fields audio_filepath and text")
            continue
        audio_path = Path(audio) if Path(audio).is_absolute() else path.parent / audio
        if not audio_path.is_file():
            skipped.append(f"{path}:{i + 1}: audio file {audio_path} not found")
            continue
        uid = str(row.get("id", row.get("utt_id", f"line{i + 1}")))
        rows.append({**row, "uid": uid, "lang": row_language(row, config.language), "audio": str(audio_path)})
    if len({r["uid"] for r in rows}) != len(rows):
        for i, row in enumerate(rows):
            row["uid"] = f"{row['uid']}#{i}"
    return rows, {"rows": len(rows), "skipped": len(skipped), "first_skipped": skipped[:20]}


def normalize(text: str, lang: str) -> str:
    return normalize_chinese(text) if lang == "zh" else normalize_english(text)


def nemo_error_rate(references: list[str], hypotheses: list[str], use_cer: bool) -> float | None:
    """NeMo's corpus WER/CER in percent, or None when NeMo is not installed."""
    if importlib.util.find_spec("nemo") is None:
        return None
    from nemo.collections.asr.metrics.wer import word_error_rate

    return 100.0 * word_error_rate(hypotheses, references, use_cer=use_cer)


def score_asr(rows: list[dict], nemo_cross_check: bool = True) -> tuple[dict, dict]:
    """(metrics, details) from rows carrying ``text``, ``lang`` and ``response``; fills ``ref_norm`` and
    ``hyp_norm``."""
    metrics, details = {}, {}
    for lang, unit, metric in (("en", "word", "wer"), ("zh", "char", "cer")):
        group = [r for r in rows if r["lang"] == lang]
        answered = [r for r in group if isinstance(r.get("response"), str)]
        if not group:
            continue
        for r in answered:
            r["ref_norm"], r["hyp_norm"] = normalize(r["text"], lang), normalize(r["response"], lang)
        refs, hyps = [r["ref_norm"] for r in answered], [r["hyp_norm"] for r in answered]
        edits, total = error_counts(refs, hyps, unit)
        value = 100.0 * edits / total if total else None
        entry = {
            metric: value,
            "edits": edits,
            "reference_units": total,
            "utterances": len(answered),
            "unanswered": len(group) - len(answered),
            "unit": unit,
        }
        if nemo_cross_check and total:
            # NeMo counts characters of the raw string; Chinese normalized text has no spaces, so units agree.
            nemo = nemo_error_rate(refs, hyps, use_cer=unit == "char")
            entry["nemo_cross_check"] = (
                None if nemo is None else {"value": nemo, "agrees": math.isclose(nemo, value, abs_tol=1e-9)}
            )
            if nemo is not None and not entry["nemo_cross_check"]["agrees"]:
                print(
                    f"[asr] WARNING: {lang} {metric} {value:.4f} but NeMo gives {nemo:.4f}", file=sys.stderr
                )
        if value is not None:
            metrics[f"{lang}/{metric}"] = value
        details[lang] = entry
    return metrics, details


def markdown(metrics: dict, details: dict, name: str) -> str:
    lines = [
        f"### ASR: {name}",
        "",
        "| Language | Metric | Value (%) | Utterances | Unanswered |",
        "|---|---|---|---|---|",
    ]
    for lang, entry in details.items():
        metric = "wer" if lang == "en" else "cer"
        value = entry.get(metric)
        shown = "–" if value is None else f"{value:.2f}"
        lines.append(
            f"| {lang} | {metric.upper()} | {shown} | {entry['utterances']} | {entry['unanswered']} |"
        )
    lines += ["", "Normalization: megatron_inserter.eval.text_norm (English words, Chinese characters).", ""]
    return "\n".join(lines)


def run_asr(manifest: Path, responder: Responder, config: AsrConfig) -> dict | None:
    rows, load_stats = load_manifest(manifest, config)
    if not rows:
        raise ValueError(f"{manifest}: no usable rows ({load_stats['first_skipped'][:3]})")
    items = [
        PendingItem(
            r["uid"],
            EvalRequest(
                text_prompt=config.prompts[r["lang"]],
                audio_path=r["audio"],
                system_prompt=config.system_prompt,
                sampling=config.sampling,
                request_id=r["uid"],
            ),
        )
        for r in rows
    ]
    generation = generate_sharded(
        items,
        responder,
        config.output_dir,
        "asr_hypotheses",
        config.dp_rank,
        config.dp_size,
        config.batch_size,
        config.progress,
    )
    if config.dp_rank != 0:
        return None
    records = gather_sharded(config.output_dir, "asr_hypotheses", config.dp_size, config.gather_timeout_s)
    if records is None:
        return None
    for row in rows:
        record = records.get(row["uid"])
        if is_answered(record):
            row["response"] = record["response"]
    metrics, details = score_asr(rows, config.nemo_cross_check)
    results = {
        "kind": "asr",
        "name": config.name,
        "metrics": metrics,
        "details": details,
        "config": {
            "manifest": str(manifest),
            "language": config.language,
            "prompts": config.prompts,
            "sampling": asdict(config.sampling),
        },
        "stats": {"load": load_stats, "generation_rank0": generation},
    }
    write_jsonl_atomic(config.output_dir / "asr_scored.jsonl", rows)
    write_json_atomic(config.output_dir / "asr_results.json", results)
    write_text_atomic(config.output_dir / "asr_results.md", markdown(metrics, details, config.name))
    return results
