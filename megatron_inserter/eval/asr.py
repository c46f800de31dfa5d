"""ASR evaluation: WER for English and CER for Chinese on NeMo-style manifests.

A manifest is jsonl with ``audio_filepath`` (relative paths are relative to the manifest) and ``text``, and
optionally ``lang``/``language`` (``en``; ``zh``/``cn``) and ``id``. Without a language field the row's
language is ``--language``, or with ``auto`` Chinese when the reference has CJK ideographs.

The model is asked to transcribe each clip (the prompt depends on the language). References and hypotheses
are normalized as described in :mod:`megatron_inserter.eval.text_norm`. When NeMo is importable, its
``word_error_rate`` is computed on the same normalized texts and must agree (``nemo_cross_check`` in the
results). Outputs in ``--output``: ``asr_hypotheses.jsonl`` (resumable), ``asr_scored.jsonl``,
``asr_results.json`` and ``asr_results.md``. Rows without a string ``audio_filepath`` and ``text``, or whose
audio file is missing, are skipped and listed (file:line and reason) on stderr and in the results.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from megatron_inserter.eval.manifest import (
    ManifestTask,
    load_stats,
    read_manifest,
    resolve_audio,
    unique_uids,
)
from megatron_inserter.eval.records import write_json_atomic, write_jsonl_atomic, write_text_atomic
from megatron_inserter.eval.responder import EvalRequest, Responder, SamplingParams
from megatron_inserter.eval.skips import Skips
from megatron_inserter.eval.task import EvalConfig, run
from megatron_inserter.eval.text_norm import error_counts, normalize_chinese, normalize_english

DEFAULT_PROMPTS = {"en": "Transcribe the speech into text.", "zh": "请将这段语音转写为文字。"}
LANGUAGE_ALIASES = {"en": "en", "english": "en", "zh": "zh", "cn": "zh", "chinese": "zh", "zh-cn": "zh"}


@dataclass
class AsrConfig(EvalConfig):
    language: str = "auto"  # auto | en | zh
    prompts: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PROMPTS))
    sampling: SamplingParams = field(default_factory=lambda: SamplingParams(max_new_tokens=448))
    nemo_cross_check: bool = True


def row_language(row: dict, default: str) -> str:
    value = str(row.get("lang", row.get("language", ""))).strip().lower()
    if value in LANGUAGE_ALIASES:
        return LANGUAGE_ALIASES[value]
    if default != "auto":
        return default
    return "zh" if any("\u4e00" <= c <= "\u9fff" for c in str(row.get("text", ""))) else "en"


def load_manifest(path: Path, config: AsrConfig, skips: Skips | None = None) -> tuple[list[dict], dict]:
    """Rows with ``uid``, ``lang`` and resolved ``audio``; bad rows are counted skips, not fatal."""
    skips = Skips() if skips is None else skips
    rows, skipped = [], 0
    for i, (where, row) in enumerate(read_manifest(path)):
        reason = row if isinstance(row, str) else None
        if reason is None:
            audio, text = row.get("audio_filepath"), row.get("text")
            if not isinstance(audio, str) or not audio or not isinstance(text, str):
                reason = "needs string fields audio_filepath and text"
            elif not resolve_audio(audio, path).is_file():
                reason = f"audio file {resolve_audio(audio, path)} not found"
        if reason is not None:
            skips.add("input", where, reason)
            skipped += 1
            continue
        line = where.rsplit(":", 1)[1]
        uid = str(row.get("id", row.get("utt_id", f"line{line}")))
        rows.append({**row, "uid": uid, "lang": row_language(row, config.language),
                     "audio": str(resolve_audio(row["audio_filepath"], path))})
    unique_uids(rows)
    return rows, load_stats(rows, skipped, skips)


class AsrTask(ManifestTask):
    command, kind, stem = "asr", "asr", "asr_hypotheses"
    table = "asr_results.md"

    def read(self) -> tuple[list[dict], dict]:
        return load_manifest(self.manifest, self.config, self.skips)

    def request(self, row: dict) -> EvalRequest:
        return self.audio_request(row, self.config.prompts[row["lang"]])

    def score(self, rows: list[dict]) -> dict:
        metrics, details = score_asr(rows, self.config.nemo_cross_check)
        config = {"manifest": str(self.manifest), "language": self.config.language,
                  "prompts": self.config.prompts, "sampling": asdict(self.config.sampling)}
        return {"metrics": metrics, "details": details, "config": config}

    def write(self, rows: list[dict], results: dict) -> None:
        out = Path(self.config.output_dir)
        write_jsonl_atomic(out / "asr_scored.jsonl", rows)
        write_json_atomic(out / "asr_results.json", results)
        write_text_atomic(out / self.table, markdown(results["metrics"], results["details"], self.config.name))


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
                    f"inserter eval asr: warning: {lang} {metric} {value:.4f} but NeMo gives {nemo:.4f}", file=sys.stderr
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
    """Transcribe (this rank's slice of) the manifest; on rank 0 score and write. None on other ranks."""
    return run(AsrTask(manifest, config), responder)

