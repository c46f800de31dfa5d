"""One document -> one interleaved sample: spans chosen, spoken, and laid out as a ``ShardDocument``.

Every span is spoken in the language of its own letters (``language.span_language``) by a voice of that
language: an English document quoting a Chinese sentence has that sentence read by a Mandarin voice. A
span that mixes scripts, or whose script no voice of the backend reads, stays text. So does a span whose
synthesis fails (after retries) or that would push the document past ``max_speech_seconds_per_doc``. A
span that stays text merges with the text around it, so the segment texts still concatenate to the
document exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from megatron_inserter.data.document import Segment, ShardDocument, SpeechSegment, TextSegment
from megatron_inserter.data.synth.config import SynthConfig
from megatron_inserter.data.synth.corpus import Document
from megatron_inserter.data.synth.language import span_language
from megatron_inserter.data.synth.shards import encode_flac
from megatron_inserter.data.synth.spans import SpanConfig, document_rngs, segment_ranges, select_spans
from megatron_inserter.data.synth.speakers import choose_speakers_by_language
from megatron_inserter.data.synth.stats import SynthStats
from megatron_inserter.data.synth.tts.base import SAMPLE_RATE, TTSBackend, TTSRequest

MIN_SPEECH_SAMPLES = SAMPLE_RATE // 10  # shorter audio (0.1 s) counts as a failed synthesis


@dataclass
class Sample:
    document: ShardDocument
    audio: dict[str, bytes]  # "0.flac" -> FLAC bytes, one per speech segment

    @property
    def key(self) -> str:
        return self.document.key


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
    return [a if a is not None and len(a) >= MIN_SPEECH_SAMPLES and np.isfinite(a).all() else None for a in audio]


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
    langs = [span_language(doc.text[s.start:s.end], doc.lang) for s in selection.spans]
    langs = [lang if lang in backend.languages else None for lang in langs]
    pools = {lang: backend.speakers(lang) for lang in sorted({doc.lang, *filter(None, langs)})}
    speakers = choose_speakers_by_language(pools, langs, doc.lang, cfg.speaker_policy, speaker_rng)
    speakable = [i for i, lang in enumerate(langs) if lang is not None]
    stats.spans_unspeakable += len(langs) - len(speakable)
    if not speakable:
        return None, "no_speakable_span", stats
    spans = [selection.spans[i] for i in speakable]
    requests = [TTSRequest(doc.text[s.start:s.end], langs[i], speakers[i]) for s, i in zip(spans, speakable)]
    audio, failed, capped = synthesize_spans(
        backend, requests, cfg.tts_attempts, cfg.max_speech_seconds_per_doc, stats
    )
    stats.spans_failed += failed
    stats.spans_capped += capped
    kept = [(span, req, a) for span, req, a in zip(spans, requests, audio) if a is not None]
    if not kept:
        return None, "tts_failed", stats

    by_start = {span.start: (req, a) for span, req, a in kept}
    segments: list[Segment] = []
    members: dict[str, bytes] = {}
    for kind, start, end in segment_ranges(len(doc.text), [span for span, _, _ in kept]):
        if kind == "text":
            segments.append(TextSegment(doc.text[start:end]))
            continue
        req, a = by_start[start]
        name = f"{len(members)}.flac"
        members[name] = encode_flac(a)
        model, controls = backend.describe(req)
        segments.append(SpeechSegment(
            text=req.text, audio=name, duration=len(a) / SAMPLE_RATE, num_samples=len(a), sample_rate=SAMPLE_RATE,
            speaker=req.speaker, language=req.language, tts=backend.name, tts_model=model, controls=controls,
        ))
        stats.speech_seconds += len(a) / SAMPLE_RATE
        stats.spans_by_lang[req.language] = stats.spans_by_lang.get(req.language, 0) + 1
    stats.spans += len(kept)
    stats.words += selection.num_words
    stats.spoken_words += sum(span.num_words for span, _, _ in kept)
    stats.docs_written += 1
    stats.docs_by_lang[doc.lang] = 1
    shard_doc = ShardDocument(doc.id, tuple(segments), lang=doc.lang, source=doc.source)
    return Sample(shard_doc, members), None, stats
