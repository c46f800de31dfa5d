"""One document from a jsonl line to the training loss, through the real commands and modules.

Read top to bottom: each step is one stage of README.md "How a document becomes a loss", and asserts what
the next stage relies on. The document is short English prose; espeak-ng reads about 30% of its words.
"""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
import soundfile as sf
import torch

from megatron_inserter.cli import main as inserter
from megatron_inserter.data.document import from_members, split_member_name
from megatron_inserter.data.frames import num_audio_frames

TEXT = ("Speech models learn to listen when parts of a long text are read aloud. The listener hears a span of "
        "words and must continue the story in writing, exactly where the voice stopped. Nothing in the training "
        "signal asks the model to repeat the audio; it only has to predict the text that follows.")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("journey")
    (root / "corpus.jsonl").write_text(json.dumps({"id": "journey-1", "text": TEXT}) + "\n")
    return root


# 1. jsonl -> shard: ``inserter synth`` picks spans, speaks them with espeak-ng and writes a webdataset tar.
@pytest.fixture(scope="module")
def shard(work):
    assert inserter(["synth", "--input", str(work / "corpus.jsonl"), "--output-dir", str(work / "shards"),
                     "--tts", "espeak", "--espeak-engine", "library", "--workers", "1", "--no-progress"]) == 0
    [path] = (work / "shards").glob("*.tar")
    with tarfile.open(path) as tar:  # one document = the members of one key, read by data/document.py
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    assert len({split_member_name(name)[0] for name in members}) == 1
    doc, audio = from_members(members, str(path))
    pcm = {name: sf.read(io.BytesIO(data), dtype="int16")[0] for name, data in audio.items()}
    return doc, pcm


def test_1_synth_replaces_spans_in_place_by_their_speech(shard):
    doc, pcm = shard
    assert doc.id == "journey-1" and doc.text == TEXT  # the segments concatenate to the document
    assert len(doc.speech) >= 1 and len(doc.speech) < len(doc.segments)
    offset = 0
    for seg in doc.segments:
        assert TEXT[offset:offset + len(seg.text)] == seg.text  # a span's transcript is the text it replaces
        offset += len(seg.text)
        if seg.is_speech:
            assert len(seg.text.split()) >= 5 and seg.sample_rate == 16_000 and seg.tts == "espeak"
            assert len(pcm[seg.audio]) == seg.num_samples and np.abs(pcm[seg.audio]).max() > 1000


# 2. shard -> indexed dataset: ``inserter preprocess`` tokenizes text, stores each span as three markers
#    ``<|audio_bos|> <|AUDIO|> <|audio_eos|>`` and its PCM alongside. The tokenizer here has a BOS (``<s>``).
@pytest.fixture(scope="module")
def indexed(work, shard):
    from megatron_inserter.data.tokenizers import build_tokenizer

    tok_path, prefix = str(work / "tok.model"), str(work / "indexed" / "doc")
    assert inserter(["train-tokenizer", "--input", str(work / "corpus.jsonl"), "--vocab-size", "300",
                     "--output", tok_path]) == 0
    assert inserter(["preprocess", "--input", str(work / "shards"), "--output-prefix", prefix,
                     "--tokenizer-type", "sentencepiece", "--tokenizer-model", tok_path, "--no-progress"]) == 0
    return prefix, build_tokenizer("sentencepiece", tok_path)


def test_2_preprocess_keeps_each_span_as_three_markers_and_its_transcript_in_the_asr_view(shard, indexed):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    (doc, _), (prefix, tok) = shard, indexed
    markers = [tok.audio_bos_id, tok.audio_placeholder_id, tok.audio_eos_id]
    stored = IndexedDataset(prefix, multimodal=True)  # megatron-core's own .bin/.idx reader
    assert [stored[i][0].tolist() == markers for i in range(len(stored))] == [s.is_speech for s in doc.segments]
    asr = IndexedDataset(prefix + "_asr", multimodal=True)  # one document per span: its audio, then its text
    for k, seg in enumerate(doc.speech):
        first, last = asr.document_indices[k:k + 2]
        ids = np.concatenate([asr[i][0] for i in range(first, last)]).tolist()
        assert ids[:4] == [tok.bos_id, *markers] and ids[-1] == tok.eod_id
        assert tok.detokenize(ids[4:-1]) == seg.text


# 3. indexed dataset -> sample: ``InterleavedDataset`` expands each span's placeholder to the number of frames
#    the model's encoder + adapter make of its audio (data/frames.py), and masks the loss off speech.
@pytest.fixture(scope="module")
def model_config(indexed):
    from megatron_inserter.models.presets import resolve

    return resolve("tiny").with_tokenizer(indexed[1])


def expected_stream(doc, tok, spec) -> list[int]:
    """The document as the model reads it: BOS, text tokens, one placeholder per audio frame, EOD."""
    ids = [tok.bos_id]
    for seg in doc.segments:
        if seg.is_speech:
            ids += [tok.audio_bos_id] + [tok.audio_placeholder_id] * num_audio_frames(seg.num_samples, spec)
            ids += [tok.audio_eos_id]
        else:
            ids += tok.tokenize(seg.text)
    return ids + [tok.eod_id]


@pytest.fixture(scope="module")
def sample(work, shard, indexed, model_config):
    from megatron_inserter.data.indexed import build_datasets, dataset_config

    prefix, tok = indexed
    stream = expected_stream(shard[0], tok, model_config.frame_spec())
    # seq_length + 1 tokens per sample: this document fills exactly one sample, no padding.
    cfg = dataset_config([prefix], "1,0,0", seq_length=len(stream) - 1, seed=1, tokenizer=tok,
                         frame_spec=model_config.frame_spec(), path_to_cache=str(work / "cache"))
    train, _, _ = build_datasets(cfg)
    assert len(train) == 1
    return train[0], stream


def test_3_sample_holds_the_document_with_one_placeholder_per_audio_frame(shard, indexed, sample, model_config):
    (doc, pcm), (_, tok), (s, stream) = shard, indexed, sample
    assert s["num_padding"] == 0 and tok.bos_id is not None
    assert s["tokens"].tolist() == stream[:-1] and s["labels"].tolist() == stream[1:]  # BOS first, EOD last
    assert [c.tolist() for c in s["audio"]] == [pcm[seg.audio].tolist() for seg in doc.speech]  # exact PCM
    runs = [len(r) for r in "".join("A" if t == tok.audio_placeholder_id else " " for t in stream).split()]
    assert runs == [num_audio_frames(len(c), model_config.frame_spec()) for c in s["audio"]]
    speech = torch.isin(s["labels"], torch.tensor([tok.audio_bos_id, tok.audio_placeholder_id, tok.audio_eos_id]))
    assert torch.equal(s["loss_mask"], (~speech).float())  # 0 exactly on speech targets, 1 on text targets


# 4. sample -> batch: the trainer's collate stacks the token fields, pads the clips into ``audio [n, samples]``
#    float32 and adds the after-speech masks of the modality-gap losses.
@pytest.fixture(scope="module")
def batch(indexed, sample):
    from megatron_inserter.training.data import GapMasks

    tok = indexed[1]
    return GapMasks(tok.audio_eos_id, tok.eod_id, window=16)([{**sample[0], "sample_index": 0}])


def test_4_batch_carries_the_clips_in_placeholder_order(sample, batch):
    s = sample[0]
    assert batch["tokens"].shape == (1, len(s["tokens"])) and torch.equal(batch["loss_mask"][0], s["loss_mask"])
    assert batch["audio_lengths"].tolist() == [len(c) for c in s["audio"]]
    for clip, row, n in zip(s["audio"], batch["audio"], batch["audio_lengths"]):
        assert torch.equal(row[:n], torch.from_numpy(clip.astype(np.float32) / 32768))
    assert batch["after_speech"].any() and not (batch["after_speech"] & (batch["loss_mask"] == 0)).any()


# 5. batch -> loss: the tiny preset's InserterModel (megatron-core, on CPU) encodes the clips, splices their
#    frames over the placeholders and returns per-token losses; the trainer's LossFunction sums them over text.
@pytest.fixture(scope="module")
def model(model_config):
    from megatron_inserter.models.builder import build_model_chunks
    from megatron_inserter.runtime import ParallelConfig, destroy_parallel, initialize_parallel
    from tests.harness import free_port

    with pytest.MonkeyPatch.context() as env:
        single_process = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                          "MASTER_PORT": str(free_port())}
        for name, value in single_process.items():
            env.setenv(name, value)
        initialize_parallel(ParallelConfig(seed=7))
        try:
            [chunk] = build_model_chunks(model_config)
            yield chunk.eval()
        finally:
            destroy_parallel()


def test_5_loss_is_the_cross_entropy_of_the_text_targets(model, model_config, batch):
    from megatron_inserter.training.losses import LM_LOSS, LossFunction
    from megatron_inserter.training.models import InserterFamily

    with torch.no_grad():
        frames = model.encode_audio(batch["audio"], batch["audio_lengths"])
        per_token = InserterFamily(model_config).forward(model, batch)  # the trainer's forward: [b, s]
        logits = model(batch["tokens"], batch["position_ids"], None, audio=batch["audio"],
                       audio_lengths=batch["audio_lengths"])
    assert frames.shape[0] == int((batch["tokens"] == model_config.audio_placeholder_id).sum())
    total, count, report = LossFunction(batch["loss_mask"], batch["after_speech"])(per_token)
    mask = batch["loss_mask"].bool()
    by_hand = torch.nn.functional.cross_entropy(logits[mask].float(), batch["labels"][mask], reduction="mean")
    assert count == int(mask.sum()) and torch.isfinite(total)
    torch.testing.assert_close(total / count, by_hand, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(report[LM_LOSS], torch.stack([total, count.float()]))
