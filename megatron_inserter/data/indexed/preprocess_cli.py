"""``inserter preprocess``: shards or jsonl text -> megatron-core indexed datasets.

    inserter preprocess --input shards/ --output-prefix data/train \\
        --tokenizer-type sentencepiece --tokenizer-model tok.model --workers 8

Writes ``PREFIX.{bin,idx}`` (+ ``.meta.json``), and for shards ``PREFIX_audio`` and the ASR view
``PREFIX_asr``, plus ``PREFIX.stats.json`` (documents, tokens, speech hours, skips by reason).
"""

from __future__ import annotations

import argparse
import json
import sys

from megatron_inserter.data.indexed.preprocess import PreprocessConfig, preprocess
from megatron_inserter.data.tokenizers import TOKENIZER_TYPES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="inserter preprocess", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", nargs="+", required=True,
                   help="shard directories / *.tar files, or jsonl files (directories and globs allowed)")
    p.add_argument("--output-prefix", required=True, help="output path prefix (PREFIX.bin, PREFIX.idx, ...)")
    p.add_argument("--tokenizer-type", required=True, choices=TOKENIZER_TYPES)
    p.add_argument("--tokenizer-model", required=True,
                   help="SentencePiece .model file, or a local Hugging Face tokenizer directory")
    p.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    p.add_argument("--partitions", type=int, default=None, help="input partitions (default: --workers)")
    p.add_argument("--json-keys", nargs="+", default=["text"],
                   help="jsonl field holding the text (one key; shards ignore it)")
    p.add_argument("--keep-temp", action="store_true", help="keep PREFIX.tmp/ (the partitions) afterwards")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if len(args.json_keys) != 1:
        print("error: give exactly one --json-keys value (preprocess one field per run)", file=sys.stderr)
        return 2
    if args.workers < 1 or (args.partitions is not None and args.partitions < 1):
        print("error: --workers and --partitions must be >= 1", file=sys.stderr)
        return 2
    cfg = PreprocessConfig(
        inputs=args.input, output_prefix=args.output_prefix, tokenizer_type=args.tokenizer_type,
        tokenizer_model=args.tokenizer_model, workers=args.workers, partitions=args.partitions,
        json_key=args.json_keys[0], keep_temp=args.keep_temp, progress=not args.no_progress,
    )
    try:
        stats = preprocess(cfg)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    summary = {k: stats[k] for k in ("documents", "tokens", "speech_spans", "speech_hours", "skipped", "seconds")
               if k in stats}
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
