"""--shard-size parsing and argument validation."""

from dataclasses import fields

import pytest

from megatron_inserter.data.synth.config import ShardSize, SynthConfig, parse_shard_size, resolve_rank


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
        SynthConfig(input=("a",), output_dir="o", speech_ratio=1.0)
    with pytest.raises(ValueError, match="rank"):
        SynthConfig(input=("a",), output_dir="o", rank=2, world_size=2)
    fp = SynthConfig(input=("a",), output_dir="o", workers=3).fingerprint()
    assert "workers" not in fp and "rank" not in fp and fp["world_size"] == 1


def test_rank_from_flags_or_slurm_array():
    assert resolve_rank(None, None, {}) == (0, 1)
    assert resolve_rank(1, 4, {"SLURM_ARRAY_TASK_ID": "9"}) == (1, 4)
    env = {"SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert resolve_rank(None, None, env) == (2, 4)
    with pytest.raises(ValueError):
        resolve_rank(1, None, {})


def test_the_flags_are_the_configuration():
    from megatron_inserter.flags import parse_flags

    argv = ["--input", "a.jsonl", "b/", "--output-dir", "out", "--span-mode", "sentence", "--shard-size", "3",
            "--no-progress", "--no-text-normalization", "--rank", "1", "--world-size", "2"]
    cfg = parse_flags(SynthConfig, argv, "inserter synth")
    assert cfg == SynthConfig(input=("a.jsonl", "b/"), output_dir="out", span_mode="sentence", shard_size="3",
                              progress=False, text_normalization=False, rank=1, world_size=2)
    assert cfg.speech_ratio == 0.4 and cfg.shard_limit == ShardSize(max_docs=3) and cfg.json_keys == "text"
    # the keys stored in synth-run.json; a resume compares against them (servers, speed and ranks excluded)
    assert sorted(cfg.fingerprint()) == sorted([
        "inputs", "tts", "span_mode", "speech_ratio", "seed", "json_key", "min_span_words", "max_span_words",
        "speaker_policy", "shard_size", "world_size", "max_speech_seconds_per_doc", "tts_model", "vocoder_model",
        "name", "espeak_engine", "text_normalization", "tts_attempts", "document_keying", "tts_voices",
        "tts_format", "tts_pcm_rate", "tts_speed", "noise_snr_db", "noise_share", "asr_model", "max_span_wer"])
    assert SynthConfig(input=("a",), output_dir="o", shard_size=ShardSize(max_bytes=10**9)).fingerprint()[
        "shard_size"] == SynthConfig(input=("a",), output_dir="o").fingerprint()["shard_size"] == "1000000000B"


def test_help_shows_each_default_once_and_imports_no_heavy_stack(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "megatron_inserter.cli", "synth", "--help"],
                         capture_output=True, text=True, timeout=120, check=True)
    assert "--input PATH [PATH ...]" in out.stdout and "(required)" in out.stdout
    assert "--shard-size SIZE" in out.stdout and "(default: 1GB)" in out.stdout
    assert "--no-progress" in out.stdout and "--tts-attempts N" in out.stdout and "(default: 2)" in out.stdout
    assert "--tts-url URL" in out.stdout and "--max-span-wer X" in out.stdout
    imported = {line.split("|")[-1].strip().split(".")[0] for line in out.stderr.splitlines() if "|" in line}
    assert "megatron_inserter" in imported
    assert not imported & {"torch", "megatron", "nemo", "numpy", "soundfile", "jieba"}


def test_a_config_file_gives_flag_values_and_the_command_line_wins(tmp_path):
    from megatron_inserter.errors import UsageError
    from megatron_inserter.flags import parse_flags

    path = tmp_path / "synth.yaml"
    path.write_text("input: [corpus/a.jsonl.zst, corpus/b.jsonl]\noutput_dir: out\nspan_mode: sentence\nseed: 7\n")
    cfg = parse_flags(SynthConfig, ["--config", str(path), "--seed", "9"], "inserter synth")
    assert cfg.input == ("corpus/a.jsonl.zst", "corpus/b.jsonl") and cfg.span_mode == "sentence"
    assert cfg.seed == 9 and cfg.speech_ratio == 0.4 and "config" not in cfg.fingerprint()
    path.write_text("input: [a]\noutput_dir: out\nspeech-ratio: 0.5\n")
    with pytest.raises(UsageError, match="speech_ratio"):
        parse_flags(SynthConfig, ["--config", str(path)], "inserter synth")


def test_server_noise_and_asr_flags_are_checked():
    from megatron_inserter.errors import UsageError

    base = {"input": ("a",), "output_dir": "o"}
    server = {**base, "tts": "openai", "tts_url": "http://127.0.0.1:1/v1", "tts_model": "kokoro",
              "tts_voices": "voices.tsv"}
    cfg = SynthConfig(**server, tts_speed="0.9,1.1", noise_snr_db="5,20", noise_share=0.5)
    assert cfg.tts_url == ("http://127.0.0.1:1/v1",) and cfg.speed_range == (0.9, 1.1)
    assert cfg.noise_range == (5.0, 20.0) and cfg.tts_model == "kokoro"  # a model name stays a name
    assert "tts_url" not in cfg.fingerprint() and "tts_concurrency" not in cfg.fingerprint()
    for bad, match in [
        ({**base, "tts": "openai"}, "--tts-url"),
        ({**server, "tts_model": None}, "--tts-model"),
        ({**server, "tts_voices": None}, "--tts-voices"),
        ({**base, "tts_url": ("http://x/v1",)}, "is for --tts openai"),
        ({**server, "tts_api_key_env": "sk-123"}, "environment variable name"),
        ({**server, "tts_speed": "fast"}, "--tts-speed"),
        ({**server, "tts_concurrency": 0}, "--tts-concurrency"),
        ({**base, "noise_share": 0.3}, "--noise-snr-db"),
        ({**base, "noise_snr_db": "20,5", "noise_share": 0.3}, "LOW must not exceed HIGH"),
        ({**base, "noise_snr_db": "5,20", "noise_share": 1.5}, "--noise-share"),
        ({**base, "max_span_wer": 0.2}, "needs an ASR model"),
        ({**base, "asr_url": ("http://x/v1",)}, "--asr-model"),
    ]:
        with pytest.raises(UsageError, match=match):
            SynthConfig(**bad)
    with_seed = [SynthConfig(**base, seed=s).fingerprint()["seed"] for s in (5, 5 + 2**32)]
    assert with_seed[0] != with_seed[1]


def test_the_slurm_examples_use_only_existing_flags():
    import re
    from pathlib import Path

    from megatron_inserter.flags import flag_name

    known = {flag_name(f.name) for f in fields(SynthConfig)} | {"--no-progress"}
    examples = Path(__file__).resolve().parents[3] / "examples"
    for name in ("synth_tts_array.sbatch", "synth_slurm_array.sbatch"):
        text = (examples / name).read_text()
        start = re.search(r"^inserter synth", text, re.MULTILINE).start()
        command = "\n".join(line for line in text[start:].splitlines() if "SBATCH" not in line)
        used = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", command)) - {"--dependency", "--export", "--parsable"}
        assert used and used <= known, (name, sorted(used - known))
