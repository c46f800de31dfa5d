"""Generation: the KV cache changes nothing, batching changes nothing, sampling is seeded."""

import dataclasses

import numpy as np
import pytest

from tests.harness import run_distributed

VOCAB, AUDIO_BOS, AUDIO_EOS, AUDIO, EOD = 64, 1, 2, 3, 0


class CountingTokenizer:
    """Characters -> ids (enough to build prompts; the model is random anyway)."""

    tokenizer_model = "chars"
    vocab_size = VOCAB
    eod_id, pad_id = EOD, EOD
    audio_bos_id, audio_eos_id, audio_placeholder_id = AUDIO_BOS, AUDIO_EOS, AUDIO

    def tokenize(self, text):
        return [4 + (ord(c) % (VOCAB - 4)) for c in text]


def _model():
    from megatron_inserter.models.builder import build_model_chunks
    from megatron_inserter.models.presets import resolve
    from megatron_inserter.runtime import ParallelConfig, initialize_parallel

    initialize_parallel(ParallelConfig(seed=5))
    cfg = resolve("tiny").with_tokenizer(CountingTokenizer())
    cfg.llm = dataclasses.replace(cfg.llm, num_layers=2)
    (model,) = build_model_chunks(cfg)
    return model, cfg


def _prompts(cfg):
    from megatron_inserter.inference.prompt import Prompt, encode_prompt

    rng = np.random.default_rng(0)
    tok, spec = CountingTokenizer(), cfg.frame_spec()
    raw = [Prompt(text="hello there", audio=rng.uniform(-0.5, 0.5, 9000).astype(np.float32)),
           Prompt(text="a"),
           Prompt(text="speech then a longer text prompt", audio=rng.uniform(-0.5, 0.5, 5200).astype(np.float32))]
    return [encode_prompt(p, tok, spec, "plain") for p in raw]


def _generate_variants(rank, world_size):
    from megatron_inserter.inference.generate import GenerationConfig, generate

    model, cfg = _model()
    prompts = _prompts(cfg)
    greedy = GenerationConfig(max_new_tokens=12)
    cached = generate(model, prompts, greedy, stop_ids=set())
    uncached = generate(model, prompts, dataclasses.replace(greedy, use_cache=False), stop_ids=set())
    one_by_one = [generate(model, [p], greedy, stop_ids=set())[0] for p in prompts]
    sample = GenerationConfig(max_new_tokens=12, temperature=1.0, top_p=0.9, seed=11)
    sampled = [generate(model, prompts, sample, stop_ids=set()) for _ in range(2)]
    other_seed = generate(model, prompts, dataclasses.replace(sample, seed=12), stop_ids=set())
    stop = cached[0][3]
    stopped = generate(model, prompts[:1], greedy, stop_ids={stop})
    return dict(cached=cached, uncached=uncached, one_by_one=one_by_one, sampled=sampled,
                other_seed=other_seed, stopped=stopped, stop=stop)


@pytest.fixture(scope="module")
def outputs():
    return run_distributed(_generate_variants, 1)[0]


def test_kv_cache_matches_full_recompute(outputs):
    assert outputs["cached"] == outputs["uncached"]
    assert all(len(o) == 12 for o in outputs["cached"])


def test_batched_equals_one_prompt_at_a_time(outputs):
    assert outputs["cached"] == outputs["one_by_one"]


def test_sampling_is_reproducible_per_seed(outputs):
    a, b = outputs["sampled"]
    assert a == b
    assert a != outputs["other_seed"]


def test_generation_stops_at_a_stop_token(outputs):
    first = outputs["cached"][0]
    cut = first.index(outputs["stop"])
    assert outputs["stopped"][0] == first[:cut]


def test_placeholder_count_follows_the_frame_function():
    from megatron_inserter.data.frames import FrameSpec, num_audio_frames
    from megatron_inserter.inference.prompt import Prompt, encode_prompt

    spec = FrameSpec()
    audio = np.zeros(16000 * 31 + 555, dtype=np.float32)  # two windows
    enc = encode_prompt(Prompt(text="ab", audio=audio), CountingTokenizer(), spec, "plain")
    whole_hops = len(audio) - len(audio) % spec.hop_length  # a trailing partial 10 ms hop is dropped
    assert enc.ids.count(AUDIO) == num_audio_frames(whole_hops, spec)
    assert [len(c) for c in enc.clips] == [16000 * 30, 16000 + 480]
    assert enc.ids[0] == AUDIO_BOS and enc.ids[-3] == AUDIO_EOS
