"""The espeak speaker pool and how spans draw from a pool."""

import numpy as np

from megatron_inserter.data.synth.speakers import EspeakSpeaker, choose_speakers, espeak_speaker_pool


def test_pools_have_at_least_100_distinct_speakers_per_language():
    for lang in ("en", "zh"):
        pool = espeak_speaker_pool(lang)
        ids = [s.id for s in pool]
        assert len(ids) >= 100 and len(set(ids)) == len(ids)
        assert len({(s.voice_name, s.pitch, s.rate) for s in pool}) == len(pool)
        assert [EspeakSpeaker.from_id(i) for i in ids] == pool
    assert all(s.voice == "cmn-latn-pinyin" for s in espeak_speaker_pool("zh"))
    assert "en-gb" not in {s.voice for s in espeak_speaker_pool("en")}  # fails to load in-process


def test_choose_speakers_policies_are_deterministic():
    pool = [f"s{i}" for i in range(500)]
    a = choose_speakers(pool, 20, "span", np.random.default_rng(5))
    assert a == choose_speakers(pool, 20, "span", np.random.default_rng(5))
    assert len(set(a)) > 10
    doc = choose_speakers(pool, 20, "document", np.random.default_rng(5))
    assert len(set(doc)) == 1 and len(doc) == 20
