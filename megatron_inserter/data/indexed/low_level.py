"""One preprocessed dataset on disk: the token ``IndexedDataset``, its audio and its metadata.

Also reads plain Megatron text datasets (no sidecar, no modes): every sequence is text. A document is a
run of sequences delimited by the ``.idx`` document indices. Everything here is memory-mapped; the few
per-document arrays are derived with vectorised numpy.

Opening a dataset checks it before anything trains on it:
  * the sidecar's tokenizer against the one given (``TokenizerMismatchError``);
  * the files against the sidecar: sizes and content fingerprints of ``.bin``/``.idx`` (``binding``), the
    token dtype, and an ``.idx`` with speech modes but no sidecar (an interleaved dataset whose
    ``.meta.json`` went missing would otherwise read as text, all speech dropped);
  * every token id below the vocabulary size, and for a dataset without a sidecar every document ending
    with the tokenizer's end-of-document token (``token_check``, cached by file size and time).
"""

from __future__ import annotations

import os

import numpy as np
from megatron.core.datasets.indexed_dataset import IndexedDataset, get_bin_path, get_idx_path

from megatron_inserter.data.frames import FrameSpec, num_audio_frames, split_windows, window_frames
from megatron_inserter.data.indexed.binding import check_fingerprints
from megatron_inserter.data.indexed.index_format import CorruptDatasetError, read_header, read_index
from megatron_inserter.data.indexed.metadata import MODE_CONTEXT, MODE_SPEECH, meta_path, read_metadata
from megatron_inserter.data.indexed.token_check import check_document_ends, check_token_ids, default_cache_dir
from megatron_inserter.errors import DataError

__all__ = ["CorruptDatasetError", "InterleavedLowLevelDataset", "check_index_file"]

_FIX = "it was not written completely; rebuild the dataset (inserter preprocess)"


class MissingSidecarError(DataError):
    pass


def check_index_file(prefix: str, multimodal: bool):
    """Validate ``PREFIX.idx`` (header and exact size) and ``PREFIX.bin`` (size) before memory-mapping them;
    returns the ``.idx`` header."""
    idx, bin_ = get_idx_path(prefix), get_bin_path(prefix)
    for path in (idx, bin_):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"dataset file {path!r} does not exist (is {prefix!r} the right prefix?)")
    header = read_header(idx)
    expected = header.expected_size(multimodal)
    n_seq, n_doc = header.num_sequences, header.num_document_indices
    if multimodal and n_seq and header.size == header.expected_size(False):
        raise CorruptDatasetError(
            f"index file {idx!r} has no speech modes, but {meta_path(prefix)!r} describes a dataset with them: a "
            f"text-only .idx was put in its place; keep the files of one `inserter preprocess` run together")
    if not multimodal and header.has_modes:
        raise MissingSidecarError(
            f"{idx!r} marks speech spans (one mode byte per sequence) but its sidecar {meta_path(prefix)!r} is "
            f"missing: read as text, all its speech would be dropped. Restore the .meta.json written with it, or "
            f"re-run `inserter preprocess`")
    if header.size < expected:
        raise CorruptDatasetError(
            f"index file {idx!r} is truncated ({header.size} bytes; its header promises {n_seq} sequences and "
            f"{n_doc - 1} documents, {expected} bytes): {_FIX}"
        )
    if header.size > expected:
        raise CorruptDatasetError(f"index file {idx!r} has {header.size - expected} bytes more than its header "
                                  f"promises: it is damaged; rebuild the dataset (inserter preprocess)")
    if n_seq:
        index = read_index(idx, multimodal)
        need = int(index.sequence_pointers[-1]) + int(index.sequence_lengths[-1]) * header.dtype.itemsize
        size = os.path.getsize(bin_)
        if size < need:
            raise CorruptDatasetError(f"data file {bin_!r} is truncated ({size} bytes, index needs {need}): {_FIX}")
        if size > need:
            raise CorruptDatasetError(f"data file {bin_!r} has {size - need} bytes more than its index {idx!r} "
                                      f"describes: the two come from different runs; rebuild the dataset")
    return header


class InterleavedLowLevelDataset:
    """Token dataset + optional audio dataset of one prefix."""

    def __init__(self, path_prefix: str, tokenizer=None, mmap: bool = True, cache_dir: str | None = None,
                 check_tokens: bool = True) -> None:
        self.path_prefix = path_prefix
        self.mmap = mmap
        self.metadata = read_metadata(path_prefix)
        if self.metadata is not None and tokenizer is not None:
            self.metadata.check_tokenizer(tokenizer, path_prefix)
        multimodal = self.metadata is not None
        audio_prefix = None
        if self.metadata is not None and self.metadata.audio_prefix:
            audio_prefix = os.path.join(os.path.dirname(path_prefix), self.metadata.audio_prefix)
        if check_index_file(path_prefix, multimodal).num_sequences == 0:
            raise DataError(f"dataset {path_prefix!r} holds no documents, so there is nothing to train on (were all "
                            f"input documents skipped? {path_prefix + '.stats.json'!r} counts the reasons)")
        if audio_prefix is not None and check_index_file(audio_prefix, False).num_sequences == 0:
            audio_prefix = None  # no speech span at all: an empty file cannot be memory-mapped
        if self.metadata is not None:  # structure first (clearer messages), then the recorded fingerprints
            check_fingerprints(os.path.dirname(path_prefix), self.metadata.files, meta_path(path_prefix))
        ids = self.metadata.tokenizer if self.metadata is not None else tokenizer
        if ids is None:
            raise DataError(f"dataset {path_prefix!r} has no metadata sidecar: a tokenizer is needed for its ids")
        if check_tokens:
            self._check_tokens(tokenizer, cache_dir or default_cache_dir(path_prefix))
        self.text = IndexedDataset(path_prefix, multimodal=multimodal, mmap=mmap)
        self.audio = None
        if audio_prefix is not None:
            self.audio = IndexedDataset(audio_prefix, multimodal=False, mmap=mmap)
        self.eod_id, self.pad_id = ids.eod_id, ids.pad_id
        self.audio_bos_id, self.audio_eos_id = ids.audio_bos_id, ids.audio_eos_id
        self.audio_placeholder_id = ids.audio_placeholder_id
        self._derive()

    def _check_tokens(self, tokenizer, cache_dir: str) -> None:
        """Token dtype, id range and (without a sidecar) document ends, against the tokenizer."""
        index = read_index(get_idx_path(self.path_prefix), self.metadata is not None)
        meta = self.metadata
        if meta is not None and meta.token_dtype and index.header.dtype.name != meta.token_dtype:
            raise CorruptDatasetError(
                f"{get_idx_path(self.path_prefix)!r} stores {index.header.dtype.name} tokens but "
                f"{meta_path(self.path_prefix)!r} was written for {meta.token_dtype}: the files come from different "
                f"runs; keep the files of one `inserter preprocess` run together")
        info = tokenizer if tokenizer is not None else meta.tokenizer
        describe = f"the tokenizer {info.tokenizer_type} {str(info.tokenizer_model)!r}"
        check_token_ids(self.path_prefix, index, info.vocab_size, describe, cache_dir)
        if meta is None:
            check_document_ends(self.path_prefix, index, info.eod_id, describe, cache_dir)

    def _derive(self) -> None:
        self.document_indices = np.asarray(self.text.document_indices, dtype=np.int64)
        self.sequence_lengths = self.text.sequence_lengths
        modes = self.text.index.sequence_modes
        self.is_speech = None if modes is None else modes == MODE_SPEECH
        # Text that is read but never a target (a conversation's context); None when there is none.
        self.is_context = None if modes is None or not (modes == MODE_CONTEXT).any() else modes == MODE_CONTEXT
        n_spans = 0 if self.is_speech is None else int(self.is_speech.sum())
        if self.is_speech is not None and n_spans:
            cs = np.concatenate([[0], np.cumsum(self.is_speech, dtype=np.int64)])
            self.doc_span_start = cs[self.document_indices]
            if not np.all(self.sequence_lengths[self.is_speech] == 3):
                raise CorruptDatasetError(f"{self.path_prefix!r}: speech sequences must hold 3 tokens (bos, placeholder, eos)")
        else:
            self.doc_span_start = np.zeros(len(self.document_indices), dtype=np.int64)
        n_audio = 0 if self.audio is None else len(self.audio)
        if n_spans != n_audio:
            raise CorruptDatasetError(
                f"{self.path_prefix!r} has {n_spans} speech spans but its audio dataset has {n_audio} sequences; "
                f"the two were not written together: rebuild with inserter preprocess"
            )
        self._frames_cache: dict[FrameSpec, np.ndarray] = {}

    def __getstate__(self):
        return {"path_prefix": self.path_prefix, "mmap": self.mmap, "metadata": self.metadata,
                "text": self.text, "audio": self.audio,
                "ids": (self.eod_id, self.pad_id, self.audio_bos_id, self.audio_eos_id, self.audio_placeholder_id)}

    def __setstate__(self, state):
        self.path_prefix, self.mmap, self.metadata = state["path_prefix"], state["mmap"], state["metadata"]
        self.text, self.audio = state["text"], state["audio"]
        (self.eod_id, self.pad_id, self.audio_bos_id, self.audio_eos_id, self.audio_placeholder_id) = state["ids"]
        self._derive()

    @property
    def num_documents(self) -> int:
        return len(self.document_indices) - 1

    @property
    def whole_documents(self) -> bool:
        """Whether a document must lie inside one sample (a conversation: no turn split across samples)."""
        return self.metadata is not None and self.metadata.kind == "conversation"

    @property
    def num_spans(self) -> int:
        return 0 if self.audio is None else len(self.audio)

    def fingerprint(self) -> list:
        """Sizes and modification times of the files: a rebuilt dataset gets fresh sample caches."""
        out = []
        for ds in (self.text, self.audio):
            if ds is not None:
                for p in (get_idx_path(ds.path_prefix), get_bin_path(ds.path_prefix)):
                    st = os.stat(p)
                    out.append([os.path.basename(p), st.st_size, int(st.st_mtime)])
        return out

    def span_frames(self, spec: FrameSpec) -> np.ndarray:
        """Placeholder count of every speech span (``frames.num_audio_frames`` of its sample count)."""
        if spec not in self._frames_cache:
            if self.num_spans == 0:
                frames = np.zeros(0, dtype=np.int64)
            else:
                lengths = np.asarray(self.audio.sequence_lengths, dtype=np.int64)
                unique, inverse = np.unique(lengths, return_inverse=True)
                table = np.fromiter((num_audio_frames(int(n), spec) for n in unique), np.int64, len(unique))
                frames = table[inverse]
            self._frames_cache[spec] = frames
        return self._frames_cache[spec]

    def expanded_sequence_lengths(self, spec: FrameSpec) -> np.ndarray:
        """Length of every sequence after placeholder expansion (a span: bos + frames + eos)."""
        lengths = self.sequence_lengths.astype(np.int64)
        if self.num_spans:
            lengths[self.is_speech] = 2 + self.span_frames(spec)
        return lengths

    def document_layout(self, spec: FrameSpec):
        """(expanded length per document, span pointer per document, span first/last position in its document)."""
        lengths = self.expanded_sequence_lengths(spec)
        cs = np.concatenate([[0], np.cumsum(lengths)])
        doc_len = cs[self.document_indices[1:]] - cs[self.document_indices[:-1]]
        if not self.num_spans:
            empty = np.zeros(0, dtype=np.int64)
            return doc_len, np.zeros(self.num_documents + 1, dtype=np.int64), empty, empty
        seq = np.flatnonzero(self.is_speech)
        doc_of_span = np.searchsorted(self.document_indices, seq, side="right") - 1
        p = cs[seq] - cs[self.document_indices[doc_of_span]]
        q = p + lengths[seq] - 1
        return doc_len, self.doc_span_start.copy(), p, q

    def read_expanded(self, doc: int, start: int, stop: int, spec: FrameSpec):
        """Tokens [start, stop) of ``doc`` after expansion, a per-token "is a text target" mask (text, not
        context) and the audio clips (int16 windows) of every span whose placeholders fall inside."""
        s0, s1 = int(self.document_indices[doc]), int(self.document_indices[doc + 1])
        lengths = self.sequence_lengths[s0:s1].astype(np.int64)
        speech = None
        if self.num_spans:
            speech = self.is_speech[s0:s1]
            k0, k1 = int(self.doc_span_start[doc]), int(self.doc_span_start[doc + 1])
            if k1 > k0:
                lengths[speech] = 2 + self.span_frames(spec)[k0:k1]
        ends = np.cumsum(lengths)
        first = int(np.searchsorted(ends, start, side="right"))
        tokens, text_mask, clips = [], [], []
        markers = (self.audio_bos_id, self.audio_eos_id, self.audio_placeholder_id)
        for i in range(first, s1 - s0):
            off = int(ends[i] - lengths[i])
            if off >= stop:
                break
            lo, hi = max(start, off) - off, min(stop, int(ends[i])) - off
            if speech is not None and speech[i]:
                span = int(self.doc_span_start[doc] + np.count_nonzero(speech[:i]))
                frames = int(lengths[i]) - 2
                seg = np.full(frames + 2, self.audio_placeholder_id, dtype=np.int64)
                seg[0], seg[-1] = self.audio_bos_id, self.audio_eos_id
                tokens.append(seg[lo:hi])
                text_mask.append(np.zeros(hi - lo, dtype=bool))
                if frames and hi > 1:
                    if lo != 0 or hi != frames + 2:
                        raise RuntimeError(f"sample cut inside speech span {span} of {self.path_prefix!r}")
                    clips.extend(self.span_clips(span, spec))
            else:
                seg = self.text.get(s0 + i, offset=lo, length=hi - lo)
                seg = np.asarray(seg[0] if isinstance(seg, tuple) else seg, dtype=np.int64)
                is_text = ~np.isin(seg, markers)
                if not is_text.all():  # a stray audio marker in text: neutralised, never trained on
                    seg = np.where(is_text, seg, self.pad_id)
                if self.is_context is not None and self.is_context[s0 + i]:
                    is_text = np.zeros(len(seg), dtype=bool)
                tokens.append(seg)
                text_mask.append(is_text)
        return tokens, text_mask, clips

    def span_clips(self, span: int, spec: FrameSpec) -> list[np.ndarray]:
        """The encoder windows of one span (0-frame windows dropped), as int16 arrays."""
        pcm = np.array(self.audio.get(span), dtype=np.int16)  # one read from the memory map
        clips, a = [], 0
        for n, f in zip(split_windows(len(pcm), spec), window_frames(len(pcm), spec)):
            if f > 0:
                clips.append(pcm[a:a + n])
            a += n
        return clips
