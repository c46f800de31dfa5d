"""Presets: published shapes, the frame spec each model realises, vocabulary from the tokenizer."""

from types import SimpleNamespace

import pytest

from megatron_inserter.data.frames import FrameSpec, num_audio_frames
from megatron_inserter.models.config import AdapterConfig, EncoderConfig
from megatron_inserter.models.presets import resolve


def test_qwen2_audio_7b_matches_the_public_config():
    cfg = resolve("qwen2-audio-7b")
    enc, llm = cfg.encoder, cfg.llm
    assert (enc.num_layers, enc.hidden_size, enc.num_attention_heads, enc.ffn_hidden_size, enc.num_mel_bins) == \
        (32, 1280, 20, 5120, 128)
    assert (llm.num_layers, llm.hidden_size, llm.num_attention_heads, llm.num_query_groups,
            llm.ffn_hidden_size, llm.vocab_size) == (32, 4096, 32, 32, 11008, 156032)
    assert llm.rotary_base == 10000.0 and llm.add_qkv_bias and not llm.tie_embeddings
    assert llm.norm_epsilon == 1e-5 and llm.max_position_embeddings == 8192
    assert cfg.audio_placeholder_id == 151646
    assert cfg.adapter == AdapterConfig(kind="pool-linear", downsample=2)
    assert enc.input_mode == "packed" and enc.window_key_padding_mask


def test_whisper_presets_realise_the_default_frame_spec():
    # 25 frames per second: 30 s of audio -> 750 placeholders, as Qwen2-Audio.
    for name in ("tiny", "qwen2.5-1.5b-whisper-small", "qwen2-audio-7b"):
        spec = resolve(name).frame_spec()
        assert spec == FrameSpec()
        assert num_audio_frames(30 * 16000, spec) == 750


def test_frame_spec_follows_the_adapter():
    cfg = resolve("tiny").replace(adapter=AdapterConfig(kind="stack-mlp", downsample=4))
    assert cfg.frame_spec().adapter_downsample == 4
    assert num_audio_frames(30 * 16000, cfg.frame_spec()) == 375


def test_vocabulary_and_placeholder_come_from_the_tokenizer():
    tok = SimpleNamespace(vocab_size=3000, audio_placeholder_id=2999)
    cfg = resolve("tiny").with_tokenizer(tok)
    assert cfg.llm.vocab_size == 3000 and cfg.audio_placeholder_id == 2999
    assert cfg.llm.padded_vocab_size(2) == 3072
    assert resolve("tiny").llm.vocab_size == 4000  # presets are not mutated


def test_bad_names_and_shapes_are_refused():
    with pytest.raises(ValueError, match="unknown model preset 'nope'"):
        resolve("nope")
    with pytest.raises(ValueError, match="input_mode"):
        EncoderConfig(num_layers=1, hidden_size=8, num_attention_heads=2, ffn_hidden_size=8, input_mode="x")
    with pytest.raises(ValueError, match="adapter kind"):
        AdapterConfig(kind="q-former")
