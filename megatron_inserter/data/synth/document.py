"""One document -> one interleaved sample: spans chosen, spoken, and laid out as text/speech segments.

A span whose synthesis fails (after retries) or that would push the document past
``max_speech_seconds_per_doc`` stays text; it simply merges with the text around it, so the segment texts
still concatenate to the document exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from megatron_inserter.data.synth.config import SynthConfig
from megatron_inserter.data.synth.corpus import Document
from megatron_inserter.data.synth.shards import encode_flac, sample_key
from megatron_inserter.data.synth.spans import SpanConfig, document_rngs, segment_ranges, select_spans
from megatron_inserter.data.synth.speakers import choose_speakers
from megatron_inserter.data.synth.stats import SynthStats
from megatron_inserter.data.synth.tts.base import SAMPLE_RATE, TTSBackend, TTSRequest

MIN_SPEECH_SAMPLES = SAMPLE_RATE // 10  # shorter audio (0.1 s) counts as a failed synthesis


@dataclass
class Sample:
    key: str
    meta: dict
    audio_members: dict[str, bytes]  # "0.flac" -> FLAC bytes


def span_config(cfg: SynthConfig) -> SpanConfig:
    return SpanConfig(cfg.span_mode, cfg.speech_ratio, cfg.min_span_words, cfg.max_span_words)


def _attempt(backend: TTSBackend, requests: list[TTSRequest], stats: SynthStats) -> list[np.ndarray | None]:
    t0 = time.perf_counter()
    try:
        audio = backend.synthesize(requests)
        if len(audio) != len(requests):
            raise RuntimeError(f"backend returned {len(audio)} results for {len(requests)} requests")
    except Exception:  # noqa: BLE001 - a failed batch is retried request by request
        audio = [None] * len(requests)
    finally:
        stats.tts_seconds += time.perf_counter() - t0
    return [a if a is not None and len(a) >= MIN_SPEECH_SAMPLES else None for a in audio]


def synthesize_spans(
    backend: TTSBackend, requests: list[TTSRequest], attempts: int, cap_seconds: float, stats: SynthStats
) -> tuple[list[np.ndarray | None], int, int]:
    """Audio per request in document order (``None``: stays text); returns (audio, failed, capped)."""
    out: list[np.ndarray | None] = [None] * len(requests)
    failed = capped = 0
    total = 0
    cap = int(cap_seconds * SAMPLE_RATE)
    step = max(1, backend.batch_size)
    for start in range(0, len(requests), step):
        idx = list(range(start, min(start + step, len(requests))))
        audio = _attempt(backend, [requests[i] for i in idx], stats)
        for _ in range(attempts - 1):
            missing = [j for j, a in enumerate(audio) if a is None]
            if not missing:
                break
            stats.tts_retries += len(missing)
            for j in missing:
                audio[j] = _attempt(backend, [requests[idx[j]]], stats)[0]
        for j, i in enumerate(idx):
            if audio[j] is None:
                failed += 1
            elif total + len(audio[j]) > cap:
                capped += len(requests) - i  # this span and all later ones stay text
                return out, failed, capped
            else:
                out[i] = audio[j]
                total += len(audio[j])
    return out, failed, capped


def build_sample(doc: Document, cfg: SynthConfig, backend: TTSBackend) -> tuple[Sample | None, str | None, SynthStats]:
    """``(sample, None, stats)`` or ``(None, skip reason, stats)``; stats hold this document's counters."""
    stats = SynthStats()
    if doc.lang not in backend.languages:
        return None, "unsupported_language", stats
    span_rng, speaker_rng = document_rngs(cfg.seed, doc.id)
    selection = select_spans(doc.text, doc.lang, span_config(cfg), span_rng)
    if not selection.spans:
        return None, "too_short", stats
    speakers = choose_speakers(backend.speakers(doc.lang), len(selection.spans), cfg.speaker_policy, speaker_rng)
    requests = [TTSRequest(doc.text[s.start:s.end], doc.lang, spk) for s, spk in zip(selection.spans, speakers)]
    audio, failed, capped = synthesize_spans(
        backend, requests, cfg.tts_attempts, cfg.max_speech_seconds_per_doc, stats
    )
    stats.spans_failed += failed
    stats.spans_capped += capped
    kept = [(span, req, a) for span, req, a in zip(selection.spans, requests, audio) if a is not None]
    if not kept:
        return None, "tts_failed", stats

    by_start = {span.start: (req, a) for span, req, a in kept}
    segments, members = [], {}
    for kind, start, end in segment_ranges(len(doc.text), [span for span, _, _ in kept]):
        if kind == "text":
            segments.append({"type": "text", "text": doc.text[start:end]})
            continue
        req, a = by_start[start]
        name = f"{len(members)}.flac"
        members[name] = encode_flac(a)
        segments.append({
            "type": "speech", "text": req.text, "speaker": req.speaker, "duration": len(a) / SAMPLE_RATE,
            "sample_rate": SAMPLE_RATE, "num_samples": len(a), "audio": name,
        })
        stats.speech_seconds += len(a) / SAMPLE_RATE
    stats.spans += len(kept)
    stats.words += selection.num_words
    stats.spoken_words += sum(span.num_words for span, _, _ in kept)
    stats.docs_written += 1
    stats.docs_by_lang[doc.lang] = 1
    meta = {"id": doc.id, "lang": doc.lang, "source": doc.source, "segments": segments}
    return Sample(sample_key(doc.id), meta, members), None, stats
