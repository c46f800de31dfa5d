"""``inserter train-tokenizer``: a small SentencePiece model for the CPU demo.

    inserter train-tokenizer --input corpus.jsonl --vocab-size 4000 --output data/tok.model

Input: jsonl text (``--json-keys``) or interleaved shards (the documents' text). The model carries the
audio tokens and ``<|endoftext|>`` as user-defined symbols and byte fallback, so any text (Chinese
included) tokenizes and detokenizes exactly. Same input and flags -> the same model, byte for byte.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from megatron_inserter.errors import UsageError
from megatron_inserter.flags import arg, run_command


def corpus_texts(inputs: list[str], json_key: str = "text", max_documents: int | None = None) -> Iterator[str]:
    from megatron_inserter.data.indexed.sources import InputRange, expand_inputs, read_jsonl, read_shard_texts

    kind, files = expand_inputs(inputs)
    skipped: Counter = Counter()
    n = 0
    for f in files:
        texts = (read_shard_texts(f, skipped) if kind == "shards"
                 else (d.segments[0].text for d in read_jsonl(InputRange(f), json_key, skipped)))
        for text in texts:
            yield text
            n += 1
            if max_documents is not None and n >= max_documents:
                return


@dataclass
class TokenizerFlags:
    input: list = arg([], "jsonl files or shard directories", required=True, metavar="PATH")  # noqa: RUF009
    vocab_size: int = arg(None, "vocabulary size (room for 256 byte pieces and the special tokens)", required=True)
    output: str = arg(None, "path of the .model file to write", required=True, metavar="PATH")
    json_keys: list = arg(["text"], "jsonl field holding the text (one key)", metavar="KEY")  # noqa: RUF009
    model_type: str = arg("unigram", "SentencePiece model type", choices=["unigram", "bpe"])
    character_coverage: float = arg(0.9995, "share of characters kept (the rest fall back to bytes)")
    max_documents: int = arg(None, "train on the first N documents only")


def run(flags: TokenizerFlags) -> int:
    if len(flags.json_keys) != 1:
        raise UsageError(f"--json-keys {' '.join(flags.json_keys)}: give exactly one key")
    from megatron_inserter.data.tokenizers import build_tokenizer, train_sentencepiece

    texts = corpus_texts(flags.input, flags.json_keys[0], flags.max_documents)
    path = train_sentencepiece(texts, flags.output, flags.vocab_size, model_type=flags.model_type,
                               character_coverage=flags.character_coverage)
    tok = build_tokenizer("sentencepiece", path)
    print(json.dumps({"output": path, "vocab_size": tok.vocab_size, **tok.special_ids()}))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command("inserter train-tokenizer", TokenizerFlags, run, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
