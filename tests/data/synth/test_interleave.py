"""One document -> one sample: retries, failed spans falling back to text, the per-document speech cap, spans
spoken in their own language, control characters never spoken."""

import itertools
import json

import numpy as np
import pytest

from megatron_inserter.data.document import SpeechSegment, TextSegment, from_members, to_members
from megatron_inserter.data.synth.config import SynthConfig
from megatron_inserter.data.synth.corpus import Document, parse_document
from megatron_inserter.data.synth.schedule import build_sample
from megatron_inserter.data.synth.tts.base import SAMPLE_RATE, TTSBackend

TEXT = " ".join(f"Sentence {i} has some plain words in it for the test." for i in range(30))


class FakeBackend(TTSBackend):
    """One second of tone per request; fails on demand."""

    name = "fake"
    batch_size = 4

    def __init__(self, fail_always=(), fail_first=()):
        self.fail_always, self.fail_first = set(fail_always), set(fail_first)
        self.calls: dict[str, int] = {}
        self.requests = []

    def speakers(self, language):
        return [f"fake-{language}:{i}" for i in range(10)]

    def synthesize(self, requests):
        out = []
        for r in requests:
            self.requests.append(r)
            self.calls[r.text] = self.calls.get(r.text, 0) + 1
            if r.text in self.fail_always or (r.text in self.fail_first and self.calls[r.text] == 1):
                out.append(np.zeros(0, dtype=np.float32))
            else:
                out.append(np.full(SAMPLE_RATE, 0.1, dtype=np.float32))
        return out


def _cfg(**kw):
    return SynthConfig(input=("x",), output_dir="o", **kw)


def _doc(text=TEXT, lang="en"):
    return Document(id="d1", text=text, lang=lang, source="x", line=1)


def _span_texts(sample):
    return [s.text for s in sample.document.segments if s.is_speech]


def _check_layout(sample, text=TEXT):
    segs = sample.document.segments
    assert "".join(s.text for s in segs) == text
    for a, b in itertools.pairwise(segs):
        assert not (isinstance(a, TextSegment) and isinstance(b, TextSegment)), "text pieces must be merged"
    names = [s.audio for s in segs if s.is_speech]
    assert names == [f"{i}.flac" for i in range(len(names))] and set(sample.audio) == set(names)
    assert from_members(to_members(sample.document, sample.audio)) == (sample.document, sample.audio)


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


def test_speech_cap_per_document_keeps_a_random_subset_of_the_spans():
    kept_first_two = 0
    for seed in range(6):
        full, _, _ = build_sample(_doc(), _cfg(seed=seed), FakeBackend())
        n = len(_span_texts(full))
        backend = FakeBackend()
        sample, _, stats = build_sample(_doc(), _cfg(seed=seed, max_speech_seconds_per_doc=2.5), backend)
        spoken = _span_texts(sample)
        assert len(spoken) == 2 and set(spoken) <= set(_span_texts(full))
        assert stats.spans_capped == n - 2 and abs(stats.speech_seconds - 2.0) < 1e-9
        assert len(backend.requests) <= 4 < n  # spans are handed out only while under the cap
        kept_first_two += spoken == _span_texts(full)[:2]
        _check_layout(sample)
    assert kept_first_two <= 1, "a binding cap must not keep the first spans only"


def test_speaker_policy():
    per_span, _, _ = build_sample(_doc(), _cfg(), FakeBackend())
    per_doc, _, _ = build_sample(_doc(), _cfg(speaker_policy="document"), FakeBackend())
    span_speakers = [s.speaker for s in per_span.document.segments if s.is_speech]
    doc_speakers = [s.speaker for s in per_doc.document.segments if s.is_speech]
    assert len(set(doc_speakers)) == 1 and len(set(span_speakers)) > 1
    assert _span_texts(per_span) == _span_texts(per_doc)  # the speaker draw never moves the spans


def test_speech_segments_record_voice_language_backend_and_duration():
    sample, _, _ = build_sample(_doc(), _cfg(), FakeBackend())
    speech = [s for s in sample.document.segments if isinstance(s, SpeechSegment)]
    assert speech and all(s.language == "en" and s.tts == "fake" and s.speaker.startswith("fake-en:")
                          for s in speech)
    assert all(s.num_samples == SAMPLE_RATE and s.duration == 1.0 and s.sample_rate == SAMPLE_RATE for s in speech)
    assert sample.document.lang == "en" and sample.document.source == "x"


MIXED = ("We walked to the old market this morning and heard a vendor shout. " * 3
         + "我们今天早上去了老市场，听到一个小贩在大声叫卖新鲜的水果和蔬菜。" * 3
         + "Then we went home for lunch with the whole family. " * 3)


@pytest.mark.parametrize("policy", ["span", "document"])
def test_a_mixed_language_document_speaks_each_span_in_its_own_language(policy):
    backend = FakeBackend()
    saw_zh = False
    for seed in range(8):
        sample, reason, stats = build_sample(_doc(MIXED), _cfg(span_mode="sentence", seed=seed,
                                                              speaker_policy=policy), backend)
        assert reason is None
        _check_layout(sample, MIXED)
        for seg in sample.document.speech:
            letters = [ch for ch in seg.text if ch.isalpha()]
            zh = any("\u4e00" <= ch <= "\u9fff" for ch in letters)
            assert seg.language == ("zh" if zh else "en") and seg.speaker.startswith(f"fake-{seg.language}:")
            assert not (zh and any(ch.isascii() for ch in letters)), "a span never mixes scripts"
            saw_zh |= zh
        assert sum(stats.spans_by_lang.values()) == stats.spans
    assert saw_zh
    assert all(r.speaker.startswith(f"fake-{r.language}:") for r in backend.requests)


def test_a_span_that_mixes_scripts_stays_text():
    text = " ".join(["在 Python 里面写 code 很有趣"] * 12)  # every word span holds both scripts
    sample, reason, stats = build_sample(_doc(text, "en"), _cfg(), FakeBackend())
    assert sample is None and reason == "no_speakable_span" and stats.spans_unspeakable > 0


def test_control_characters_are_never_spoken_nor_kept():
    dirty = TEXT.replace("plain", "pl\x1b[31mai\x1b[0mn\x07").replace("words", "wo\x00rds\x1b]0;title\x07")
    doc, reason = parse_document(json.dumps({"id": "d1", "text": dirty}).encode(), "x", 1, "text")
    assert reason is None and doc.text == TEXT and doc.removed_controls > 0
    backend = FakeBackend()
    sample, _, _ = build_sample(doc, _cfg(), backend)
    clean, _, _ = build_sample(_doc(), _cfg(), FakeBackend())
    assert sample.document == clean.document  # the same spans, transcripts and voices as the clean text
    assert backend.requests and not any(ch < " " or "\x7f" <= ch <= "\x9f" for r in backend.requests
                                        for ch in r.text)
