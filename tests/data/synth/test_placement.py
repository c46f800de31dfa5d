"""Where speech lands in a document: spread over the whole of a long document when the per-document cap
binds, and keyed on the full seed and the input file as well as the document id."""

import bisect
import random

import numpy as np

from megatron_inserter.data.synth.config import SynthConfig
from megatron_inserter.data.synth.corpus import Document
from megatron_inserter.data.synth.schedule import build_sample
from megatron_inserter.data.synth.spans import SpanConfig, document_rngs, select_spans, split_words
from megatron_inserter.data.synth.tts.base import SAMPLE_RATE, TTSBackend

WORDS = ["river", "valley", "the", "a", "mountain", "light", "quickly", "stone", "bridge", "of", "sea", "morning",
         "children", "walked", "over"]


class WordsBackend(TTSBackend):
    """Silence-free audio lasting ``seconds_per_word`` per word: fast, and the cap binds predictably."""

    name = "words"
    batch_size = 16

    def __init__(self, seconds_per_word: float):
        self.seconds_per_word = seconds_per_word

    def speakers(self, language):
        return [f"w{i}" for i in range(5)]

    def synthesize(self, requests):
        return [np.full(int(len(r.text.split()) * self.seconds_per_word * SAMPLE_RATE), 0.1, np.float32)
                for r in requests]


def long_document(n_words: int = 13_000, seed: int = 0) -> str:
    rnd = random.Random(seed)
    sentences, count = [], 0
    while count < n_words:
        k = rnd.randint(6, 20)
        sentences.append(" ".join(rnd.choice(WORDS) for _ in range(k)) + ".")
        count += k
    return " ".join(sentences)


def spoken_share_by_tenth(text: str, sample) -> tuple[float, list[float]]:
    words = split_words(text, "en")
    starts = [s for s, _ in words]
    spoken = np.zeros(len(words), dtype=bool)
    pos = 0
    for seg in sample.document.segments:
        if seg.is_speech:
            first = bisect.bisect_left(starts, pos)
            last = bisect.bisect_left(starts, pos + len(seg.text))
            spoken[first:last] = True
        pos += len(seg.text)
    n = len(words)
    return float(spoken.mean()), [float(spoken[n * k // 10:n * (k + 1) // 10].mean()) for k in range(10)]


def test_a_binding_cap_spreads_speech_over_the_whole_of_a_long_document():
    text = long_document()
    doc = Document(id="long", text=text, lang="en", source="books.jsonl", line=1)
    cfg = SynthConfig(input=("x",), output_dir="o", speech_ratio=0.3)  # cap: 600 s
    sample, reason, stats = build_sample(doc, cfg, WordsBackend(seconds_per_word=0.16))
    assert reason is None and stats.spans_capped > 0, "the cap must bind in this test"
    assert stats.speech_seconds <= 600.0
    overall, tenths = spoken_share_by_tenth(text, sample)
    assert abs(overall - 0.3) < 0.05, overall
    assert all(abs(t - 0.3) < 0.05 for t in tenths), np.round(tenths, 3)
    assert abs(overall - stats.spoken_words / stats.words) < 1e-9


def test_word_spans_are_spread_evenly_over_a_long_document():
    text = long_document(seed=1)
    for seed in range(5):
        sel = select_spans(text, "en", SpanConfig("word", 0.3, 5, 15), document_rngs(seed, "d", "a.jsonl")[0])
        words = split_words(text, "en")
        starts = [s for s, _ in words]
        spoken = np.zeros(len(words), dtype=bool)
        for span in sel.spans:
            i = bisect.bisect_left(starts, span.start)
            spoken[i:i + span.num_words] = True
        n = len(words)
        assert all(abs(spoken[n * k // 10:n * (k + 1) // 10].mean() - 0.3) < 0.05 for k in range(10))


def test_one_span_may_start_anywhere_in_a_short_document():
    text = "one two three four five six seven eight nine ten"
    firsts = {select_spans(text, "en", SpanConfig("word", 0.3, 5, 15), document_rngs(s, "x")[0]).spans[0].start
              for s in range(200)}
    assert firsts == {0, 4, 8, 14, 19, 24}  # every possible start of a 5-word span, the first word included


def test_spans_are_keyed_on_the_full_seed_and_the_input_file():
    text = long_document(400, seed=2)
    cfg = SpanConfig("word", 0.3, 5, 15)

    def spans(seed, doc_id, source):
        return select_spans(text, "en", cfg, document_rngs(seed, doc_id, source)[0]).spans

    assert spans(5, "7", "a.jsonl") == spans(5, "7", "a.jsonl")
    assert spans(5, "7", "a.jsonl") != spans(5, "7", "b.jsonl")  # two files with "id": 7
    assert spans(5, "7", "a.jsonl") != spans(5 + 2**32, "7", "a.jsonl")  # the full seed, not its low 32 bits
    assert spans(5, "7", "a.jsonl") != spans(5, "8", "a.jsonl")
    backend = WordsBackend(0.3)
    voices = {}
    for source in ("a.jsonl", "b.jsonl"):
        doc = Document(id="7", text=text, lang="en", source=source, line=1)
        sample, _, _ = build_sample(doc, SynthConfig(input=("x",), output_dir="o"), backend)
        voices[source] = [s.speaker for s in sample.document.speech]
    assert voices["a.jsonl"] != voices["b.jsonl"]
