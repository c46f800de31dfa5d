"""Writes documents into the three indexed datasets of one output (or one partition of it).

Layout (all real megatron-core ``.bin``/``.idx`` pairs):

``PREFIX``        int32 tokens, "multimodal" .idx (one mode byte per sequence). A document is a run of
                  sequences: text pieces (mode 0) and speech spans (mode 1). A speech span is stored as the
                  three tokens ``<|audio_bos|> <|AUDIO|> <|audio_eos|>``: the single placeholder is expanded
                  to the model's frame count when samples are built, so the stored data is model-agnostic.
                  The last text piece ends with the end-of-document token.
``PREFIX_audio``  int16 PCM, one sequence per speech span in the order the spans appear in ``PREFIX``
                  (documents aligned with ``PREFIX``'s; a text-only document has none).
``PREFIX_asr``    the ASR view: one document per speech span, ``<|audio_bos|> <|AUDIO|> <|audio_eos|>``
                  then the span's transcript and the end-of-document token. Its k-th span is the k-th
                  span of ``PREFIX_audio`` too, so the audio is stored once and shared.
"""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import torch
from megatron.core.datasets.indexed_dataset import get_bin_path, get_idx_path

from megatron_inserter.data.frames import SAMPLE_RATE
from megatron_inserter.data.indexed.audio_store import AUDIO_DTYPE, AUDIO_SUFFIX
from megatron_inserter.data.indexed.builder import CompactIndexedDatasetBuilder
from megatron_inserter.data.indexed.metadata import MODE_SPEECH, MODE_TEXT
from megatron_inserter.data.indexed.sources import Document, SkipDocument

ASR_SUFFIX = "_asr"
TOKEN_DTYPE = np.int32


def output_prefixes(prefix: str, with_audio: bool) -> dict[str, str]:
    """The dataset prefixes one output consists of, by role."""
    if not with_audio:
        return {"text": prefix}
    return {"text": prefix, "audio": prefix + AUDIO_SUFFIX, "asr": prefix + ASR_SUFFIX}


class InterleavedWriter:
    def __init__(self, prefix: str, tokenizer, with_audio: bool) -> None:
        self.prefixes = output_prefixes(prefix, with_audio)
        self.tokenizer = tokenizer
        self.with_audio = with_audio
        self._markers = np.array(tokenizer.audio_special_ids, dtype=np.int64)
        self.builders = {
            role: CompactIndexedDatasetBuilder(get_bin_path(p), dtype=AUDIO_DTYPE if role == "audio" else TOKEN_DTYPE,
                                        multimodal=role != "audio")
            for role, p in self.prefixes.items()
        }
        self.stats = Counter()
        self.skipped = Counter()

    def _tokens(self, text: str) -> list[int]:
        ids = self.tokenizer.tokenize(text)
        if ids and np.isin(np.asarray(ids, dtype=np.int64), self._markers).any():
            raise SkipDocument("audio_marker_in_text")
        return ids

    def add(self, doc: Document) -> bool:
        """Add one document; returns False (and counts the reason) when it is skipped."""
        try:
            seqs, modes, spans, span_tokens = self._encode(doc)
        except SkipDocument as e:
            self.skipped[e.reason] += 1
            return False
        tok = self.tokenizer
        lengths = [len(s) for s in seqs]
        self.builders["text"].add_document(np.concatenate(seqs).astype(TOKEN_DTYPE), lengths, modes)
        self.stats["documents"] += 1
        self.stats["sequences"] += len(seqs)
        self.stats["tokens"] += sum(lengths)
        if self.with_audio:
            span_marker = [tok.audio_bos_id, tok.audio_placeholder_id, tok.audio_eos_id]
            for pcm, text_ids in zip(spans, span_tokens):
                self.builders["audio"].add_item(torch.from_numpy(pcm))
                asr_doc = np.asarray(span_marker + text_ids + [tok.eod_id], dtype=TOKEN_DTYPE)
                self.builders["asr"].add_document(asr_doc, [3, len(text_ids) + 1], [MODE_SPEECH, MODE_TEXT])
                self.stats["asr_tokens"] += len(asr_doc)
                self.stats["speech_samples"] += int(pcm.size)
            self.builders["audio"].end_document()
            self.stats["speech_spans"] += len(spans)
            self.stats["asr_documents"] += len(spans)
        return True

    def _encode(self, doc: Document):
        tok = self.tokenizer
        seqs: list[list[int]] = []
        modes: list[int] = []
        spans: list[np.ndarray] = []
        span_tokens: list[list[int]] = []
        pending = ""
        for seg in doc.segments:
            if seg.is_speech:
                if not self.with_audio:
                    raise SkipDocument("speech_in_text_only_output")
                if pending:
                    self._add_text(pending, seqs, modes)
                    pending = ""
                seqs.append([tok.audio_bos_id, tok.audio_placeholder_id, tok.audio_eos_id])
                modes.append(MODE_SPEECH)
                spans.append(np.ascontiguousarray(seg.audio, dtype=AUDIO_DTYPE))
                span_tokens.append(self._tokens(seg.text))
            else:
                pending += seg.text
        if pending:
            self._add_text(pending, seqs, modes)
        if not seqs:
            raise SkipDocument("empty_document")
        if modes[-1] == MODE_TEXT:
            seqs[-1].append(tok.eod_id)
        else:
            seqs.append([tok.eod_id])
            modes.append(MODE_TEXT)
        return seqs, modes, spans, span_tokens

    def _add_text(self, text: str, seqs: list, modes: list) -> None:
        ids = self._tokens(text)
        if ids:
            seqs.append(list(ids))
            modes.append(MODE_TEXT)

    def add_partition(self, prefix: str) -> None:
        """Append a finished partition (same layout) with ``add_index``."""
        for role, p in output_prefixes(prefix, self.with_audio).items():
            self.builders[role].add_index(p)

    def finalize(self) -> None:
        for role, p in self.prefixes.items():
            self.builders[role].finalize(get_idx_path(p))

    def summary(self) -> dict:
        s = dict(self.stats)
        s["speech_hours"] = s.get("speech_samples", 0) / SAMPLE_RATE / 3600.0
        s["skipped"] = dict(self.skipped)
        return s


def dataset_files(prefix: str) -> tuple[str, str]:
    return get_bin_path(prefix), get_idx_path(prefix)


def remove_dataset(prefix: str) -> None:
    for path in dataset_files(prefix):
        if os.path.exists(path):
            os.remove(path)
