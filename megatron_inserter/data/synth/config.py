"""The configuration of a synthesis run, which is also the flags of ``inserter synth``.

Every field declared with ``arg(...)`` is a flag (``--span-mode``) and a ``--config`` YAML key
(``span_mode``); ``SynthConfig(...)`` builds the same object in code. Values are checked and completed in
``__post_init__``: the speech ratio defaults by span mode, rank and world size come from a slurm job
array when not given, model paths become absolute. This module imports only the standard library.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields

from megatron_inserter.errors import UsageError
from megatron_inserter.flags import arg

DEFAULT_SPEECH_RATIO = {"word": 0.3, "sentence": 0.4}  # the best settings reported for InSerter


@dataclass(frozen=True)
class ShardSize:
    """A shard closes after ``max_docs`` input lines, or once its estimated size reaches ``max_bytes``."""

    max_bytes: int | None = None
    max_docs: int | None = None

    def __str__(self) -> str:
        return f"{self.max_docs}" if self.max_docs is not None else f"{self.max_bytes}B"


_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}


def parse_shard_size(text: str) -> ShardSize:
    """``"1GB"``, ``"500MB"``, ``"2GiB"`` -> a byte target; a bare integer ``"1000"`` -> documents per shard."""
    s = str(text).strip()
    if re.fullmatch(r"\d+", s):
        n = int(s)
        if n <= 0:
            raise UsageError(f"--shard-size {text!r}: the number of documents per shard must be positive")
        return ShardSize(max_docs=n)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-zA-Z]*)", s)
    unit = m.group(2).lower() if m else None
    if not m or unit not in _UNITS or unit in ("", "b") and "." in m.group(1):
        raise UsageError(
            f"--shard-size {text!r} is neither a document count (e.g. 1000) nor a size (e.g. 500MB, 1GB, 2GiB)"
        )
    n = int(float(m.group(1)) * _UNITS[unit])
    if n <= 0:
        raise UsageError(f"--shard-size {text!r} must be positive")
    return ShardSize(max_bytes=n)


def resolve_rank(rank: int | None, world_size: int | None, environ=None) -> tuple[int, int]:
    """``(rank, world size)`` from the flags, else from a slurm job array, else ``(0, 1)``."""
    env = os.environ if environ is None else environ
    if rank is None and world_size is None and "SLURM_ARRAY_TASK_ID" in env:
        task, first = int(env["SLURM_ARRAY_TASK_ID"]), int(env.get("SLURM_ARRAY_TASK_MIN", 0))
        count = int(env.get("SLURM_ARRAY_TASK_COUNT", 0))
        if count <= 0:
            raise UsageError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; pass --rank/--world-size")
        return task - first, count
    if (rank is None) != (world_size is None):
        raise UsageError("give both --rank and --world-size, or neither")
    return (rank or 0), (world_size or 1)


IO, SPANS, SPEECH, SCALE = "input and output", "span selection", "speech", "scale"


@dataclass(frozen=True)
class SynthConfig:
    input: tuple[str, ...] = arg([], "jsonl files (.jsonl, .jsonl.gz, .jsonl.zst), globs or directories",
                                 required=True, metavar="PATH", group=IO)
    output_dir: str = arg(None, "where shards, manifests and stats.json go", required=True, metavar="DIR",
                          group=IO)
    json_keys: str = arg("text", "the record field holding the document text", metavar="KEY", group=IO)
    name: str = arg("interleaved", "shard name prefix: NAME-RANK-INDEX.tar", group=IO)
    shard_size: str = arg("1GB", "target shard size (e.g. 500MB, 1GB) or documents per shard (e.g. 1000)",
                          metavar="SIZE", group=IO)
    config: str | None = arg(None, "YAML file of flag values (keys are the flag names with underscores); "
                                   "the command line wins", metavar="FILE", group=IO)
    span_mode: str = arg("word", "read aloud random word spans or whole sentences", choices=["word", "sentence"],
                         group=SPANS)
    speech_ratio: float | None = arg(None, "share of words read aloud (default: 0.3 for word mode, 0.4 for "
                                           "sentence mode)", group=SPANS)
    min_span_words: int = arg(5, "fewest words in a word-mode span", group=SPANS)
    max_span_words: int = arg(15, "most words in a word-mode span", group=SPANS)
    seed: int = arg(1234, "spans and speakers depend only on the seed and the document id", group=SPANS)
    tts: str = arg("espeak", "speech backend", choices=["espeak", "nemo"], group=SPEECH)
    speaker_policy: str = arg("span", "draw a speaker per span or one per document", choices=["span", "document"],
                              group=SPEECH)
    max_speech_seconds_per_doc: float = arg(600.0, "spans past this much speech in one document stay text",
                                            group=SPEECH)
    espeak_engine: str = arg("auto", "espeak-ng in-process (library) or one process per span (command)",
                             choices=["auto", "library", "command"], group=SPEECH)
    tts_model: str | None = arg(None, "FastPitch .nemo file (--tts nemo)", metavar="FILE", group=SPEECH)
    vocoder_model: str | None = arg(None, "HiFi-GAN .nemo file (--tts nemo)", metavar="FILE", group=SPEECH)
    tts_batch_size: int = arg(16, "spans per NeMo batch", group=SPEECH)
    text_normalization: bool = arg(True, "normalize text with nemo_text_processing before NeMo TTS", group=SPEECH)
    text_norm_cache_dir: str | None = arg(None, "cache for the built text normalizers (default "
                                                "~/.cache/megatron_inserter/text_norm)", metavar="DIR", group=SPEECH)
    workers: int = arg(1, "worker processes on this node", group=SCALE)
    rank: int | None = arg(None, "this node's rank (default: slurm array task, else 0)", group=SCALE)
    world_size: int | None = arg(None, "number of nodes (default: slurm array task count, else 1)", group=SCALE)
    progress: bool = arg(True, "show a progress bar (a log line a minute when stderr is not a terminal)",
                         group=SCALE)
    tts_attempts: int = 2  # tries per span before it stays text (not a flag)

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        put("input", (self.input,) if isinstance(self.input, str) else tuple(self.input or ()))
        if isinstance(self.shard_size, ShardSize):
            put("shard_size", str(self.shard_size))
        parse_shard_size(self.shard_size)
        if self.span_mode not in DEFAULT_SPEECH_RATIO:
            raise UsageError(f"--span-mode must be word or sentence, got {self.span_mode!r}")
        if self.speech_ratio is None:
            put("speech_ratio", DEFAULT_SPEECH_RATIO[self.span_mode])
        rank, world_size = resolve_rank(self.rank, self.world_size)
        put("rank", rank)
        put("world_size", world_size)
        for name in ("tts_model", "vocoder_model"):
            if getattr(self, name):
                put(name, os.path.abspath(getattr(self, name)))
        if not 0.0 < self.speech_ratio < 1.0:
            raise UsageError(f"--speech-ratio must be in (0, 1), got {self.speech_ratio}")
        if self.min_span_words < 1 or self.max_span_words < self.min_span_words:
            raise UsageError(
                f"need 1 <= --min-span-words ({self.min_span_words}) <= --max-span-words ({self.max_span_words})"
            )
        if self.speaker_policy not in ("span", "document"):
            raise UsageError(f"--speaker-policy must be span or document, got {self.speaker_policy!r}")
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise UsageError(f"need 0 <= --rank ({self.rank}) < --world-size ({self.world_size})")
        if self.workers < 1:
            raise UsageError(f"--workers must be >= 1, got {self.workers}")
        if self.tts_batch_size < 1:
            raise UsageError(f"--tts-batch-size must be >= 1, got {self.tts_batch_size}")
        if self.max_speech_seconds_per_doc <= 0:
            raise UsageError("--max-speech-seconds-per-doc must be positive")
        if not re.fullmatch(r"[A-Za-z0-9_]+", self.name):
            raise UsageError(f"--name {self.name!r}: use letters, digits and underscores only")
        if self.tts not in ("espeak", "nemo"):
            raise UsageError(f"--tts must be espeak or nemo, got {self.tts!r}")
        if not self.json_keys:
            raise UsageError("--json-keys must name a field")

    @property
    def shard_limit(self) -> ShardSize:
        return parse_shard_size(self.shard_size)

    def fingerprint(self) -> dict:
        """Everything that decides which samples the run produces (not how fast, nor on which rank). The key
        names are those stored in earlier runs' synth-run.json, so such runs still resume."""
        skip = {"workers", "rank", "progress", "output_dir", "text_norm_cache_dir", "tts_batch_size", "config"}
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        d["inputs"] = list(d.pop("input"))
        d["json_key"] = d.pop("json_keys")
        d["shard_size"] = str(self.shard_limit)
        return d
