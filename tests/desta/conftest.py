import pytest

from tests.desta.shards import PAUSED_TEXTS, Clip, write_shard

VOICES = ("en-us+m3", "en-gb-scotland+f2", "en-029+m1", "en+f4")
PITCHES = (20, 80)
RATES = (110, 280)


def proof_clips() -> list[Clip]:
    """Every voice at low and high espeak pitch (normal rate) and at slow and fast rate (normal pitch), then
    clips with white and pink noise at known SNRs."""
    clips = []
    for i, voice in enumerate(VOICES):
        text = PAUSED_TEXTS[i % len(PAUSED_TEXTS)]
        clips += [Clip(text, f"espeak:{voice}:p{p}:r175") for p in PITCHES]
        clips += [Clip(text, f"espeak:{voice}:p50:r{r}") for r in RATES]
    for j, (noise, snr) in enumerate([("white", 5.0), ("white", 10.0), ("white", 20.0), ("pink", 10.0),
                                      ("pink", 20.0)]):
        voice = VOICES[j % len(VOICES)]
        clips.append(Clip(PAUSED_TEXTS[j % len(PAUSED_TEXTS)], f"espeak:{voice}:p50:r175", noise, snr))
    return clips


@pytest.fixture(scope="session")
def proof_shards(tmp_path_factory):
    """Two shards of espeak clips with known controls and noise (built once per session)."""
    root = tmp_path_factory.mktemp("desta_shards")
    clips = proof_clips()
    half = len(clips) // 2
    write_shard(root / "shards" / "part-00000-000000.tar", clips[:half], seed=1)
    write_shard(root / "shards" / "part-00000-000001.tar", clips[half:], seed=2)
    return root / "shards", clips


@pytest.fixture(scope="session")
def built_seeds(proof_shards, tmp_path_factory):
    """(seeds file, clips) of `inserter desta build` over the proof shards."""
    from megatron_inserter.desta.cli import main

    shards, clips = proof_shards
    out = tmp_path_factory.mktemp("desta_seeds") / "seeds.jsonl"
    assert main(["build", "--shards", str(shards), "--output", str(out), "--no-progress"]) == 0
    return out, clips
