import re

import numpy as np
import pytest
import torch
from megatron.core.datasets.indexed_dataset import IndexedDataset

from megatron_inserter.data.frames import FrameSpec, num_audio_frames
from megatron_inserter.data.indexed import build_datasets, dataset_config
from megatron_inserter.data.indexed.metadata import MODE_TEXT
from tests.data.conversation.conftest import CLIP_SAMPLES
from tests.data.conversation.helpers import conversation, expected_pieces, write_rows, write_wav

REPLY = re.compile(r"Reply (\d+) of (\d+): it is sunny and warm\.<\|im_end\|>")


def _dataset(prefix, tok, cache, seq):
    cfg = dataset_config([prefix], "1,0,0", seq_length=seq, seed=7, tokenizer=tok, path_to_cache=str(cache))
    return build_datasets(cfg)[0]


def _stored_targets(prefix):
    """Assistant (MODE_TEXT) tokens per document, from the .idx modes alone."""
    ds = IndexedDataset(prefix, multimodal=True)
    modes, lengths = ds.index.sequence_modes, ds.sequence_lengths
    return [int(lengths[a:b][modes[a:b] == MODE_TEXT].sum())
            for a, b in zip(ds.document_indices[:-1], ds.document_indices[1:])]


def test_a_hand_built_conversation_trains_on_exactly_its_assistant_tokens_in_a_sample(tmp_path, tok, tok_dir):
    from megatron_inserter.data.indexed.preprocess_cli import main

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the weather?"},
                {"role": "assistant", "content": "Sunny."}, {"role": "user", "content": "And tomorrow?"},
                {"role": "assistant", "content": "Warm."}]
    ids, mask = expected_pieces(tok, [
        ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is the weather?<|im_end|>\n" +
         "<|im_start|>assistant\n", False), ("Sunny.<|im_end|>", True),
        ("\n<|im_start|>user\nAnd tomorrow?<|im_end|>\n<|im_start|>assistant\n", False), ("Warm.<|im_end|>", True),
        ("\n", False), ([tok.eod_id], False)])
    path = write_rows(tmp_path / "rows.jsonl", [{"messages": messages}] * 4)
    prefix = str(tmp_path / "sft")
    assert main(["--format", "conversation", "--input", path, "--output-prefix", prefix, "--tokenizer-type",
                 "huggingface", "--tokenizer-model", tok_dir, "--no-progress"]) == 0
    n = len(ids)
    ds = _dataset(prefix, tok, tmp_path / "cache", seq=n + 5)
    assert len(ds) == 3  # one conversation per sample (the next one does not fit), the last one has no successor
    for i in range(len(ds)):
        s = ds[i]
        assert s["num_padding"] == 5 and s["tokens"][:n].tolist() == ids
        assert s["labels"][:n].tolist() == ids[1:] + ids[:1]  # the last target: the next conversation's first token
        assert s["loss_mask"].bool().tolist() == mask[1:] + [False] * 6


def test_an_epoch_trains_on_exactly_the_stored_assistant_tokens_of_whole_conversations(
        conversation_dataset, corpus, tok, tmp_path):
    rows = corpus[1]
    ds = _dataset(conversation_dataset, tok, tmp_path, seq=400)
    assert ds.num_dropped_conversations == 0
    stored = _stored_targets(conversation_dataset)
    seen = []
    loss_tokens = 0
    for i in range(len(ds)):
        s = ds[i]
        mask = s["loss_mask"].bool()
        loss_tokens += int(mask.sum())
        text = tok.detokenize(s["labels"][mask].tolist())
        replies = [(int(c), int(t)) for t, c in REPLY.findall(text)]
        assert REPLY.sub("", text) == ""  # nothing but whole assistant replies carries loss
        for c in {c for c, _ in replies}:  # a conversation in a sample is in it whole: all its replies, in order
            turns = sum(m["role"] == "assistant" for m in rows[f"conv-{c}"]["messages"])
            assert [t for c2, t in replies if c2 == c] == list(range(turns))
        seen += sorted({c for c, _ in replies})
    # every conversation of the epoch but those in the dropped last partial sample, each once
    assert len(seen) == len(set(seen)) and len(seen) >= len(rows) - 3
    assert loss_tokens == sum(stored[c] for c in seen)


def test_audio_parts_expand_to_exactly_num_audio_frames_placeholders(conversation_dataset, corpus, tok, tmp_path):
    clips = list(corpus[2].values())
    ds = _dataset(conversation_dataset, tok, tmp_path, seq=400)
    spec = FrameSpec()
    found = 0
    for i in range(len(ds)):
        s = ds[i]
        tokens = s["tokens"]
        starts = torch.nonzero(tokens == tok.audio_bos_id).flatten().tolist()
        ends = torch.nonzero(tokens == tok.audio_eos_id).flatten().tolist()
        assert len(starts) == len(ends) == len(s["audio"])
        for a, b, clip in zip(starts, ends, s["audio"]):
            k = next(j for j, c in enumerate(clips) if len(c) == len(clip))
            assert np.array_equal(clip, clips[k])
            assert b - a - 1 == num_audio_frames(CLIP_SAMPLES[2 * k], spec)
            assert bool((tokens[a + 1:b] == tok.audio_placeholder_id).all())
            assert not s["loss_mask"][a - 1:b].any()  # neither the markers nor the placeholders are targets
            found += 1
    assert found >= len(clips) - 2


def test_a_conversation_longer_than_a_sample_is_left_out_and_counted(tmp_path, tok, tok_dir):
    from megatron_inserter.data.indexed.preprocess_cli import main

    write_wav(tmp_path / "long.wav", 16000 * 6)  # 150 placeholders
    path = write_rows(tmp_path / "rows.jsonl", [conversation(i, "long.wav" if i == 3 else None) for i in range(8)])
    prefix = str(tmp_path / "sft")
    assert main(["--format", "conversation", "--input", path, "--output-prefix", prefix, "--tokenizer-type",
                 "huggingface", "--tokenizer-model", tok_dir, "--no-progress"]) == 0
    ds = _dataset(prefix, tok, tmp_path / "cache", seq=128)
    assert ds.num_dropped_conversations == 1
    for i in range(len(ds)):
        text = tok.detokenize(ds[i]["labels"][ds[i]["loss_mask"].bool()].tolist())
        assert "of 3:" not in text and len(ds[i]["audio"]) == 0


@pytest.mark.usefixtures("gloo_group")
def test_conversations_blend_with_text_data_by_weight(conversation_dataset, tok, tok_dir, tmp_path):
    from megatron_inserter.data.indexed.preprocess_cli import main

    text = write_rows(tmp_path / "text.jsonl", [{"text": f"Plain text document {i}. " * 6} for i in range(40)])
    assert main(["--input", text, "--output-prefix", str(tmp_path / "text"), "--tokenizer-type", "huggingface",
                 "--tokenizer-model", tok_dir, "--no-progress"]) == 0
    cfg = dataset_config(["0.5", conversation_dataset, "0.5", str(tmp_path / "text")], "1,0,0", seq_length=400,
                         seed=3, tokenizer=tok, path_to_cache=str(tmp_path / "cache"))
    blend = build_datasets(cfg, num_samples=(40, 0, 0))[0]
    ids = [int(blend[i]["dataset_id"]) for i in range(40)]
    assert ids.count(0) == 20 and ids.count(1) == 20
    for i in range(40):
        s = blend[i]
        masked = tok.detokenize(s["labels"][s["loss_mask"].bool()].tolist())
        if s["dataset_id"] == 0:
            assert "Question" not in masked and "Reply" in masked
        else:
            assert "Plain text document" in masked  # text data trains on every token


@pytest.fixture(scope="module")
def gloo_group():
    import torch.distributed as dist

    from tests.harness import free_port

    created = not dist.is_initialized()
    if created:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    yield
    if created:
        dist.destroy_process_group()
