"""Document, sample and shuffle indices for packing documents into fixed-length samples.

As in megatron-core's GPTDataset, documents are shuffled (here: a fresh permutation per epoch),
concatenated, and cut into samples of ``seq_length + 1`` tokens where consecutive samples share one
token (the last target of a sample is the first input of the next). The difference: a cut never
falls inside a speech span. When the natural cut lands in a span, the sample ends just before the
span (its ``<|audio_bos|>`` becomes the sample's last target) and the rest of the sample is padding;
the next sample starts at the span.

Positions are in the expanded token stream (each span ``2 + frames`` long). The sample index has GPT's
shape: row i = (position in the document index, offset in that document) of sample i's first token;
sample i ends (inclusive) where sample i + 1 starts.
"""

from __future__ import annotations

import numpy as np


def build_document_index(documents: np.ndarray, num_epochs: int, rng: np.random.RandomState) -> np.ndarray:
    """Concatenation of one random permutation of ``documents`` per epoch."""
    parts = [rng.permutation(np.asarray(documents, dtype=np.int64)) for _ in range(num_epochs)]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


def cut_samples(
    document_index: np.ndarray,
    doc_len: np.ndarray,
    span_ptr: np.ndarray,
    span_p: np.ndarray,
    span_q: np.ndarray,
    seq_length: int,
    drop_last_partial: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Sample start positions (global, int64, one extra row for the end) and the document start positions.

    ``doc_len[d]`` is document d's expanded length; its spans are ``span_p/q[span_ptr[d]:span_ptr[d + 1]]``
    (first/last position within the document, sorted). Every span must fit in ``seq_length`` tokens.
    One Python step per sample, two binary searches each: O(samples log documents).
    """
    lengths = doc_len[document_index]
    doc_starts = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
    total = int(doc_starts[-1])

    def legal(b: int) -> int:
        k = int(np.searchsorted(doc_starts, b, side="right")) - 1
        d = int(document_index[k])
        lo, hi = int(span_ptr[d]), int(span_ptr[d + 1])
        if hi == lo:
            return b
        o = b - int(doc_starts[k])
        j = lo + int(np.searchsorted(span_q[lo:hi], o, side="left"))  # first span ending at or after o
        if j < hi and span_p[j] < o:  # o inside (p, q]: end the sample just before the span
            return int(doc_starts[k]) + int(span_p[j])
        return b

    starts = [0]
    a = 0
    while a + seq_length <= total - 1:
        b = legal(a + seq_length)
        if b <= a:
            raise ValueError(f"a speech span longer than the sequence length ({seq_length}) at position {a}")
        starts.append(b)
        a = b
    if not drop_last_partial and a < total - 1:
        b = legal(total - 1)
        if b > a:
            starts.append(b)
    return np.asarray(starts, dtype=np.int64), doc_starts


def to_sample_index(starts: np.ndarray, doc_starts: np.ndarray) -> np.ndarray:
    """Global positions -> GPT-style rows (position in the document index, offset in the document)."""
    if len(doc_starts) < 2:
        return np.zeros((len(starts), 2), dtype=np.int64)
    k = np.searchsorted(doc_starts, starts, side="right") - 1
    k = np.minimum(k, len(doc_starts) - 2)
    return np.stack([k, starts - doc_starts[k]], axis=1).astype(np.int64)


def build_shuffle_index(starts: np.ndarray, doc_starts: np.ndarray, docs_per_epoch: int,
                        rng: np.random.RandomState) -> np.ndarray:
    """Samples shuffled within their epoch (the epoch of the document they start in), epochs in order."""
    num_samples = len(starts) - 1
    if num_samples <= 0:
        return np.zeros(0, dtype=np.int64)
    epoch_starts = doc_starts[::docs_per_epoch] if docs_per_epoch else doc_starts[:1]
    epoch = np.searchsorted(epoch_starts, starts[:-1], side="right") - 1
    order = np.argsort(epoch, kind="stable")
    bounds = np.searchsorted(epoch[order], np.arange(epoch.max() + 2))
    parts = [rng.permutation(order[bounds[e]:bounds[e + 1]]) for e in range(len(bounds) - 1)]
    return np.concatenate(parts).astype(np.int64)


def build_indices(
    documents: np.ndarray,
    doc_len: np.ndarray,
    span_ptr: np.ndarray,
    span_p: np.ndarray,
    span_q: np.ndarray,
    seq_length: int,
    num_samples: int | None,
    seed: int,
    drop_last_partial: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(document index, sample index, shuffle index) with at least ``num_samples`` samples (one epoch when
    None). Epochs are added until the request is met; padding makes an epoch hold fewer samples than
    tokens / seq_length, so the first estimate may take one more round."""
    tokens_per_epoch = int(doc_len[documents].sum()) if len(documents) else 0
    if num_samples is None or num_samples == 0:
        num_epochs = 1
    elif tokens_per_epoch <= 1:
        raise ValueError("no tokens to draw samples from (the split holds no documents)")
    else:
        num_epochs = max(1, -(-(num_samples * seq_length + 1) // tokens_per_epoch))
    while True:
        document_index = build_document_index(documents, num_epochs, np.random.RandomState(seed))
        starts, doc_starts = cut_samples(document_index, doc_len, span_ptr, span_p, span_q, seq_length,
                                         drop_last_partial)
        if num_samples is None or len(starts) - 1 >= num_samples:
            break
        num_epochs += 1
    sample_index = to_sample_index(starts, doc_starts)
    shuffle_index = build_shuffle_index(starts, doc_starts, len(documents),
                                        np.random.RandomState((seed + 1) % 2**32))
    return document_index, sample_index, shuffle_index
