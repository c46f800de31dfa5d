"""``inserter train-tokenizer``: a small SentencePiece model for the CPU demo.

    inserter train-tokenizer --input corpus.jsonl --vocab-size 4000 --output data/tok.model

Input: jsonl text (``--json-keys``) or interleaved shards (the documents' text). The model carries the
audio tokens and ``<|endoftext|>`` as user-defined symbols and byte fallback, so any text (Chinese
included) tokenizes and detokenizes exactly. Same input and flags -> the same model, byte for byte.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterator

from megatron_inserter.data.indexed.sources import InputRange, expand_inputs, read_jsonl, read_shard_texts
from megatron_inserter.data.tokenizers import build_tokenizer, train_sentencepiece


def corpus_texts(inputs: list[str], json_key: str = "text", max_documents: int | None = None) -> Iterator[str]:
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="inserter train-tokenizer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", nargs="+", required=True, help="jsonl files or shard directories")
    p.add_argument("--vocab-size", type=int, required=True)
    p.add_argument("--output", required=True, help="path of the .model file to write")
    p.add_argument("--json-keys", nargs="+", default=["text"], help="jsonl field holding the text")
    p.add_argument("--model-type", default="unigram", choices=["unigram", "bpe"])
    p.add_argument("--character-coverage", type=float, default=0.9995)
    p.add_argument("--max-documents", type=int, default=None, help="train on the first N documents only")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if len(args.json_keys) != 1:
        print("error: give exactly one --json-keys value", file=sys.stderr)
        return 2
    try:
        texts = corpus_texts(args.input, args.json_keys[0], args.max_documents)
        path = train_sentencepiece(texts, args.output, args.vocab_size, model_type=args.model_type,
                                   character_coverage=args.character_coverage)
        tok = build_tokenizer("sentencepiece", path)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"output": path, "vocab_size": tok.vocab_size, **tok.special_ids()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
