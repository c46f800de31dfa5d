"""``inserter preprocess``: shards or jsonl text -> megatron-core indexed datasets.

    inserter preprocess --input shards/ --output-prefix data/train \\
        --tokenizer-type sentencepiece --tokenizer-model tok.model --workers 8

Writes ``PREFIX.{bin,idx}`` (+ ``.meta.json``), and for shards ``PREFIX_audio`` and the ASR view
``PREFIX_asr``, plus ``PREFIX.stats.json`` (documents, tokens, speech hours, skips by reason).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from megatron_inserter.data.tokenizers import TOKENIZER_TYPES
from megatron_inserter.errors import UsageError
from megatron_inserter.flags import arg, run_command


@dataclass
class PreprocessFlags:
    input: list = arg([], "shard directories / *.tar files, or jsonl files (.jsonl, .jsonl.gz, .jsonl.zst; "  # noqa: RUF009
                      "directories and globs allowed)", required=True, metavar="PATH")
    output_prefix: str = arg(None, "output path prefix (PREFIX.bin, PREFIX.idx, ...)", required=True,
                             metavar="PREFIX")
    tokenizer_type: str = arg(None, "tokenizer kind", choices=TOKENIZER_TYPES, required=True)
    tokenizer_model: str = arg(None, "SentencePiece .model file, or a local Hugging Face tokenizer directory",
                               required=True, metavar="PATH")
    workers: int = arg(1, "processes")
    partitions: int = arg(None, "input partitions (default: --workers)")
    json_keys: list = arg(["text"], "jsonl field holding the text (one key; shards ignore it)",  # noqa: RUF009
                          metavar="KEY")
    keep_temp: bool = arg(False, "keep PREFIX.tmp/ (the partitions) afterwards")
    progress: bool = arg(True, "progress bar on stderr")


def run(flags: PreprocessFlags) -> int:
    if len(flags.json_keys) != 1:
        raise UsageError(f"--json-keys {' '.join(flags.json_keys)}: give exactly one key (preprocess one field "
                         f"per run)")
    if flags.workers < 1 or (flags.partitions is not None and flags.partitions < 1):
        raise UsageError("--workers and --partitions must be >= 1")
    from megatron_inserter.data.indexed.preprocess import PreprocessConfig, preprocess

    stats = preprocess(PreprocessConfig(
        inputs=flags.input, output_prefix=flags.output_prefix, tokenizer_type=flags.tokenizer_type,
        tokenizer_model=flags.tokenizer_model, workers=flags.workers, partitions=flags.partitions,
        json_key=flags.json_keys[0], keep_temp=flags.keep_temp, progress=flags.progress))
    summary = {k: stats[k] for k in ("documents", "tokens", "speech_spans", "speech_hours", "skipped", "seconds")
               if k in stats}
    print(json.dumps(summary, ensure_ascii=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command("inserter preprocess", PreprocessFlags, run, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
