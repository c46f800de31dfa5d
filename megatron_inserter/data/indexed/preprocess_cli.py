"""``inserter preprocess``: shards or jsonl text -> megatron-core indexed datasets.

    inserter preprocess --input shards/ --output-prefix data/train \\
        --tokenizer-type sentencepiece --tokenizer-model tok.model --workers 8

Writes ``PREFIX.{bin,idx}`` (+ ``.meta.json``), and for shards ``PREFIX_audio`` and the ASR view
``PREFIX_asr``, plus ``PREFIX.stats.json`` (documents, tokens, speech hours, skips by reason).

    inserter preprocess --format conversation --input dialogues.jsonl --output-prefix data/sft \
        --tokenizer-type huggingface --tokenizer-model /models/Qwen2-7B-Instruct --chat-template auto

``--format conversation`` reads jsonl rows of chat ``messages`` (system/user/assistant; audio parts in user
turns) and writes ``PREFIX`` (+ ``PREFIX_audio``) whose stored loss mask covers the assistant's tokens only.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from megatron_inserter.data.conversation.templates import TEMPLATES
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
    json_keys: list = arg(["text"], "jsonl field holding the text (one key; shards ignore it; --format "  # noqa: RUF009
                          "conversation reads messages unless another key is given)",
                          metavar="KEY")
    keep_temp: bool = arg(False, "keep PREFIX.tmp/ (the partitions) afterwards")
    format: str = arg("auto", "auto: shards -> interleaved speech and text, jsonl -> text; conversation: jsonl rows "
                              "of chat messages -> loss on the assistant's tokens only", choices=["auto", "conversation"])
    chat_template: str = arg("auto", "--format conversation: the tokenizer's own chat_template (tokenizer), Qwen2's "
                                     "chatml, Llama 3's llama3, or auto (the tokenizer's when it has one, else chatml)",
                             choices=TEMPLATES)
    seq_length: int = arg(None, "--format conversation: skip conversations longer than this many tokens, audio "
                                "expanded at the presets' 25 frames per second (training leaves out longer ones too)")
    progress: bool = arg(True, "progress bar on stderr")


def run(flags: PreprocessFlags) -> int:
    if len(flags.json_keys) != 1:
        raise UsageError(f"--json-keys {' '.join(flags.json_keys)}: give exactly one key (preprocess one field "
                         f"per run)")
    if flags.workers < 1 or (flags.partitions is not None and flags.partitions < 1):
        raise UsageError("--workers and --partitions must be >= 1")
    conversation = _conversation_options(flags)
    from megatron_inserter.data.indexed.preprocess import PreprocessConfig, preprocess

    stats = preprocess(PreprocessConfig(
        inputs=flags.input, output_prefix=flags.output_prefix, tokenizer_type=flags.tokenizer_type,
        tokenizer_model=flags.tokenizer_model, workers=flags.workers, partitions=flags.partitions,
        json_key=flags.json_keys[0], keep_temp=flags.keep_temp, progress=flags.progress, conversation=conversation))
    summary = {k: stats[k] for k in ("documents", "tokens", "assistant_tokens", "speech_spans", "speech_hours",
                                     "chat_template", "skipped", "seconds") if k in stats}
    print(json.dumps(summary, ensure_ascii=False))
    return 0


def _conversation_options(flags: PreprocessFlags):
    """``--format conversation``'s options (None for the other formats, which take none of them)."""
    if flags.format != "conversation":
        given = [f for f, v in (("--chat-template", flags.chat_template != "auto"),
                                ("--seq-length", flags.seq_length is not None)) if v]
        if given:
            raise UsageError(f"{' and '.join(given)} apply to --format conversation only")
        return None
    if flags.seq_length is not None and flags.seq_length < 1:
        raise UsageError("--seq-length must be >= 1")
    from megatron_inserter.data.conversation.writer import ConversationOptions

    key = "messages" if flags.json_keys == ["text"] else flags.json_keys[0]  # "text" is the text format's default
    return ConversationOptions(chat_template=flags.chat_template, json_key=key, seq_length=flags.seq_length)


def main(argv: list[str] | None = None) -> int:
    return run_command("inserter preprocess", PreprocessFlags, run, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
