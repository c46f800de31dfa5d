"""--shard-size parsing and argument validation."""

import pytest

from megatron_inserter.data.synth.cli import resolve_rank
from megatron_inserter.data.synth.config import ShardSize, SynthConfig, parse_shard_size


@pytest.mark.parametrize("text,expected", [
    ("1GB", ShardSize(max_bytes=10**9)),
    ("500MB", ShardSize(max_bytes=500 * 10**6)),
    ("2GiB", ShardSize(max_bytes=2 * 2**30)),
    ("1.5gb", ShardSize(max_bytes=1_500_000_000)),
    ("1000", ShardSize(max_docs=1000)),
])
def test_shard_size_forms(text, expected):
    assert parse_shard_size(text) == expected


@pytest.mark.parametrize("text", ["", "0", "-5", "1 parsec", "GB", "0MB"])
def test_bad_shard_sizes_are_rejected(text):
    with pytest.raises(ValueError, match="shard-size"):
        parse_shard_size(text)


def test_config_validation():
    with pytest.raises(ValueError, match="speech-ratio"):
        SynthConfig(inputs=("a",), output_dir="o", speech_ratio=1.0)
    with pytest.raises(ValueError, match="rank"):
        SynthConfig(inputs=("a",), output_dir="o", rank=2, world_size=2)
    fp = SynthConfig(inputs=("a",), output_dir="o", workers=3).fingerprint()
    assert "workers" not in fp and "rank" not in fp and fp["world_size"] == 1


def test_rank_from_flags_or_slurm_array():
    assert resolve_rank(None, None, {}) == (0, 1)
    assert resolve_rank(1, 4, {"SLURM_ARRAY_TASK_ID": "9"}) == (1, 4)
    env = {"SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert resolve_rank(None, None, env) == (2, 4)
    with pytest.raises(ValueError):
        resolve_rank(1, None, {})
