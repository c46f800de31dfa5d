import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from megatron_inserter.data.frames import FrameSpec, num_audio_frames
from megatron_inserter.data.indexed import build_datasets, collate_batch, dataset_config
from megatron_inserter.data.indexed.preprocess import write_dataset
from megatron_inserter.data.indexed.sources import Document, Segment
from tests.data.indexed.expected import expanded_stream


def _train(prefix, tok, cache, seq=128, seed=1234, spec=None, split="1,0,0"):
    cfg = dataset_config([prefix], split, seq_length=seq, seed=seed, tokenizer=tok, frame_spec=spec,
                         path_to_cache=cache)
    return build_datasets(cfg)[0]


def _in_order(ds):
    """Samples in stream order (the inverse of the shuffle)."""
    return [ds[int(i)] for i in np.argsort(np.asarray(ds.shuffle_index))]


def _real(sample):
    """The sample's real (non-padding) tokens: seq_length + 1 - num_padding of them."""
    n = len(sample["tokens"]) - sample["num_padding"]
    assert torch.equal(sample["tokens"][1:n], sample["labels"][: n - 1])
    return sample["tokens"][:1].tolist() + sample["labels"][:n].tolist()


def test_samples_rebuild_the_documents_exactly_tokens_and_audio(tiny_dataset, tiny_docs, tiny_tokenizer, cache_dir):
    tok = tiny_tokenizer
    ds = _train(tiny_dataset, tok, cache_dir)
    samples = _in_order(ds)
    stream, clips = _real(samples[0]), list(samples[0]["audio"])
    for s in samples[1:]:
        stream += _real(s)[1:]  # consecutive samples share one token
        clips += s["audio"]
    exp_tokens, exp_clips = [], []
    for d in ds.document_index:
        t, c = expanded_stream(tiny_docs[int(d)], tok)
        exp_tokens += t
        exp_clips += c
    assert len(stream) > 0.9 * len(exp_tokens)
    assert stream == exp_tokens[: len(stream)]
    assert len(clips) > 0 and all(np.array_equal(a, b) and a.dtype == np.int16 for a, b in zip(clips, exp_clips))
    assert sum(s["num_padding"] for s in samples) == sum(129 - len(_real(s)) for s in samples)


def test_loss_mask_is_zero_on_audio_and_padding_targets_and_one_after_speech(tiny_dataset, tiny_tokenizer, cache_dir):
    tok = tiny_tokenizer
    ds = _train(tiny_dataset, tok, cache_dir, seq=96)
    after_speech = 0
    for i in range(len(ds)):
        s = ds[i]
        labels, mask, tokens = s["labels"], s["loss_mask"], s["tokens"]
        real_targets = 96 - s["num_padding"]
        audio = torch.isin(labels, torch.tensor([tok.audio_bos_id, tok.audio_eos_id, tok.audio_placeholder_id]))
        expected = (~audio) & (torch.arange(96) < real_targets)
        assert torch.equal(mask.bool(), expected)
        # the first text token after a span is predicted at the <|audio_eos|> position, with loss
        after_speech += int(((tokens == tok.audio_eos_id) & ~audio & (mask == 1)).sum())
        assert mask.dtype == torch.float32 and torch.equal(s["position_ids"], torch.arange(96))
    assert after_speech > 10


def test_same_seed_same_samples_other_seed_other_order(tiny_dataset, tiny_tokenizer, tmp_path):
    a = _train(tiny_dataset, tiny_tokenizer, str(tmp_path / "a"))
    b = _train(tiny_dataset, tiny_tokenizer, str(tmp_path / "b"))
    c = _train(tiny_dataset, tiny_tokenizer, str(tmp_path / "c"), seed=99)
    assert len(a) == len(b)
    for i in range(len(a)):
        assert torch.equal(a[i]["tokens"], b[i]["tokens"])
    assert any(not torch.equal(a[i]["tokens"], c[i]["tokens"]) for i in range(min(len(a), len(c))))


def test_documents_with_a_span_longer_than_a_sample_are_left_out(tiny_dataset, tiny_tokenizer, cache_dir):
    ds = _train(tiny_dataset, tiny_tokenizer, cache_dir, seq=40)
    assert ds.num_dropped_documents > 0 and len(ds) > 0
    for i in range(len(ds)):
        s = ds[i]
        frames = sum(num_audio_frames(len(c)) for c in s["audio"])
        assert int((s["tokens"] == tiny_tokenizer.audio_placeholder_id).sum()) == frames


SPEC = FrameSpec(max_window_seconds=0.25)  # 4000-sample windows keep long-span cases small


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(SPEC.min_samples, 20_000), min_size=1, max_size=8), st.integers(0, 2**16))
def test_placeholder_runs_equal_the_frame_function(tmp_path_factory, tiny_tokenizer, lengths, seed):
    tok = tiny_tokenizer
    root = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(seed)
    pcms = [rng.integers(-3000, 3000, n).astype(np.int16) for n in lengths]
    docs = [Document(f"d{i}", [Segment("the fox "), Segment("speech", pcm), Segment(" listens")])
            for i, pcm in enumerate(pcms)]
    write_dataset(str(root / "d"), docs, tok)
    seq = 2 + max(num_audio_frames(n, SPEC) for n in lengths) + 16
    ds = _train(str(root / "d"), tok, str(root / "cache"), seq=seq, spec=SPEC)
    seen = []
    for i in range(len(ds)):
        s = ds[i]
        tokens, clips = s["tokens"].tolist(), list(s["audio"])
        t = 0
        while t < len(tokens):
            if tokens[t] != tok.audio_bos_id:
                t += 1
                continue
            end = tokens.index(tok.audio_eos_id, t)
            run = end - t - 1
            assert tokens[t + 1:end] == [tok.audio_placeholder_id] * run
            got, span_clips = 0, []
            while got < run:
                clip = clips.pop(0)
                assert 0 < len(clip) <= SPEC.max_window_samples and num_audio_frames(len(clip), SPEC) > 0
                got += num_audio_frames(len(clip), SPEC)
                span_clips.append(clip)
            assert got == run
            seen.append((run, np.concatenate(span_clips) if span_clips else np.zeros(0, np.int16)))
            t = end + 1
        assert clips == []
        batch = collate_batch([s])
        n_ph = int((batch["tokens"] == tok.audio_placeholder_id).sum())
        assert n_ph == sum(num_audio_frames(int(n), SPEC) for n in batch["audio_lengths"])
    for run, audio in seen:  # each span: frames of the whole span, audio = the span minus dropped windows
        match = [j for j, n in enumerate(lengths) if num_audio_frames(n, SPEC) == run
                 and np.array_equal(pcms[j][: len(audio)], audio)]
        assert match


def test_collate_produces_the_batch_contract(tiny_dataset, tiny_tokenizer, cache_dir):
    ds = _train(tiny_dataset, tiny_tokenizer, cache_dir)
    samples = [ds[i] for i in range(4)]
    b = collate_batch(samples)
    assert b["tokens"].dtype == b["labels"].dtype == b["position_ids"].dtype == torch.int64
    assert b["loss_mask"].dtype == b["audio"].dtype == torch.float32 and b["tokens"].shape == (4, 128)
    clips = [c for s in samples for c in s["audio"]]
    assert b["audio"].shape == (len(clips), max(len(c) for c in clips))
    for row, c, n in zip(b["audio"], clips, b["audio_lengths"]):
        assert int(n) == len(c)
        assert torch.equal(row[:n], torch.from_numpy(c.astype(np.float32) / 32768))
        assert not row[n:].any()
    text_only = {k: v for k, v in samples[0].items()}
    text_only["audio"] = []
    empty = collate_batch([text_only])
    assert empty["audio"].shape == (0, 0) and empty["audio_lengths"].shape == (0,)


def test_dataset_pickles_for_spawned_loader_workers(tiny_dataset, tiny_tokenizer, cache_dir):
    import pickle

    ds = _train(tiny_dataset, tiny_tokenizer, cache_dir)
    back = pickle.loads(pickle.dumps(ds))
    for i in (0, len(ds) - 1):
        a, b = ds[i], back[i]
        assert torch.equal(a["tokens"], b["tokens"]) and len(a["audio"]) == len(b["audio"])
        assert all(np.array_equal(x, y) for x, y in zip(a["audio"], b["audio"]))
