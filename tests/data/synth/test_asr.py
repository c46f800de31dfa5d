"""The ASR round-trip check: scoring with eval.text_norm, decisions on known transcripts (a failed span spoken
again by another voice, then kept as text), counts and the error-rate histogram, and the local Hugging Face
Whisper path on a tiny random Whisper."""

import json
import os

import numpy as np
import pytest

from megatron_inserter.data.synth.asr import asr_kind
from megatron_inserter.data.synth.asr.base import round_trip_error
from megatron_inserter.data.synth.asr.openai import OpenAITranscriber, multipart, reply_text
from megatron_inserter.data.synth.config import SynthConfig
from megatron_inserter.data.synth.schedule import build_sample
from megatron_inserter.data.synth.servers import ServerPool
from megatron_inserter.data.synth.tts.openai import OpenAIBackend, OpenAIConfig
from megatron_inserter.data.synth.voices import parse_voice_lines
from megatron_inserter.errors import UsageError
from tests.data.synth.fake_servers import FakeASRServer, FakeTTSServer, parse_multipart
from tests.data.synth.test_interleave import TEXT, FakeBackend, _doc


@pytest.mark.parametrize("ref,hyp,lang,rate", [
    ("Hello, World! It's 3.5 degrees.", "hello world its 3.5 degrees", "en", 0.0),
    ("the cat sat on the mat", "the bat sat on the mat", "en", 1 / 6),
    ("the cat sat", "", "en", 1.0),
    ("the cat sat", "the cat sat down today", "en", 2 / 3),
    ("今天天气很好。", "今天天汽很好", "zh", 1 / 6),
    ("今天天气很好", "", "zh", 1.0),
    ("...", "anything", "en", None),  # nothing to score
    ("the cat", None, "en", None),  # no transcript
])
def test_round_trip_error_uses_the_eval_normalizer(ref, hyp, lang, rate):
    got = round_trip_error(ref, hyp, lang)
    assert got == rate if rate is None else abs(got - rate) < 1e-12


def test_multipart_form_and_replies():
    body, ctype = multipart({"model": "whisper-1", "language": "zh"}, "span.wav", b"RIFF\x00\r\n--x", "audio/wav")
    form = parse_multipart(body, ctype)
    assert form == {"model": b"whisper-1", "language": b"zh", "file": b"RIFF\x00\r\n--x"}
    assert reply_text(b'{"text": "hi"}') == "hi"
    assert reply_text(b"<html>") is None and reply_text(b'{"text": 3}') is None and reply_text(b"[1]") is None


VOICES = [b"good_a\ten\n", b"good_b\ten\n", b"bad_a\ten\n", b"bad_b\ten\n", b"bad_c\ten\n", b"bad_d\ten\n"]


def _servers_backend(tts_url):
    pool = parse_voice_lines(VOICES, "voices.tsv")
    cfg = OpenAIConfig(urls=(tts_url,), model="fake-tts", voices="voices.tsv", concurrency=4)
    return OpenAIBackend(cfg, pool=pool, servers=ServerPool("TTS", [tts_url], "/audio/speech"))


def test_spans_failing_the_check_are_spoken_again_then_kept_as_text():
    tts = FakeTTSServer().start()
    asr = FakeASRServer(tts.state.registry, bad_voices={"bad_a", "bad_b", "bad_c", "bad_d"}).start()
    try:
        backend = _servers_backend(tts.url)
        transcriber = OpenAITranscriber([asr.url], "fake-asr", concurrency=3)
        cfg = SynthConfig(input=("x",), output_dir="o", max_span_wer=0.2, tts_attempts=3, asr_model="fake-asr",
                          asr_url=(asr.url,), seed=11)
        sample, reason, stats = build_sample(_doc(), cfg, backend, transcriber)
        asr_stats = transcriber.collect_stats()["asr_servers"][asr.url]
    finally:
        tts.stop()
        asr.stop()
    assert reason is None
    checked = asr.requests
    passed = [r for r in checked if r["voice"].startswith("good")]
    failed = [r for r in checked if r["voice"].startswith("bad")]
    assert stats.asr_checked == len(checked) == asr_stats["ok"] and {r["model"] for r in checked} == {"fake-asr"}
    assert {r["language"] for r in checked} == {"en"} and {r["rate"] for r in checked} == {16000}
    assert stats.asr_wer_hist == {"0.00": len(passed), "1.00": len(failed)} and len(failed) > 0
    assert stats.asr_resynthesized + stats.spans_asr_rejected == len(failed)
    assert stats.spans == len(passed) and stats.spans_asr_rejected > 0  # some spans met only bad voices
    for seg in sample.document.speech:
        assert seg.speaker.startswith("good") and seg.asr_wer == 0.0
    by_text = {}
    for r in tts.requests:
        by_text.setdefault(r["input"], []).append(r["voice"])
    assert all(len(set(v)) == len(v) <= 3 for v in by_text.values())  # each retry another voice, at most 3
    kept = {seg.text for seg in sample.document.speech}
    assert all(voices[-1].startswith("good") for text, voices in by_text.items() if text in kept)
    assert all(all(v.startswith("bad") for v in voices) and len(voices) == 3
               for text, voices in by_text.items() if text not in kept)
    assert "".join(seg.text for seg in sample.document.segments) == TEXT


def test_local_model_paths_are_recognized(tmp_path):
    (tmp_path / "whisper").mkdir()
    with pytest.raises(UsageError, match="no config.json"):
        asr_kind((), str(tmp_path / "whisper"))
    (tmp_path / "whisper" / "config.json").write_text("{}")
    (tmp_path / "model.nemo").write_bytes(b"")
    assert asr_kind((), str(tmp_path / "whisper")) == "whisper"
    assert asr_kind((), str(tmp_path / "model.nemo")) == "nemo"
    assert asr_kind(("http://x/v1",), "whisper-1") == "openai"
    with pytest.raises(UsageError, match="neither"):
        asr_kind((), str(tmp_path / "missing"))


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory):
    """A Hugging Face Whisper directory with random weights and a byte-level tokenizer, built offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    d = tmp_path_factory.mktemp("tiny_whisper")
    vocab = {c: i for i, c in enumerate(bytes_to_unicode().values())}
    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|zh|>", "<|translate|>", "<|transcribe|>",
                "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]
    for s in specials:
        vocab[s] = len(vocab)
    tok = transformers.WhisperTokenizer(vocab=dict(vocab), merges=[], unk_token=specials[0], bos_token=specials[0],
                                        eos_token=specials[0], pad_token=specials[0])
    tok.add_special_tokens({"additional_special_tokens": specials[1:]})
    transformers.WhisperProcessor(feature_extractor=transformers.WhisperFeatureExtractor(feature_size=80),
                                  tokenizer=tok).save_pretrained(d)
    cfg = transformers.WhisperConfig(
        vocab_size=len(vocab), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80, max_target_positions=16,
        decoder_start_token_id=vocab["<|startoftranscript|>"], eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"], bos_token_id=vocab["<|endoftext|>"])
    torch.manual_seed(0)
    model = transformers.WhisperForConditionalGeneration(cfg).eval()
    gen = model.generation_config
    gen.lang_to_id = {"<|en|>": vocab["<|en|>"], "<|zh|>": vocab["<|zh|>"]}
    gen.task_to_id = {"transcribe": vocab["<|transcribe|>"], "translate": vocab["<|translate|>"]}
    gen.no_timestamps_token_id = vocab["<|notimestamps|>"]
    gen.is_multilingual, gen.forced_decoder_ids, gen.suppress_tokens, gen.begin_suppress_tokens = True, None, [], []
    gen.max_length = 16
    gen._from_model_config = False
    model.save_pretrained(d)
    assert json.loads((d / "generation_config.json").read_text())["lang_to_id"]
    return str(d)


def test_local_whisper_transcribes_and_scores_every_span(tiny_whisper):
    from megatron_inserter.data.synth.asr import build_transcriber

    transcriber = build_transcriber((), tiny_whisper, batch_size=4, device="cpu")
    assert transcriber.name == "whisper" and transcriber.languages == {"en", "zh"}
    clips = [(np.full(16000, 0.1, np.float32), "en"), (np.zeros(8000, np.float32), "zh")]
    assert all(isinstance(t, str) for t in transcriber.transcribe(clips))

    text = " ".join(TEXT.split(". ")[:4])  # a few spans: CPU generation is slow on a busy machine
    measure = SynthConfig(input=("x",), output_dir="o", asr_model=tiny_whisper)
    sample, reason, stats = build_sample(_doc(text), measure, FakeBackend(), transcriber)
    speech = sample.document.speech
    assert reason is None and stats.asr_checked == len(speech) == stats.spans
    assert all(seg.asr_wer is not None and seg.asr_wer >= 0.5 for seg in speech)  # random weights: no real words
    assert sum(stats.asr_wer_hist.values()) == len(speech)

    strict = SynthConfig(input=("x",), output_dir="o", asr_model=tiny_whisper, max_span_wer=0.5)
    sample, reason, stats = build_sample(_doc(text), strict, FakeBackend(), transcriber)
    assert sample is None and reason == "asr_rejected"
    assert stats.spans_asr_rejected == len(speech) and stats.asr_resynthesized == len(speech)  # 2 voices each
