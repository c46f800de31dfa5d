"""One document -> one sample: retries, failed spans falling back to text, the per-document speech cap."""

import itertools

import numpy as np

from megatron_inserter.data.synth.config import SynthConfig
from megatron_inserter.data.synth.corpus import Document
from megatron_inserter.data.synth.document import build_sample
from megatron_inserter.data.synth.tts.base import SAMPLE_RATE, TTSBackend

TEXT = " ".join(f"Sentence {i} has some plain words in it for the test." for i in range(30))


class FakeBackend(TTSBackend):
    """One second of tone per request; fails on demand."""

    name = "fake"
    batch_size = 4

    def __init__(self, fail_always=(), fail_first=()):
        self.fail_always, self.fail_first = set(fail_always), set(fail_first)
        self.calls: dict[str, int] = {}

    def speakers(self, language):
        return [f"fake:{i}" for i in range(10)]

    def synthesize(self, requests):
        out = []
        for r in requests:
            self.calls[r.text] = self.calls.get(r.text, 0) + 1
            if r.text in self.fail_always or (r.text in self.fail_first and self.calls[r.text] == 1):
                out.append(np.zeros(0, dtype=np.float32))
            else:
                out.append(np.full(SAMPLE_RATE, 0.1, dtype=np.float32))
        return out


def _cfg(**kw):
    return SynthConfig(inputs=("x",), output_dir="o", **kw)


def _doc():
    return Document(id="d1", text=TEXT, lang="en", source="x", line=1)


def _span_texts(sample):
    return [s["text"] for s in sample.meta["segments"] if s["type"] == "speech"]


def _check_layout(sample):
    segs = sample.meta["segments"]
    assert "".join(s["text"] for s in segs) == TEXT
    for a, b in itertools.pairwise(segs):
        assert not (a["type"] == "text" and b["type"] == "text"), "text pieces must be merged"
    names = [s["audio"] for s in segs if s["type"] == "speech"]
    assert names == [f"{i}.flac" for i in range(len(names))] and set(sample.audio_members) == set(names)


def test_failed_span_is_retried_then_stays_text():
    reference, _, _ = build_sample(_doc(), _cfg(), FakeBackend())
    spans = _span_texts(reference)
    assert len(spans) >= 3
    backend = FakeBackend(fail_always={spans[0]}, fail_first={spans[1]})
    sample, reason, stats = build_sample(_doc(), _cfg(), backend)
    assert reason is None
    assert backend.calls[spans[0]] == 2 and backend.calls[spans[1]] == 2  # one retry each
    assert stats.spans_failed == 1 and stats.tts_retries == 2
    assert _span_texts(sample) == spans[1:]
    assert stats.spoken_words == sum(len(s.split()) for s in spans[1:])
    _check_layout(sample)


def test_all_spans_failing_skips_the_document():
    reference, _, _ = build_sample(_doc(), _cfg(), FakeBackend())
    sample, reason, stats = build_sample(_doc(), _cfg(), FakeBackend(fail_always=set(_span_texts(reference))))
    assert sample is None and reason == "tts_failed" and stats.docs_written == 0


def test_speech_cap_per_document():
    full, _, _ = build_sample(_doc(), _cfg(), FakeBackend())
    n = len(_span_texts(full))
    sample, _, stats = build_sample(_doc(), _cfg(max_speech_seconds_per_doc=2.5), FakeBackend())
    assert _span_texts(sample) == _span_texts(full)[:2]
    assert stats.spans_capped == n - 2 and abs(stats.speech_seconds - 2.0) < 1e-9
    _check_layout(sample)


def test_speaker_policy():
    per_span, _, _ = build_sample(_doc(), _cfg(), FakeBackend())
    per_doc, _, _ = build_sample(_doc(), _cfg(speaker_policy="document"), FakeBackend())
    span_speakers = [s["speaker"] for s in per_span.meta["segments"] if s["type"] == "speech"]
    doc_speakers = [s["speaker"] for s in per_doc.meta["segments"] if s["type"] == "speech"]
    assert len(set(doc_speakers)) == 1 and len(set(span_speakers)) > 1
    assert _span_texts(per_span) == _span_texts(per_doc)  # the speaker draw never moves the spans
