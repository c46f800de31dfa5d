"""The JSON sidecar ``PREFIX.meta.json`` written next to ``PREFIX.bin``/``PREFIX.idx``.

It says what the token stream holds (which ids mark speech, which tokenizer made it) and where the audio
lives, so a training run with a different tokenizer is refused before it trains on wrong ids. It also binds
the dataset's files together: sizes and content fingerprints of every ``.bin``/``.idx`` it describes
(``binding``). A dataset without a sidecar (e.g. one made by Megatron's own preprocess_data.py) is read as
text only, after its token ids are checked against the tokenizer (``token_check``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

from megatron_inserter.errors import DataError
from megatron_inserter.files import write_text_atomic

FORMAT = "megatron-inserter/interleaved"
VERSION = 2  # 2: bos_id, token dtype and file fingerprints recorded
READABLE_VERSIONS = (1, 2)
META_SUFFIX = ".meta.json"

# Sequence modes in the text dataset's .idx (megatron-core "multimodal" mode byte per sequence).
MODE_TEXT = 0
MODE_SPEECH = 1
MODE_CONTEXT = 2  # text that is read but never a target (a conversation's system/user turns, template headers)

KINDS = ("interleaved", "asr", "text", "conversation")


class TokenizerMismatchError(DataError):
    pass


class MetadataError(DataError):
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
    bos_id: int | None = None  # prepended to every document (None: the tokenizer has no BOS)

    @classmethod
    def of(cls, tokenizer) -> TokenizerInfo:
        return cls(tokenizer.tokenizer_type, str(tokenizer.tokenizer_model), tokenizer.vocab_size,
                   tokenizer.vocab_hash(), **tokenizer.special_ids())


@dataclass
class DatasetMetadata:
    kind: str  # "interleaved" (speech spans in text), "asr" (speech -> transcript), "text" or "conversation"
    tokenizer: TokenizerInfo
    audio_prefix: str | None  # file name (no directory) of the int16 PCM dataset, next to this one
    sample_rate: int = 16_000
    num_documents: int = 0
    num_speech_spans: int = 0
    num_tokens: int = 0  # stored tokens (one placeholder per speech span)
    speech_seconds: float = 0.0
    token_dtype: str | None = None  # numpy name of the .bin's token type ("uint16" when the vocabulary fits)
    files: dict = field(default_factory=dict)  # file name -> {"size", "sample_sha256"} (binding.file_fingerprint)
    extra: dict = field(default_factory=dict)
    format: str = FORMAT
    version: int = VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict, path: str = "<memory>") -> DatasetMetadata:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            got = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise MetadataError(f"{path}: not a {FORMAT} metadata file (format={got!r}); re-run `inserter preprocess`")
        if d.get("version") not in READABLE_VERSIONS:
            raise MetadataError(f"{path}: metadata version {d.get('version')} is not supported (this version reads "
                                f"{READABLE_VERSIONS}); re-run `inserter preprocess`")
        try:
            d = dict(d)
            d["tokenizer"] = TokenizerInfo(**d["tokenizer"])
            return cls(**d)
        except (KeyError, TypeError) as e:
            raise MetadataError(f"{path}: malformed metadata ({e}); re-run `inserter preprocess`") from None

    def check_tokenizer(self, tokenizer, dataset_path: str) -> None:
        """Refuse a tokenizer whose vocabulary or special ids differ from the ones the data was made with."""
        mine = TokenizerInfo.of(tokenizer)
        keys = ("vocab_size", "vocab_hash", "eod_id", "audio_bos_id", "audio_eos_id", "audio_placeholder_id")
        if self.version >= 2:  # version 1 did not record the BOS (and stored none)
            keys += ("bos_id",)
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
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise MetadataError(f"cannot read dataset metadata {path!r}: {e}; re-run `inserter preprocess`") from None
    return DatasetMetadata.from_dict(d, path)


def write_metadata(path: str, meta: DatasetMetadata) -> None:
    """Write ``path`` atomically (a reader sees the old sidecar or the new one)."""
    write_text_atomic(path, meta.to_json())
