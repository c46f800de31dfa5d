"""One document -> one interleaved sample: spans chosen, spoken, checked and laid out as a ``ShardDocument``.

Every span is spoken in the language of its own letters (``language.span_language``) by a voice of that
language: an English document quoting a Chinese sentence has that sentence read by a Mandarin voice. A
span that mixes scripts, or whose script no voice of the backend reads, stays text. A span whose synthesis
fails, or whose audio fails the ASR round trip (``--max-span-wer``), is spoken again by another voice, up to
``tts_attempts`` voices, and otherwise stays text. A span that stays text merges with the text around it,
so the segment texts still concatenate to the document exactly.

Speech cap. Spans are taken in a random order (the document's own generator), and accepted in that order
until the next one would push the document past ``max_speech_seconds_per_doc``: when the cap binds, the
spoken spans are a random subset spread over the whole document, not its first spans. Spans are handed
to the TTS only while the speech accepted so far plus an estimate of the spans in flight stays under the
cap, so a binding cap wastes little synthesis; which spans were synthesized never changes the outcome.

Everything random is keyed on (seed, input file, document id[, span index]): the spans, the order, the
first voice of each span (per span or per document, ``speaker_policy``), the further voices of a retried
span, the speed sent to servers and the noise (``noise.py``). ``DocumentJob`` holds one document's state;
``schedule.py`` runs many at once (``Scheduler``) or one (``build_sample``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from megatron_inserter.data.document import Segment, ShardDocument, SpeechSegment, TextSegment, TTSControls
from megatron_inserter.data.synth.asr.base import round_trip_error
from megatron_inserter.data.synth.config import SynthConfig
from megatron_inserter.data.synth.corpus import Document
from megatron_inserter.data.synth.language import span_language
from megatron_inserter.data.synth.noise import add_noise, draw_noise
from megatron_inserter.data.synth.shards import encode_flac
from megatron_inserter.data.synth.spans import (
    SpanConfig,
    document_rngs,
    segment_ranges,
    select_spans,
    span_rng,
)
from megatron_inserter.data.synth.speakers import choose_speakers_by_language, other_voice
from megatron_inserter.data.synth.stats import SynthStats, wer_bucket
from megatron_inserter.data.synth.tts.base import SAMPLE_RATE, TTSBackend, TTSRequest

MIN_SPEECH_SAMPLES = SAMPLE_RATE // 10  # shorter audio (0.1 s) counts as a failed synthesis
SECONDS_PER_CHAR = {"en": 1 / 14, "zh": 1 / 4}  # first guess of a span's duration, until the document has audio


@dataclass
class Sample:
    document: ShardDocument
    audio: dict[str, bytes]  # "0.flac" -> FLAC bytes, one per speech segment

    @property
    def key(self) -> str:
        return self.document.key


@dataclass
class SpanTask:
    """One attempt at speaking one span: ``slot`` indexes the job's speakable spans (document order)."""

    job: DocumentJob
    slot: int
    attempt: int  # 0-based: the voice tried
    request: TTSRequest
    audio: np.ndarray | None = None
    controls: TTSControls = field(default_factory=TTSControls)
    model: str | None = None


@dataclass
class _Spoken:
    task: SpanTask
    wer: float | None


def span_config(cfg: SynthConfig) -> SpanConfig:
    return SpanConfig(cfg.span_mode, cfg.speech_ratio, cfg.min_span_words, cfg.max_span_words)


def usable(audio) -> bool:
    return audio is not None and len(audio) >= MIN_SPEECH_SAMPLES and bool(np.isfinite(audio).all())


class DocumentJob:
    """One document's way to a sample. The scheduler asks ``take_tasks`` for TTS work, reports audio with
    ``on_audio`` (which says whether the clip must be transcribed) and transcripts with ``on_transcript``,
    and calls ``finish`` once ``done``."""

    def __init__(self, doc: Document, cfg: SynthConfig, backend: TTSBackend, check: bool = False):
        self.doc, self.cfg, self.backend, self.check = doc, cfg, backend, check
        self.stats = SynthStats()
        self.reason: str | None = None
        self.retries: list[SpanTask] = []
        self.outcomes: dict[int, _Spoken | None] = {}
        self.submitted = self.decided = 0  # positions in ``order``
        self.accepted_samples = 0
        self.stopped = False
        self.gave_up: dict[int, str] = {}  # slot -> "tts" or "asr": why a span stayed text
        self._observed = [0.0, 0]  # seconds of audio, characters spoken (duration estimate)
        if doc.lang not in backend.languages:
            self.reason = "unsupported_language"
            return
        span_gen, speaker_gen = document_rngs(cfg.seed, doc.id, doc.source)
        self.selection = select_spans(doc.text, doc.lang, span_config(cfg), span_gen)
        if not self.selection.spans:
            self.reason = "too_short"
            return
        langs = [span_language(doc.text[s.start:s.end], doc.lang) for s in self.selection.spans]
        langs = [lang if lang in backend.languages else None for lang in langs]
        pools = {lang: backend.speakers(lang) for lang in sorted({doc.lang, *filter(None, langs)})}
        speakers = choose_speakers_by_language(pools, langs, doc.lang, cfg.speaker_policy, speaker_gen)
        speakable = [i for i, lang in enumerate(langs) if lang is not None]
        self.stats.spans_unspeakable += len(langs) - len(speakable)
        if not speakable:
            self.reason = "no_speakable_span"
            return
        self.span_index = speakable  # slot -> index of the span in the selection
        self.langs = [langs[i] for i in speakable]
        self.first_voice = [speakers[i] for i in speakable]
        self.pools = pools
        self.tried: list[list[str]] = [[] for _ in speakable]
        self.order = [int(i) for i in span_gen.permutation(len(speakable))]
        self.cap = int(cfg.max_speech_seconds_per_doc * SAMPLE_RATE)

    # --- state --------------------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.reason is not None or self.stopped or self.decided == len(self.order)

    def _text(self, slot: int) -> str:
        span = self.selection.spans[self.span_index[slot]]
        return self.doc.text[span.start:span.end]

    def _estimate(self, slot: int) -> int:
        seconds, chars = self._observed
        per_char = seconds / chars if chars else SECONDS_PER_CHAR.get(self.langs[slot], 1 / 10)
        return int(len(self._text(slot)) * per_char * SAMPLE_RATE)

    def _room(self) -> bool:
        """Whether the speech accepted so far plus the spans handed out but not yet decided (their audio
        when it is in, an estimate otherwise) stays under the cap."""
        ahead = 0
        for slot in self.order[self.decided:self.submitted]:
            if slot in self.outcomes:
                spoken = self.outcomes[slot]
                ahead += len(spoken.task.audio) if spoken is not None else 0
            else:
                ahead += self._estimate(slot)
        return self.decided == self.submitted or self.accepted_samples + ahead < self.cap

    def _task(self, slot: int, attempt: int) -> SpanTask:
        if attempt == 0:
            voice = self.first_voice[slot]
        else:
            gen = span_rng(self.cfg.seed, self.doc.id, self.doc.source, self.span_index[slot], f"voice-{attempt}")
            voice = other_voice(self.pools[self.langs[slot]], self.tried[slot], gen)
        self.tried[slot].append(voice)
        speed = None
        if self.backend.takes_speed:
            lo, hi = self.cfg.speed_range
            gen = span_rng(self.cfg.seed, self.doc.id, self.doc.source, self.span_index[slot], "speed")
            speed = lo if lo == hi else round(float(gen.uniform(lo, hi)), 3)
        return SpanTask(self, slot, attempt, TTSRequest(self._text(slot), self.langs[slot], voice, speed))

    def take_tasks(self, limit: int) -> list[SpanTask]:
        """Up to ``limit`` spans to synthesize now: retries first, then spans in order while under the cap."""
        if self.done:
            return []
        out, self.retries = self.retries[:limit], self.retries[limit:]
        while len(out) < limit and self.submitted < len(self.order) and self._room():
            out.append(self._task(self.order[self.submitted], 0))
            self.submitted += 1
        return out

    # --- results ------------------------------------------------------------------------------------------

    def on_audio(self, task: SpanTask, audio: np.ndarray | None) -> bool:
        """The TTS result of ``task`` (``None``: failed). Returns True when the clip must now be transcribed."""
        if self.done:
            return False
        if not usable(audio):
            self._retry_or_give_up(task, tts_failed=True)
            return False
        model, controls = self.backend.describe(task.request)
        noise_gen = span_rng(self.cfg.seed, self.doc.id, self.doc.source, self.span_index[task.slot], "noise")
        choice = draw_noise(noise_gen, self.cfg.noise_share, self.cfg.noise_range)
        if choice is not None and float(np.mean(np.square(audio, dtype=np.float64))) > 0:
            audio, gain = add_noise(audio, choice, noise_gen)
            controls = replace(controls, noise=choice.kind, snr_db=choice.snr_db)
            if gain != 1.0:  # scaled down with its noise to stay below full scale
                controls = replace(controls, volume=(1.0 if controls.volume is None else controls.volume) * gain)
        task.audio, task.model, task.controls = audio, model, controls
        if self.check:
            return True
        self._settle(task, None)
        return False

    def on_transcript(self, task: SpanTask, transcript: str | None) -> None:
        if self.done:
            return
        wer = round_trip_error(task.request.text, transcript, task.request.language)
        self.stats.asr_checked += 1
        if wer is not None:
            key = wer_bucket(wer)
            self.stats.asr_wer_hist[key] = self.stats.asr_wer_hist.get(key, 0) + 1
            self.stats.asr_wer_sum += wer
        limit = self.cfg.max_span_wer
        if limit is None or (wer is not None and wer <= limit) or (wer is None and transcript is not None):
            self._settle(task, wer)  # passed (or nothing to score: a span without words after normalization)
            return
        self._retry_or_give_up(task, tts_failed=False)

    def _retry_or_give_up(self, task: SpanTask, tts_failed: bool) -> None:
        if task.attempt + 1 < self.cfg.tts_attempts:
            if tts_failed:
                self.stats.tts_retries += 1
            else:
                self.stats.asr_resynthesized += 1
            self.retries.append(self._task(task.slot, task.attempt + 1))
            return
        self.outcomes[task.slot] = None
        self.gave_up[task.slot] = "tts" if tts_failed else "asr"
        self._decide()

    def _settle(self, task: SpanTask, wer: float | None) -> None:
        self.outcomes[task.slot] = _Spoken(task, wer)
        self._observed[0] += len(task.audio) / SAMPLE_RATE
        self._observed[1] += len(task.request.text)
        self._decide()

    def _decide(self) -> None:
        """Take finished spans in ``order``: a span that stayed text is counted, a spoken one accepted until
        one would pass the cap; that one and all after it stay text."""
        while self.decided < len(self.order):
            slot = self.order[self.decided]
            if slot not in self.outcomes:
                return
            spoken = self.outcomes[slot]
            if spoken is None:
                if self.gave_up[slot] == "tts":
                    self.stats.spans_failed += 1
                else:
                    self.stats.spans_asr_rejected += 1
            elif self.accepted_samples + len(spoken.task.audio) > self.cap:
                self.stopped = True
                self.stats.spans_capped += len(self.order) - self.decided
                decided = set(self.order[:self.decided])
                self.outcomes = {s: o for s, o in self.outcomes.items() if s in decided}
                return
            else:
                self.accepted_samples += len(spoken.task.audio)
            self.decided += 1

    # --- the sample ---------------------------------------------------------------------------------------

    def finish(self) -> tuple[Sample | None, str | None, SynthStats]:
        """``(sample, None, stats)`` or ``(None, skip reason, stats)``; stats hold this document's counters."""
        stats, doc = self.stats, self.doc
        if self.reason is not None:
            return None, self.reason, stats
        kept = {self.selection.spans[self.span_index[slot]].start: o for slot, o in self.outcomes.items()
                if o is not None}
        if not kept:
            return None, ("asr_rejected" if "asr" in self.gave_up.values() else "tts_failed"), stats
        spans = [s for s in self.selection.spans if s.start in kept]
        segments: list[Segment] = []
        members: dict[str, bytes] = {}
        for kind, start, end in segment_ranges(len(doc.text), spans):
            if kind == "text":
                segments.append(TextSegment(doc.text[start:end]))
                continue
            spoken = kept[start]
            task, audio = spoken.task, spoken.task.audio
            name = f"{len(members)}.flac"
            members[name] = encode_flac(audio)
            req = task.request
            segments.append(SpeechSegment(
                text=req.text, audio=name, duration=len(audio) / SAMPLE_RATE, num_samples=len(audio),
                sample_rate=SAMPLE_RATE, speaker=req.speaker, language=req.language, tts=self.backend.name,
                tts_model=task.model, controls=task.controls, gender=self.backend.gender(req.speaker),
                asr_wer=spoken.wer,
            ))
            stats.speech_seconds += len(audio) / SAMPLE_RATE
            stats.spans_by_lang[req.language] = stats.spans_by_lang.get(req.language, 0) + 1
            if task.controls.noise:
                stats.spans_noisy += 1
                stats.noise_types[task.controls.noise] = stats.noise_types.get(task.controls.noise, 0) + 1
        stats.spans += len(kept)
        stats.words += self.selection.num_words
        stats.spoken_words += sum(span.num_words for span in spans)
        stats.docs_written += 1
        stats.docs_by_lang[doc.lang] = 1
        shard_doc = ShardDocument(doc.id, tuple(segments), lang=doc.lang, source=doc.source)
        return Sample(shard_doc, members), None, stats

