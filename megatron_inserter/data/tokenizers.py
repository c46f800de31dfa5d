"""Tokenizers behind one interface: SentencePiece model files and local Hugging Face tokenizers.

    tok = build_tokenizer("sentencepiece", "demo.model")      # or ("huggingface", "/models/Qwen2-7B")
    ids = tok.tokenize("hello")                              # no BOS/EOS added
    tok.audio_bos_id, tok.audio_eos_id, tok.audio_placeholder_id, tok.eod_id, tok.pad_id
    tok.bos_id                                                # None when the tokenizer has no BOS
    arrays = tok.tokenize_batch(["one", "two"])              # one int array per text, encoded in C++

The audio special tokens use Qwen2-Audio's names. A Hugging Face tokenizer that lacks them gets them
appended (always in the same order, so the ids are stable); a SentencePiece model cannot grow, so it must
carry them as user-defined symbols from training (``train_sentencepiece`` does that) and is refused
otherwise. Nothing is ever fetched from a model hub.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from megatron_inserter.errors import DataError, UsageError

TOKENIZER_TYPES = ("sentencepiece", "huggingface")
_TYPE_ALIASES = {
    "sentencepiece": "sentencepiece", "sentencepiecetokenizer": "sentencepiece", "gptsentencepiecetokenizer":
    "sentencepiece", "huggingface": "huggingface", "huggingfacetokenizer": "huggingface", "hf": "huggingface",
}


@dataclass(frozen=True)
class SpecialTokens:
    """The strings of the special tokens (Qwen2-Audio names by default)."""

    audio_bos: str = "<|audio_bos|>"
    audio_eos: str = "<|audio_eos|>"
    audio_placeholder: str = "<|AUDIO|>"
    eod: str = "<|endoftext|>"

    @property
    def audio(self) -> list[str]:
        return [self.audio_bos, self.audio_eos, self.audio_placeholder]


class Tokenizer:
    """Common interface. Subclasses set the ids in ``__init__`` and implement the two conversions."""

    tokenizer_type: str
    tokenizer_model: str
    vocab_size: int
    eod_id: int
    pad_id: int
    audio_bos_id: int
    audio_eos_id: int
    audio_placeholder_id: int
    bos_id: int | None = None  # prepended to every document when set (Llama 3's <|begin_of_text|>, SentencePiece <s>)

    def tokenize(self, text: str) -> list[int]:
        raise NotImplementedError

    def tokenize_batch(self, texts: list[str]) -> list:
        """Token ids of many texts at once, one integer numpy array per text."""
        import numpy as np

        return [np.asarray(self.tokenize(t), dtype=np.int64) for t in texts]

    def detokenize(self, ids: Iterable[int]) -> str:
        raise NotImplementedError

    def id_to_piece(self, token_id: int) -> str:
        raise NotImplementedError

    @property
    def eod(self) -> int:
        """Megatron's name for the end-of-document id."""
        return self.eod_id

    @property
    def audio_special_ids(self) -> tuple[int, int, int]:
        return (self.audio_bos_id, self.audio_eos_id, self.audio_placeholder_id)

    def special_ids(self) -> dict[str, int | None]:
        return {
            "eod_id": self.eod_id, "pad_id": self.pad_id, "audio_bos_id": self.audio_bos_id,
            "audio_eos_id": self.audio_eos_id, "audio_placeholder_id": self.audio_placeholder_id,
            "bos_id": self.bos_id,
        }

    def vocab_hash(self) -> str:
        """Digest of the whole id -> piece table: two tokenizers with equal hashes tokenize alike."""
        if getattr(self, "_vocab_hash", None) is None:
            h = hashlib.sha256()
            for i in range(self.vocab_size):
                h.update(self.id_to_piece(i).encode("utf-8", "surrogatepass"))
                h.update(b"\x00")
            self._vocab_hash = h.hexdigest()[:16]
        return self._vocab_hash

    @property
    def unique_identifiers(self) -> OrderedDict:
        """Used by megatron-core to key its dataset caches."""
        return OrderedDict(
            [("class", type(self).__name__), ("vocab_size", self.vocab_size), ("vocab_hash", self.vocab_hash()),
             *self.special_ids().items()]
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.tokenizer_model!r}, vocab_size={self.vocab_size})"

    # Rebuilt from the path when pickled (DataLoader workers, process pools).
    def __getstate__(self):
        return {"tokenizer_model": self.tokenizer_model, "specials": self.specials}

    def __setstate__(self, state):
        self.__init__(state["tokenizer_model"], state["specials"])


class SentencePieceTokenizer(Tokenizer):
    tokenizer_type = "sentencepiece"

    def __init__(self, tokenizer_model: str, specials: SpecialTokens = SpecialTokens()) -> None:
        import sentencepiece as spm

        if not os.path.isfile(tokenizer_model):
            raise FileNotFoundError(f"SentencePiece model {tokenizer_model!r} does not exist")
        self.tokenizer_model = tokenizer_model
        self.specials = specials
        self._sp = spm.SentencePieceProcessor(model_file=tokenizer_model)
        self.vocab_size = self._sp.vocab_size()
        missing = [s for s in specials.audio if not self._has_piece(s)]
        if missing:
            raise DataError(
                f"SentencePiece model {tokenizer_model!r} has no piece for {missing}. A SentencePiece vocabulary "
                f"cannot be extended after training: train the model with these strings as user-defined symbols "
                f"(`inserter train-tokenizer` does; with spm_train pass --user_defined_symbols="
                f"{','.join(specials.audio + [specials.eod])}) or use a Hugging Face tokenizer."
            )
        self.audio_bos_id = self._sp.piece_to_id(specials.audio_bos)
        self.audio_eos_id = self._sp.piece_to_id(specials.audio_eos)
        self.audio_placeholder_id = self._sp.piece_to_id(specials.audio_placeholder)
        if self._has_piece(specials.eod):
            self.eod_id = self._sp.piece_to_id(specials.eod)
        elif self._sp.eos_id() >= 0:
            self.eod_id = self._sp.eos_id()
        else:
            raise DataError(f"SentencePiece model {tokenizer_model!r} has neither {specials.eod!r} nor an eos piece")
        self.pad_id = self._sp.pad_id() if self._sp.pad_id() >= 0 else self.eod_id
        self.bos_id = self._sp.bos_id() if self._sp.bos_id() >= 0 else None

    def _has_piece(self, piece: str) -> bool:
        i = self._sp.piece_to_id(piece)
        return not self._sp.is_unknown(i) and self._sp.id_to_piece(i) == piece

    def tokenize(self, text: str) -> list[int]:
        return self._sp.encode(text)

    def tokenize_batch(self, texts: list[str]) -> list:
        # One C++ call per batch, arrays out: no per-token Python objects. One thread: parallelism is
        # the caller's (preprocessing workers).
        return self._sp.encode(list(texts), num_threads=1, return_type="numpy")

    def detokenize(self, ids: Iterable[int]) -> str:
        return self._sp.decode([int(i) for i in ids])

    def id_to_piece(self, token_id: int) -> str:
        return self._sp.id_to_piece(int(token_id))


class HuggingFaceTokenizer(Tokenizer):
    """A tokenizer from a local directory: ``tokenizer.json`` through the ``tokenizers`` library, else
    ``transformers.AutoTokenizer`` with ``local_files_only``."""

    tokenizer_type = "huggingface"

    def __init__(self, tokenizer_model: str, specials: SpecialTokens = SpecialTokens()) -> None:
        if not os.path.isdir(tokenizer_model):
            raise FileNotFoundError(
                f"Hugging Face tokenizer directory {tokenizer_model!r} does not exist (tokenizers are never "
                f"downloaded: point --tokenizer-model at a local directory holding tokenizer.json)"
            )
        self.tokenizer_model = tokenizer_model
        self.specials = specials
        config = _read_json(os.path.join(tokenizer_model, "tokenizer_config.json"))
        tokenizer_json = os.path.join(tokenizer_model, "tokenizer.json")
        if os.path.isfile(tokenizer_json):
            from tokenizers import Tokenizer as FastTokenizer

            self._tok = FastTokenizer.from_file(tokenizer_json)
            self._tok.add_special_tokens([s for s in specials.audio if self._tok.token_to_id(s) is None])
            self._encode = lambda text: self._tok.encode(text, add_special_tokens=False).ids
            self._encode_batch = lambda texts: [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]
            self._decode = lambda ids: self._tok.decode(ids, skip_special_tokens=False)
            self._token_to_id = self._tok.token_to_id
            self._id_to_token = self._tok.id_to_token
            self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        else:
            from transformers import AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(tokenizer_model, local_files_only=True)
            missing = [s for s in specials.audio if s not in self._tok.get_vocab()]
            if missing:
                self._tok.add_tokens(missing, special_tokens=True)
            self._encode = lambda text: self._tok.encode(text, add_special_tokens=False)
            self._encode_batch = lambda texts: self._tok(list(texts), add_special_tokens=False)["input_ids"]
            self._decode = lambda ids: self._tok.decode(ids, skip_special_tokens=False,
                                                        clean_up_tokenization_spaces=False)
            vocab = self._tok.get_vocab()
            self._token_to_id = vocab.get
            inverse = {i: t for t, i in vocab.items()}
            self._id_to_token = inverse.get
            self.vocab_size = len(vocab)
        self.audio_bos_id = self._token_to_id(specials.audio_bos)
        self.audio_eos_id = self._token_to_id(specials.audio_eos)
        self.audio_placeholder_id = self._token_to_id(specials.audio_placeholder)
        eod_name = specials.eod if self._token_to_id(specials.eod) is not None else _token_name(config.get("eos_token"))
        if eod_name is None or self._token_to_id(eod_name) is None:
            raise DataError(
                f"tokenizer in {tokenizer_model!r} has no {specials.eod!r} and no eos_token in tokenizer_config.json"
            )
        self.eod_id = self._token_to_id(eod_name)
        pad_name = _token_name(config.get("pad_token"))
        pad = self._token_to_id(pad_name) if pad_name else None
        self.pad_id = pad if pad is not None else self.eod_id
        bos_name = _token_name(config.get("bos_token"))
        self.bos_id = self._token_to_id(bos_name) if bos_name else None

    def tokenize(self, text: str) -> list[int]:
        return list(self._encode(text))

    def tokenize_batch(self, texts: list[str]) -> list:
        import numpy as np

        return [np.asarray(ids, dtype=np.int64) for ids in self._encode_batch(list(texts))]

    def detokenize(self, ids: Iterable[int]) -> str:
        return self._decode([int(i) for i in ids])

    def id_to_piece(self, token_id: int) -> str:
        piece = self._id_to_token(int(token_id))
        return "" if piece is None else piece


def _read_json(path: str) -> dict:
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _token_name(value) -> str | None:
    if isinstance(value, dict):  # {"content": "<|endoftext|>", ...} in older configs
        return value.get("content")
    return value


def build_tokenizer(tokenizer_type: str, tokenizer_model: str, specials: SpecialTokens = SpecialTokens()) -> Tokenizer:
    kind = _TYPE_ALIASES.get(tokenizer_type.lower().replace("-", "").replace("_", ""))
    if kind is None:
        raise UsageError(f"unknown tokenizer type {tokenizer_type!r}; choose one of {TOKENIZER_TYPES}")
    if kind == "sentencepiece":
        return SentencePieceTokenizer(tokenizer_model, specials)
    return HuggingFaceTokenizer(tokenizer_model, specials)


def train_sentencepiece(
    texts: Iterable[str],
    output: str,
    vocab_size: int,
    specials: SpecialTokens = SpecialTokens(),
    model_type: str = "unigram",
    character_coverage: float = 0.9995,
    max_sentences: int = 2_000_000,
) -> str:
    """Train a SentencePiece model on ``texts`` (one string per document) and write it to ``output``.

    Deterministic for the same texts and settings (one training thread). Byte fallback keeps every
    character representable (Chinese included); whitespace and characters are kept exactly
    (identity normalisation, no dummy prefix), so ``detokenize(tokenize(t)) == t``. The audio tokens and
    the end-of-document token are user-defined symbols. Written through a temporary name.
    """
    import sentencepiece as spm

    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=_lines(texts, max_sentences), model_writer=model, vocab_size=vocab_size,
            model_type=model_type, character_coverage=character_coverage, byte_fallback=True,
            user_defined_symbols=[specials.eod, *specials.audio], pad_id=0, unk_id=1, bos_id=2, eos_id=3,
            add_dummy_prefix=False, remove_extra_whitespaces=False, normalization_rule_name="identity",
            split_digits=True, hard_vocab_limit=False, num_threads=1, input_sentence_size=max_sentences,
            shuffle_input_sentence=False, max_sentence_length=16384, minloglevel=2,
        )
    except RuntimeError as e:
        raise DataError(f"SentencePiece training failed: {e}. The vocabulary needs room for the 256 byte pieces, "
                         f"the special tokens and every character kept by --character-coverage.") from e
    from megatron_inserter.files import write_bytes_atomic

    write_bytes_atomic(output, model.getvalue())
    return output


def _lines(texts: Iterable[str], limit: int) -> Iterator[str]:
    """Documents as training sentences: split on newlines, empty lines dropped."""
    n = 0
    for text in texts:
        for line in text.split("\n"):
            if line.strip():
                yield line
                n += 1
                if n >= limit:
                    return
