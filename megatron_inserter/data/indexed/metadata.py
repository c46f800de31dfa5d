"""The JSON sidecar ``PREFIX.meta.json`` written next to ``PREFIX.bin``/``PREFIX.idx``.

It says what the token stream holds (which ids mark speech, which tokenizer made it) and where the audio
lives, so a training run with a different tokenizer is refused before it trains on wrong ids. A dataset
without a sidecar (e.g. one made by Megatron's own preprocess_data.py) is read as text only.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

FORMAT = "megatron-inserter/interleaved"
VERSION = 1
META_SUFFIX = ".meta.json"

# Sequence modes in the text dataset's .idx (megatron-core "multimodal" mode byte per sequence).
MODE_TEXT = 0
MODE_SPEECH = 1

KINDS = ("interleaved", "asr", "text")


class TokenizerMismatchError(ValueError):
    pass


@dataclass
class TokenizerInfo:
    tokenizer_type: str
    tokenizer_model: str
    vocab_size: int
    vocab_hash: str
    eod_id: int
    pad_id: int
    audio_bos_id: int
    audio_eos_id: int
    audio_placeholder_id: int

    @classmethod
    def of(cls, tokenizer) -> TokenizerInfo:
        return cls(tokenizer.tokenizer_type, str(tokenizer.tokenizer_model), tokenizer.vocab_size,
                   tokenizer.vocab_hash(), **tokenizer.special_ids())


@dataclass
class DatasetMetadata:
    kind: str  # "interleaved" (speech spans in text), "asr" (speech -> transcript) or "text"
    tokenizer: TokenizerInfo
    audio_prefix: str | None  # file name (no directory) of the int16 PCM dataset, next to this one
    sample_rate: int = 16_000
    num_documents: int = 0
    num_speech_spans: int = 0
    num_tokens: int = 0  # stored tokens (one placeholder per speech span)
    speech_seconds: float = 0.0
    extra: dict = field(default_factory=dict)
    format: str = FORMAT
    version: int = VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict, path: str = "<memory>") -> DatasetMetadata:
        if d.get("format") != FORMAT:
            raise ValueError(f"{path}: not a {FORMAT} metadata file (format={d.get('format')!r})")
        if d.get("version") != VERSION:
            raise ValueError(f"{path}: metadata version {d.get('version')} is not supported (expected {VERSION})")
        d = dict(d)
        d["tokenizer"] = TokenizerInfo(**d["tokenizer"])
        return cls(**d)

    def check_tokenizer(self, tokenizer, dataset_path: str) -> None:
        """Refuse a tokenizer whose vocabulary or special ids differ from the ones the data was made with."""
        mine = TokenizerInfo.of(tokenizer)
        keys = ("vocab_size", "vocab_hash", "eod_id", "audio_bos_id", "audio_eos_id", "audio_placeholder_id")
        diffs = [f"{k}: dataset {getattr(self.tokenizer, k)!r} vs tokenizer {getattr(mine, k)!r}"
                 for k in keys if getattr(self.tokenizer, k) != getattr(mine, k)]
        if diffs:
            raise TokenizerMismatchError(
                f"dataset {dataset_path!r} was tokenized with {self.tokenizer.tokenizer_type} "
                f"{self.tokenizer.tokenizer_model!r}, which differs from the tokenizer given "
                f"({mine.tokenizer_type} {mine.tokenizer_model!r}): {'; '.join(diffs)}. Train with the tokenizer "
                f"the data was made with, or re-run `inserter preprocess` with this one."
            )


def meta_path(prefix: str) -> str:
    return prefix + META_SUFFIX


def read_metadata(prefix: str) -> DatasetMetadata | None:
    """The sidecar of ``prefix``, or None when there is none (a plain Megatron text dataset)."""
    path = meta_path(prefix)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read dataset metadata {path!r}: {e}; re-run `inserter preprocess`") from e
    return DatasetMetadata.from_dict(d, path)


def write_metadata(path: str, meta: DatasetMetadata) -> None:
    """Write to ``path`` through a temporary name."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(meta.to_json())
    os.replace(tmp, path)
