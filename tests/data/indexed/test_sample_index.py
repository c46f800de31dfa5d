import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from megatron_inserter.data.indexed.sample_index import build_indices, cut_samples, to_sample_index


@st.composite
def layouts(draw):
    """Random documents with sorted, disjoint speech spans (each at most seq_length long)."""
    seq = draw(st.integers(4, 40))
    n_docs = draw(st.integers(1, 12))
    doc_len, ptr, ps, qs = [], [0], [], []
    for _ in range(n_docs):
        pos, n = 0, draw(st.integers(0, 4))
        for _ in range(n):
            pos += draw(st.integers(0, 2 * seq))
            length = draw(st.integers(2, seq))
            ps.append(pos)
            qs.append(pos + length - 1)
            pos += length
        pos += draw(st.integers(0 if n else 1, 3 * seq))
        doc_len.append(pos)
        ptr.append(len(ps))
    seed = draw(st.integers(0, 2**16))
    return seq, np.array(doc_len), np.array(ptr), np.array(ps, dtype=np.int64), np.array(qs, dtype=np.int64), seed


def _global_spans(document_index, doc_len, ptr, ps, qs):
    out, start = [], 0
    for d in document_index:
        out += [(start + ps[j], start + qs[j]) for j in range(ptr[d], ptr[d + 1])]
        start += doc_len[d]
    return out, start


@settings(max_examples=120, deadline=None)
@given(layouts(), st.booleans())
def test_cuts_never_split_a_span_and_are_as_long_as_allowed(layout, drop_last):
    seq, doc_len, ptr, ps, qs, seed = layout
    document_index = np.random.RandomState(seed).permutation(len(doc_len))
    starts, doc_starts = cut_samples(document_index, doc_len, ptr, ps, qs, seq, drop_last)
    spans, total = _global_spans(document_index, doc_len, ptr, ps, qs)
    assert starts[0] == 0 and np.all(np.diff(starts) > 0) and np.all(np.diff(starts) <= seq)
    for b in starts[1:]:
        assert not any(p < b <= q for p, q in spans), "a sample boundary inside a speech span"
    for i, (a, b) in enumerate(itertools.pairwise(starts)):
        natural = a + seq
        if not drop_last and i == len(starts) - 2 and a + seq > total - 1:
            natural = total - 1  # the final partial sample
        if b < natural:  # shortened: only to keep the next span whole
            assert any(p == b and p < natural <= q for p, q in spans)
    last = int(starts[-1])
    assert last + seq > total - 1 if drop_last else last >= total - 1 or any(p < total - 1 <= q for p, q in spans)
    rows = to_sample_index(starts, doc_starts)
    assert np.array_equal(doc_starts[rows[:, 0]] + rows[:, 1], starts)
    assert np.all(rows[:, 1] < doc_len[document_index[rows[:, 0]]])


def test_indices_are_deterministic_cover_the_request_and_shuffle_within_epochs():
    rng = np.random.RandomState(0)
    doc_len = rng.randint(5, 60, size=50)
    ptr = np.zeros(51, dtype=np.int64)
    empty = np.zeros(0, dtype=np.int64)
    docs = np.arange(50)
    a = build_indices(docs, doc_len, ptr, empty, empty, 16, num_samples=400, seed=7)
    b = build_indices(docs, doc_len, ptr, empty, empty, 16, num_samples=400, seed=7)
    c = build_indices(docs, doc_len, ptr, empty, empty, 16, num_samples=400, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[2], c[2])
    document_index, sample_index, shuffle_index = a
    per_epoch = doc_len.sum() // 16
    assert len(shuffle_index) >= 400 and len(document_index) % 50 == 0 and len(document_index) // 50 >= 400 / per_epoch
    for e in range(len(document_index) // 50):  # every epoch is a permutation of all documents
        assert sorted(document_index[e * 50:(e + 1) * 50]) == list(range(50))
    epoch_of_sample = sample_index[shuffle_index, 0] // 50
    assert np.all(np.diff(epoch_of_sample) >= 0), "samples of a later epoch came before an earlier epoch ended"
    assert sorted(shuffle_index) == list(range(len(shuffle_index)))
