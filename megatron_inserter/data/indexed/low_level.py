"""One preprocessed dataset on disk: the token ``IndexedDataset``, its audio and its metadata.

Also reads plain Megatron text datasets (no sidecar, no modes): every sequence is text. A document is a
run of sequences delimited by the ``.idx`` document indices. Everything here is memory-mapped; the few
per-document arrays are derived with vectorised numpy.
"""

from __future__ import annotations

import os
import struct

import numpy as np
from megatron.core.datasets.indexed_dataset import DType, IndexedDataset, get_bin_path, get_idx_path

from megatron_inserter.data.frames import FrameSpec, num_audio_frames, split_windows, window_frames
from megatron_inserter.data.indexed.metadata import MODE_SPEECH, read_metadata

_HEADER = b"MMIDIDX\x00\x00"
_HEADER_BYTES = 9 + 8 + 1 + 8 + 8


class CorruptDatasetError(ValueError):
    pass


def check_index_file(prefix: str, multimodal: bool) -> None:
    """Validate ``PREFIX.idx`` (header and size) and ``PREFIX.bin`` (size) before memory-mapping them."""
    idx, bin_ = get_idx_path(prefix), get_bin_path(prefix)
    for path in (idx, bin_):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"dataset file {path!r} does not exist (is {prefix!r} the right prefix?)")
    size = os.path.getsize(idx)
    fix = "it was not written completely; rebuild the dataset (inserter preprocess)"
    with open(idx, "rb") as f:
        head = f.read(_HEADER_BYTES)
    if len(head) < _HEADER_BYTES:
        raise CorruptDatasetError(f"index file {idx!r} is truncated ({size} bytes, header needs {_HEADER_BYTES}): {fix}")
    if head[:9] != _HEADER:
        raise CorruptDatasetError(f"{idx!r} is not a megatron-core index file (bad magic bytes)")
    (code,) = struct.unpack("<B", head[17:18])
    n_seq, n_doc = struct.unpack("<QQ", head[18:34])
    expected = _HEADER_BYTES + n_seq * (4 + 8) + n_doc * 8 + (n_seq if multimodal else 0)
    if size < expected:
        raise CorruptDatasetError(
            f"index file {idx!r} is truncated ({size} bytes; its header promises {n_seq} sequences and "
            f"{n_doc - 1} documents, {expected} bytes): {fix}"
        )
    if n_seq:
        with open(idx, "rb") as f:
            f.seek(_HEADER_BYTES + (n_seq - 1) * 4)
            (last_len,) = struct.unpack("<i", f.read(4))
            f.seek(_HEADER_BYTES + n_seq * 4 + (n_seq - 1) * 8)
            (last_ptr,) = struct.unpack("<q", f.read(8))
        need = last_ptr + last_len * DType.size(code)
        if os.path.getsize(bin_) < need:
            raise CorruptDatasetError(
                f"data file {bin_!r} is truncated ({os.path.getsize(bin_)} bytes, index needs {need}): {fix}"
            )


class InterleavedLowLevelDataset:
    """Token dataset + optional audio dataset of one prefix."""

    def __init__(self, path_prefix: str, tokenizer=None, mmap: bool = True) -> None:
        self.path_prefix = path_prefix
        self.mmap = mmap
        self.metadata = read_metadata(path_prefix)
        if self.metadata is not None and tokenizer is not None:
            self.metadata.check_tokenizer(tokenizer, path_prefix)
        multimodal = self.metadata is not None
        check_index_file(path_prefix, multimodal)
        self.text = IndexedDataset(path_prefix, multimodal=multimodal, mmap=mmap)
        self.audio = None
        if self.metadata is not None and self.metadata.audio_prefix:
            audio_prefix = os.path.join(os.path.dirname(path_prefix), self.metadata.audio_prefix)
            check_index_file(audio_prefix, False)
            self.audio = IndexedDataset(audio_prefix, multimodal=False, mmap=mmap)
        ids = self.metadata.tokenizer if self.metadata is not None else tokenizer
        if ids is None:
            raise ValueError(f"dataset {path_prefix!r} has no metadata sidecar: a tokenizer is needed for its ids")
        self.eod_id, self.pad_id = ids.eod_id, ids.pad_id
        self.audio_bos_id, self.audio_eos_id = ids.audio_bos_id, ids.audio_eos_id
        self.audio_placeholder_id = ids.audio_placeholder_id
        self._derive()

    def _derive(self) -> None:
        self.document_indices = np.asarray(self.text.document_indices, dtype=np.int64)
        self.sequence_lengths = self.text.sequence_lengths
        modes = self.text.index.sequence_modes
        self.is_speech = None if modes is None else modes == MODE_SPEECH
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
        """Tokens [start, stop) of ``doc`` after expansion, a per-token "is text" mask and the audio clips
        (int16 windows) of every span whose placeholders fall inside."""
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
