"""The configuration of a synthesis run, which is also the flags of ``inserter synth``.

Every field declared with ``arg(...)`` is a flag (``--span-mode``) and a ``--config`` YAML key
(``span_mode``); ``SynthConfig(...)`` builds the same object in code. Values are checked and completed in
``__post_init__``: the speech ratio defaults by span mode, rank and world size come from a slurm job
array when not given, model paths become absolute. The ASR flags (``AsrFlags``) are shared with
``inserter synth-filter`` (``FilterConfig``). This module imports only the standard library.
"""

from __future__ import annotations

import hashlib
import math
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


def parse_range(text: str, flag: str, *, low: float | None = None) -> tuple[float, float]:
    """``"0.9,1.1"`` -> ``(0.9, 1.1)``; ``"1.0"`` -> ``(1.0, 1.0)``. ``UsageError`` naming ``flag`` otherwise."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or not all(math.isfinite(v) for v in values):
        raise UsageError(f"{flag} {text!r}: give one number or LOW,HIGH (e.g. 5,20)")
    lo, hi = values[0], values[-1]
    if lo > hi:
        raise UsageError(f"{flag} {text!r}: LOW must not exceed HIGH")
    if low is not None and lo <= low:
        raise UsageError(f"{flag} {text!r}: values must be greater than {low:g}")
    return lo, hi


# How a document's spans, voices and noise are keyed: 2 = (full seed, input file, document id). Runs made
# with the earlier keying (seed modulo 2^32 and document id only) cannot be resumed by this version.
DOCUMENT_KEYING = 2

IO, SPANS, SPEECH, SERVERS, ASR, SCALE = (
    "input and output", "span selection", "speech", "TTS and ASR servers", "ASR round-trip filter", "scale")


@dataclass(frozen=True)
class AsrFlags:
    """The round-trip ASR flags, shared by ``inserter synth`` and ``inserter synth-filter``."""

    http_retries: int = arg(4, "retries of a request that failed for the server's sake (connection, timeout, "
                               "429, 5xx), with backoff, on another server when there is one; then the shard "
                               "fails and a rerun redoes it", group=SERVERS)
    asr_url: tuple[str, ...] = arg([], "base URL of an OpenAI-compatible ASR server (POST "
                                       "URL/audio/transcriptions); repeat for several", repeat=True,
                                   metavar="URL", group=ASR)
    asr_model: str | None = arg(None, "model name for --asr-url, or a local Hugging Face Whisper directory, or a "
                                      "NeMo ASR .nemo file", metavar="MODEL", group=ASR)
    asr_api_key_env: str | None = arg(None, "name of the environment variable holding the ASR servers' API key",
                                      metavar="NAME", group=ASR)
    max_span_wer: float | None = arg(None, "a span whose round-trip error rate (WER for English, CER for Chinese; "
                                           "a fraction) is above this fails: synth speaks it again by another voice "
                                           "(up to --tts-attempts), then keeps it as text; synth-filter turns it into "
                                           "text. Without it the rate is only recorded", metavar="X", group=ASR)
    asr_concurrency: int = arg(4, "ASR requests in flight per worker process (--asr-url)", group=ASR)
    asr_timeout: float = arg(120.0, "deadline of one ASR request in seconds", metavar="S", group=ASR)
    asr_batch_size: int = arg(8, "clips per batch of a local ASR model", group=ASR)
    asr_device: str | None = arg(None, "device of a local ASR model (default: cuda when available, else cpu)",
                                 group=ASR)

    def _check_asr(self) -> None:
        def put(name, value):
            object.__setattr__(self, name, value)

        value = self.asr_url
        put("asr_url", (value,) if isinstance(value, str) else tuple(value or ()))
        if self.asr_model and not self.asr_url:
            put("asr_model", os.path.abspath(self.asr_model))
        for flag, n in (("--asr-concurrency", self.asr_concurrency), ("--asr-batch-size", self.asr_batch_size)):
            if n < 1:
                raise UsageError(f"{flag} must be >= 1, got {n}")
        if self.http_retries < 0:
            raise UsageError(f"--http-retries must be >= 0, got {self.http_retries}")
        if not self.asr_timeout > 0:
            raise UsageError(f"--asr-timeout must be positive, got {self.asr_timeout}")
        if self.asr_api_key_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.asr_api_key_env):
            raise UsageError(f"--asr-api-key-env {self.asr_api_key_env!r} is not an environment variable name (give "
                             "the variable's name, not the key)")
        if self.asr_url and not self.asr_model:
            raise UsageError("--asr-url needs --asr-model (the model name the servers expect, e.g. whisper-1)")
        if self.max_span_wer is not None:
            if not self.asr_enabled:
                raise UsageError("--max-span-wer needs an ASR model: --asr-url with --asr-model NAME, or --asr-model "
                                 "with a local Whisper directory or NeMo .nemo file")
            if not (self.max_span_wer >= 0 and math.isfinite(self.max_span_wer)):
                raise UsageError(f"--max-span-wer must be a non-negative fraction, got {self.max_span_wer}")

    @property
    def asr_enabled(self) -> bool:
        return bool(self.asr_url or self.asr_model)


@dataclass(frozen=True)
class _SynthFlags:
    """The flags of ``inserter synth`` before the ASR flags (``SynthConfig`` lists them in this order)."""

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
    seed: int = arg(1234, "spans, voices and noise depend only on the seed, the input file and the document id",
                    group=SPANS)
    tts: str = arg("espeak", "speech backend: espeak-ng, NeMo models, or OpenAI-compatible TTS servers",
                   choices=["espeak", "nemo", "openai"], group=SPEECH)
    speaker_policy: str = arg("span", "draw a speaker per span or one per document", choices=["span", "document"],
                              group=SPEECH)
    max_speech_seconds_per_doc: float = arg(600.0, "at most this much speech per document: past it, a random "
                                                   "subset of the spans is spoken, the rest stays text",
                                            group=SPEECH)
    tts_attempts: int = arg(2, "voices tried per span (a failed synthesis or a failed ASR check tries another) "
                               "before the span stays text", group=SPEECH)
    noise_snr_db: str | None = arg(None, "mix generated white/pink/brown noise into a share of spans at an SNR "
                                         "drawn from LOW,HIGH dB (e.g. 5,20)", metavar="LOW,HIGH", group=SPEECH)
    noise_share: float = arg(0.0, "share of spans that get noise (needs --noise-snr-db)", metavar="P",
                             group=SPEECH)
    espeak_engine: str = arg("auto", "espeak-ng in-process (library) or one process per span (command)",
                             choices=["auto", "library", "command"], group=SPEECH)
    tts_model: str | None = arg(None, "FastPitch .nemo file (--tts nemo); the model name the servers expect "
                                      "(--tts openai)", metavar="MODEL", group=SPEECH)
    vocoder_model: str | None = arg(None, "HiFi-GAN .nemo file (--tts nemo)", metavar="FILE", group=SPEECH)
    tts_batch_size: int = arg(16, "spans per NeMo batch", group=SPEECH)
    text_normalization: bool = arg(True, "normalize text with nemo_text_processing before NeMo TTS", group=SPEECH)
    text_norm_cache_dir: str | None = arg(None, "cache for the built text normalizers (default "
                                                "~/.cache/megatron_inserter/text_norm)", metavar="DIR", group=SPEECH)
    tts_url: tuple[str, ...] = arg([], "base URL of an OpenAI-compatible TTS server (POST URL/audio/speech), e.g. "
                                       "http://gpu01:8000/v1; repeat for several servers", repeat=True,
                                   metavar="URL", group=SERVERS)
    tts_voices: str | None = arg(None, "voice pool: one voice per line, NAME[<tab>LANGUAGE[<tab>GENDER]]",
                                 metavar="FILE", group=SERVERS)
    tts_api_key_env: str | None = arg(None, "name of the environment variable holding the servers' API key",
                                      metavar="NAME", group=SERVERS)
    tts_format: str = arg("wav", "response_format asked of the servers (pcm: s16le mono at --tts-pcm-rate)",
                          choices=["wav", "flac", "pcm"], group=SERVERS)
    tts_pcm_rate: int = arg(24000, "sample rate of pcm responses", metavar="HZ", group=SERVERS)
    tts_speed: str = arg("1.0", "speed sent with each request: one value, or LOW,HIGH drawn per span",
                         metavar="X|LOW,HIGH", group=SERVERS)
    tts_concurrency: int = arg(8, "requests in flight per worker process", group=SERVERS)
    tts_timeout: float = arg(120.0, "deadline of one request in seconds (connect, send, whole reply)",
                             metavar="S", group=SERVERS)


@dataclass(frozen=True)
class SynthConfig(AsrFlags, _SynthFlags):
    workers: int = arg(1, "worker processes on this node", group=SCALE)
    rank: int | None = arg(None, "this node's rank (default: slurm array task, else 0)", group=SCALE)
    world_size: int | None = arg(None, "number of nodes (default: slurm array task count, else 1)", group=SCALE)
    progress: bool = arg(True, "show a progress bar (a log line a minute when stderr is not a terminal)",
                         group=SCALE)

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        put("input", (self.input,) if isinstance(self.input, str) else tuple(self.input or ()))
        value = self.tts_url
        put("tts_url", (value,) if isinstance(value, str) else tuple(value or ()))
        self._check_asr()
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
        paths = ("tts_model", "vocoder_model") if self.tts == "nemo" else ("vocoder_model",)
        for name in paths + ("tts_voices",):
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
        for flag, value in (("--workers", self.workers), ("--tts-batch-size", self.tts_batch_size),
                            ("--tts-attempts", self.tts_attempts), ("--tts-concurrency", self.tts_concurrency),
                            ("--tts-pcm-rate", self.tts_pcm_rate)):
            if value < 1:
                raise UsageError(f"{flag} must be >= 1, got {value}")
        for flag, value in (("--max-speech-seconds-per-doc", self.max_speech_seconds_per_doc),
                            ("--tts-timeout", self.tts_timeout)):
            if not value > 0:
                raise UsageError(f"{flag} must be positive, got {value}")
        if not re.fullmatch(r"[A-Za-z0-9_]+", self.name):
            raise UsageError(f"--name {self.name!r}: use letters, digits and underscores only")
        if self.tts not in ("espeak", "nemo", "openai"):
            raise UsageError(f"--tts must be espeak, nemo or openai, got {self.tts!r}")
        if not self.json_keys:
            raise UsageError("--json-keys must name a field")
        self._check_servers()
        self._check_noise()

    def _check_servers(self) -> None:
        parse_range(self.tts_speed, "--tts-speed", low=0.0)
        if self.tts != "openai":
            for flag, value in (("--tts-url", self.tts_url), ("--tts-voices", self.tts_voices)):
                if value:
                    raise UsageError(f"{flag} is for --tts openai (the backend now is {self.tts})")
            return
        if not self.tts_url:
            raise UsageError("--tts openai needs --tts-url (the base URL of each server, e.g. http://gpu01:8000/v1)")
        if not self.tts_model:
            raise UsageError("--tts openai needs --tts-model (the model name the servers expect, e.g. tts-1 or "
                             "kokoro)")
        if not self.tts_voices:
            raise UsageError("--tts openai needs --tts-voices FILE (one voice per line: NAME, optionally a tab, "
                             "its language and a tab, its gender)")
        for env in (self.tts_api_key_env,):
            if env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env):
                raise UsageError(f"--tts-api-key-env {env!r} is not an environment variable name (give the "
                                 "variable's name, not the key)")

    def _check_noise(self) -> None:
        if not 0.0 <= self.noise_share <= 1.0:
            raise UsageError(f"--noise-share must be in [0, 1], got {self.noise_share}")
        if self.noise_share > 0 and not self.noise_snr_db:
            raise UsageError("--noise-share needs --noise-snr-db LOW,HIGH")
        if self.noise_snr_db:
            parse_range(self.noise_snr_db, "--noise-snr-db")

    @property
    def shard_limit(self) -> ShardSize:
        return parse_shard_size(self.shard_size)

    @property
    def speed_range(self) -> tuple[float, float]:
        return parse_range(self.tts_speed, "--tts-speed", low=0.0)

    @property
    def noise_range(self) -> tuple[float, float] | None:
        return parse_range(self.noise_snr_db, "--noise-snr-db") if self.noise_snr_db and self.noise_share else None

    def fingerprint(self) -> dict:
        """Everything that decides which samples the run produces (not how fast, nor on which rank, nor which
        servers answer: servers of one model are interchangeable). A voice pool counts by its content."""
        skip = {"workers", "rank", "progress", "output_dir", "text_norm_cache_dir", "tts_batch_size", "config",
                "tts_url", "tts_api_key_env", "tts_concurrency", "tts_timeout", "http_retries", "asr_url",
                "asr_api_key_env", "asr_concurrency", "asr_timeout", "asr_batch_size", "asr_device"}
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        d["inputs"] = list(d.pop("input"))
        d["json_key"] = d.pop("json_keys")
        d["shard_size"] = str(self.shard_limit)
        d["document_keying"] = DOCUMENT_KEYING
        if self.tts_voices and os.path.isfile(self.tts_voices):
            with open(self.tts_voices, "rb") as f:
                d["tts_voices"] = "sha256:" + hashlib.sha256(f.read()).hexdigest()
        return d


@dataclass(frozen=True)
class _FilterIO:
    shards: str = arg(None, "directory of synthesized shards (*.tar)", required=True, metavar="DIR")
    output_dir: str = arg(None, "where the checked shards, their manifests and filter-stats.json go",
                          required=True, metavar="DIR")
    progress: bool = arg(True, "print a line per finished shard")


@dataclass(frozen=True)
class FilterConfig(AsrFlags, _FilterIO):
    """The flags of ``inserter synth-filter``: the shards in, the checked shards out, the ASR flags."""

    def __post_init__(self):
        self._check_asr()
        if not self.asr_enabled:
            raise UsageError("give the ASR model: --asr-url with --asr-model NAME, or --asr-model with a local Whisper "
                             "directory or NeMo .nemo file")
        if os.path.abspath(self.shards) == os.path.abspath(self.output_dir):
            raise UsageError("--output-dir must differ from --shards (the shards are rewritten, not edited in place)")
