"""``inserter preprocess --format conversation``: conversation rows of jsonl files -> indexed datasets.

Output (real megatron-core ``.bin``/``.idx`` pairs, like the interleaved output minus its ASR view):

``PREFIX``        one document per conversation, a "multimodal" .idx with a mode byte per sequence:
                  assistant text (``MODE_TEXT``, the only targets), context text (``MODE_CONTEXT``: system
                  and user turns, template headers, BOS and end-of-document) and speech spans
                  (``MODE_SPEECH``: ``<|audio_bos|> <|AUDIO|> <|audio_eos|>``, expanded when samples are built).
``PREFIX_audio``  int16 PCM, one sequence per audio part, documents aligned with ``PREFIX``'s.

The sidecar's kind is ``conversation``: training keeps each conversation whole inside one sample (never a
turn split across samples), and leaves out (counted, logged) a conversation longer than a sample. With
``seq_length`` set, preprocessing already skips conversations longer than that (their audio expanded with
the default frame layout, ``frames.FrameSpec()``). Every bad row is a counted skip with its file:line and
what is wrong (the first ten printed on stderr as they occur).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from megatron_inserter.data import text_inputs
from megatron_inserter.data.conversation.encode import DEFAULT_FRAMES, ConversationEncoder
from megatron_inserter.data.conversation.messages import (
    BadConversation,
    Conversation,
    load_audio,
    parse_conversation,
)
from megatron_inserter.data.conversation.templates import build_template
from megatron_inserter.data.frames import FrameSpec
from megatron_inserter.data.indexed.audio_store import AUDIO_SUFFIX
from megatron_inserter.data.indexed.index_format import optimal_token_dtype
from megatron_inserter.data.indexed.sources import InputRange
from megatron_inserter.data.indexed.writer import DatasetWriter
from megatron_inserter.data.text_inputs import SkipReport

SKIP_EXAMPLES = 5
PROG = "inserter preprocess"


@dataclass(frozen=True)
class ConversationOptions:
    chat_template: str = "auto"  # templates.TEMPLATES
    json_key: str = "messages"
    seq_length: int | None = None  # skip conversations longer than this (None: training decides)


def conversation_prefixes(prefix: str) -> dict[str, str]:
    """The dataset prefixes of one conversation output, by role."""
    return {"text": prefix, "audio": prefix + AUDIO_SUFFIX}


def read_rows(r: InputRange, key: str, report: SkipReport) -> Iterator[tuple[str, Conversation]]:
    """``(file:line, conversation)`` of the rows of ``r``; a bad row is a skip in ``report``. A compressed
    file is read only as far as it is verified (``text_inputs``)."""
    path = r.path
    check = text_inputs.check_stream(path) if text_inputs.compression_of(path) is not None else None
    end = None if r.end < 0 else r.end
    base = os.path.dirname(os.path.abspath(path))
    line = r.first_line - 1
    for line, raw in text_inputs.iter_lines(path, start=r.start, end=end, first_line=r.first_line, check=check):
        where = f"{path}:{line}"
        record, reason = text_inputs.parse_object(raw)
        if reason is not None:
            report.add(reason, where)
            continue
        try:
            yield where, parse_conversation(record, key, base, default_id=where)
        except BadConversation as e:
            report.add(e.reason, where, e.what)
    if check is not None and not check.ok:
        report.add("corrupt_stream", f"{path}:{line + 1}", f"{check.fault}; the lines before it are used")


class _Report(SkipReport):
    """Counted skips that also keep a few file:line examples per reason for the closing summary."""

    def __init__(self, counts: Counter, examples: dict[str, list[str]]):
        super().__init__(counts, prog=PROG)
        self.examples = examples

    def add(self, reason: str, where: str, detail: str | None = None) -> None:
        super().add(reason, where, detail)
        if len(self.examples[reason]) < SKIP_EXAMPLES:
            self.examples[reason].append(where)


class ConversationWriter(DatasetWriter):
    def __init__(self, prefix: str, tokenizer, options: ConversationOptions, add_bos: bool = True,
                 frame_spec: FrameSpec = DEFAULT_FRAMES) -> None:
        super().__init__(conversation_prefixes(prefix), optimal_token_dtype(tokenizer.vocab_size))
        self.options = options
        self.template = build_template(options.chat_template, tokenizer)
        self.encoder = ConversationEncoder(tokenizer, self.template, add_bos, frame_spec)
        self.frame_spec = frame_spec
        self.report = _Report(self.skipped, self.skip_examples)

    @property
    def template_name(self) -> str:
        return self.template.name

    def add_range(self, r: InputRange, progress: Callable[[int], None] | None = None, every: int = 256) -> None:
        """Every row of one input range, in order."""
        n = 0
        for where, conversation in read_rows(r, self.options.json_key, self.report):
            self.add(conversation, where)
            n += 1
            if progress is not None and n % every == 0:
                progress(every)
        if progress is not None and n % every:
            progress(n % every)

    def add(self, conversation: Conversation, where: str) -> bool:
        """Encode and write one conversation; False (a counted skip) when it cannot be used."""
        try:
            audio = [load_audio(a) for a in conversation.audio]
            enc = self.encoder.encode(conversation, audio)
            limit = self.options.seq_length
            if limit is not None and (n := enc.expanded_length(self.frame_spec)) > limit:
                raise BadConversation("conversation_too_long", f"{n} tokens with its audio expanded, more than "
                                                               f"--seq-length {limit}")
        except BadConversation as e:
            self.report.add(e.reason, where, e.what)
            return False
        lengths = [len(s) for s in enc.sequences]
        self.builders["text"].add_document(np.concatenate(enc.sequences), lengths, enc.modes)
        for pcm in enc.audio:
            self.builders["audio"].add_item(pcm)
            self.stats["speech_samples"] += int(pcm.size)
        self.builders["audio"].end_document()
        self.stats["documents"] += 1
        self.stats["sequences"] += len(lengths)
        self.stats["tokens"] += sum(lengths)
        self.stats["assistant_tokens"] += enc.num_target_tokens
        self.stats["speech_spans"] += len(enc.audio)
        return True

    def partition_prefixes(self, prefix: str) -> dict[str, str]:
        return conversation_prefixes(prefix)
