"""Writes documents into the three indexed datasets of one output (or one partition of it).

Layout (all real megatron-core ``.bin``/``.idx`` pairs):

``PREFIX``        tokens (uint16 when the vocabulary fits, else int32), "multimodal" .idx (one mode byte
                  per sequence). A document is a run of sequences: text pieces (mode 0) and speech spans
                  (mode 1). It starts with the tokenizer's BOS when it has one and ends with the
                  end-of-document token. A speech span is stored as the three tokens
                  ``<|audio_bos|> <|AUDIO|> <|audio_eos|>``: the single placeholder is expanded to the model's
                  frame count when samples are built, so the stored data is model-agnostic.
``PREFIX_audio``  int16 PCM, one sequence per speech span in the order the spans appear in ``PREFIX``
                  (documents aligned with ``PREFIX``'s; a text-only document has none).
``PREFIX_asr``    the ASR view: one document per speech span, [BOS] ``<|audio_bos|> <|AUDIO|> <|audio_eos|>``
                  then the span's transcript and the end-of-document token. Its k-th span is the k-th
                  span of ``PREFIX_audio`` too, so the audio is stored once and shared.

Text-only documents are written in batches: one tokenizer call per batch, the BOS/EOD framing and the
audio-marker check vectorised over the batch's concatenated ids, one append per batch.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict

import numpy as np

from megatron_inserter.data.frames import SAMPLE_RATE, num_audio_frames
from megatron_inserter.data.indexed.audio_store import AUDIO_DTYPE, AUDIO_SUFFIX
from megatron_inserter.data.indexed.builder import CompactIndexedDatasetBuilder
from megatron_inserter.data.indexed.index_format import bin_path, idx_path, optimal_token_dtype
from megatron_inserter.data.indexed.metadata import MODE_SPEECH, MODE_TEXT
from megatron_inserter.data.indexed.sources import Document, SkipDocument

ASR_SUFFIX = "_asr"
SKIP_EXAMPLES = 5  # document ids kept per skip reason, for the report


def output_prefixes(prefix: str, with_audio: bool) -> dict[str, str]:
    """The dataset prefixes one output consists of, by role."""
    if not with_audio:
        return {"text": prefix}
    return {"text": prefix, "audio": prefix + AUDIO_SUFFIX, "asr": prefix + ASR_SUFFIX}


class DatasetWriter:
    """The builders of one output's datasets by role (``audio``: int16 PCM; every other role: tokens with a
    mode byte per sequence), its counts and its skipped records; partitions, finalizing and the summary.
    A subclass adds the documents and names its roles' prefixes (``partition_prefixes``)."""

    def __init__(self, prefixes: dict[str, str], token_dtype) -> None:
        self.prefixes = prefixes
        self.token_dtype = token_dtype
        self.builders = {
            role: CompactIndexedDatasetBuilder(bin_path(p), dtype=AUDIO_DTYPE if role == "audio" else token_dtype,
                                               multimodal=role != "audio")
            for role, p in prefixes.items()
        }
        self.stats = Counter()
        self.skipped = Counter()
        self.skip_examples: dict[str, list[str]] = defaultdict(list)

    def partition_prefixes(self, prefix: str) -> dict[str, str]:
        """The prefixes, by role, of a partition written by a writer like this one."""
        raise NotImplementedError

    def add_partition(self, prefix: str) -> None:
        """Append a finished partition (same layout) with ``add_index``."""
        for role, p in self.partition_prefixes(prefix).items():
            self.builders[role].add_index(p)

    def finalize(self) -> None:
        for role, p in self.prefixes.items():
            self.builders[role].finalize(idx_path(p))

    def summary(self) -> dict:
        s = dict(self.stats)
        s["speech_hours"] = s.get("speech_samples", 0) / SAMPLE_RATE / 3600.0
        s["skipped"] = dict(self.skipped)
        s["skip_examples"] = {k: list(v) for k, v in self.skip_examples.items()}
        return s


class InterleavedWriter(DatasetWriter):
    def __init__(self, prefix: str, tokenizer, with_audio: bool, add_bos: bool = True) -> None:
        super().__init__(output_prefixes(prefix, with_audio), optimal_token_dtype(tokenizer.vocab_size))
        self.tokenizer = tokenizer
        self.with_audio = with_audio
        self.bos = [tokenizer.bos_id] if add_bos and tokenizer.bos_id is not None else []
        self._markers = np.array(tokenizer.audio_special_ids, dtype=np.int64)

    def skip(self, reason: str, doc_id: str) -> None:
        self.skipped[reason] += 1
        if len(self.skip_examples[reason]) < SKIP_EXAMPLES:
            self.skip_examples[reason].append(doc_id)

    # --- many text documents at once ---------------------------------------------------------------
    def add_many(self, docs: list[Document]) -> int:
        """Add documents in order; returns how many were kept. Text-only documents go through the batch
        path; a document with speech through ``add``."""
        kept, run = 0, []
        for doc in docs:
            if any(seg.is_speech for seg in doc.segments):
                kept += self._add_text_batch(run)
                run = []
                kept += self.add(doc)
            else:
                run.append(doc)
        return kept + self._add_text_batch(run)

    def _add_text_batch(self, docs: list[Document]) -> int:
        if not docs:
            return 0
        texts = ["".join(seg.text for seg in doc.segments) for doc in docs]
        arrays = self._tokenize_batch(texts, docs)
        n = len(docs)
        lengths = np.fromiter((-1 if a is None else len(a) for a in arrays), np.int64, n)
        flat = np.concatenate([a for a in arrays if a is not None and len(a)] or [np.zeros(0, np.int64)])
        keep = lengths > 0
        counts = np.maximum(lengths, 0)
        hit = np.isin(flat, self._markers)
        if hit.any():  # audio markers typed into the text: never trained on as text
            owner = np.repeat(np.arange(n), counts)
            for d in np.unique(owner[hit]):
                keep[d] = False
                self.skip("audio_marker_in_text", docs[d].id)
            flat = flat[np.repeat(keep, counts)]
        for d in np.flatnonzero(lengths == 0):
            self.skip("empty_document", docs[d].id)
        content = counts[keep]
        if not len(content):
            return 0
        nb = len(self.bos)
        per_doc = content + nb + 1
        ends = np.cumsum(per_doc)
        out = np.empty(int(ends[-1]), dtype=self.token_dtype)
        frame = np.zeros(len(out), dtype=bool)
        eod_at = ends - 1
        out[eod_at] = self.tokenizer.eod_id
        frame[eod_at] = True
        if nb:
            bos_at = ends - per_doc
            out[bos_at] = self.bos[0]
            frame[bos_at] = True
        out[~frame] = flat
        self.builders["text"].add_documents(out, per_doc, np.ones(len(per_doc), dtype=np.int64))
        if self.with_audio:  # text-only documents hold no audio, but the audio dataset stays document-aligned
            for _ in range(len(per_doc)):
                self.builders["audio"].end_document()
        self.stats["documents"] += len(per_doc)
        self.stats["sequences"] += len(per_doc)
        self.stats["tokens"] += len(out)
        return len(per_doc)

    def _tokenize_batch(self, texts: list[str], docs: list[Document]) -> list:
        """One array per text; None for a text the tokenizer cannot take (e.g. a lone surrogate)."""
        try:
            return list(self.tokenizer.tokenize_batch(texts))
        except (TypeError, RuntimeError, UnicodeError, ValueError):
            out = []
            for text, doc in zip(texts, docs):
                try:
                    out.append(self.tokenizer.tokenize_batch([text])[0])
                except (TypeError, RuntimeError, UnicodeError, ValueError):
                    self.skip("bad_text", doc.id)
                    out.append(None)
            return out

    # --- one document --------------------------------------------------------------------------------
    def _tokens(self, text: str) -> list[int]:
        try:
            ids = self.tokenizer.tokenize(text)
        except (TypeError, RuntimeError, UnicodeError, ValueError):
            raise SkipDocument("bad_text") from None
        if ids and np.isin(np.asarray(ids, dtype=np.int64), self._markers).any():
            raise SkipDocument("audio_marker_in_text")
        return list(ids)

    def add(self, doc: Document) -> bool:
        """Add one document; returns False (and counts the reason) when it is skipped."""
        try:
            seqs, modes, spans, span_tokens = self._encode(doc)
        except SkipDocument as e:
            self.skip(e.reason, doc.id)
            return False
        tok = self.tokenizer
        lengths = [len(s) for s in seqs]
        self.builders["text"].add_document(np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs]), lengths, modes)
        self.stats["documents"] += 1
        self.stats["sequences"] += len(seqs)
        self.stats["tokens"] += sum(lengths)
        if self.with_audio:
            span_marker = [tok.audio_bos_id, tok.audio_placeholder_id, tok.audio_eos_id]
            nb = len(self.bos)
            for pcm, text_ids in zip(spans, span_tokens):
                self.builders["audio"].add_item(pcm)
                asr_doc = np.asarray(self.bos + span_marker + text_ids + [tok.eod_id], dtype=self.token_dtype)
                self.builders["asr"].add_document(asr_doc, [nb] * bool(nb) + [3, len(text_ids) + 1],
                                                  [MODE_TEXT] * bool(nb) + [MODE_SPEECH, MODE_TEXT])
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
                if num_audio_frames(int(np.size(seg.audio))) == 0:
                    raise SkipDocument("audio_too_short")  # no encoder frame: its transcript would train from nothing
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
        if self.bos:
            if modes[0] == MODE_TEXT:
                seqs[0] = self.bos + seqs[0]
            else:
                seqs.insert(0, list(self.bos))
                modes.insert(0, MODE_TEXT)
        return seqs, modes, spans, span_tokens

    def _add_text(self, text: str, seqs: list, modes: list) -> None:
        ids = self._tokens(text)
        if ids:
            seqs.append(ids)
            modes.append(MODE_TEXT)

    def partition_prefixes(self, prefix: str) -> dict[str, str]:
        return output_prefixes(prefix, self.with_audio)


def dataset_files(prefix: str) -> tuple[str, str]:
    return bin_path(prefix), idx_path(prefix)


def remove_dataset(prefix: str) -> None:
    for path in dataset_files(prefix):
        if os.path.exists(path):
            os.remove(path)
