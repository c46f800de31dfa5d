import gzip
import json
import os

import numpy as np
import pytest
from megatron.core.datasets.indexed_dataset import IndexedDataset

from megatron_inserter.data.indexed.metadata import MODE_CONTEXT, MODE_SPEECH, MODE_TEXT, read_metadata
from megatron_inserter.data.indexed.preprocess_cli import main
from tests.data.conversation.helpers import conversation, write_rows, write_wav


def _preprocess(inputs, prefix, tok_dir, *extra):
    return main(["--format", "conversation", "--input", *inputs, "--output-prefix", str(prefix), "--tokenizer-type",
                 "huggingface", "--tokenizer-model", tok_dir, "--no-progress", *extra])


def _documents(prefix):
    """Per stored document: (tokens, modes per token)."""
    ds = IndexedDataset(str(prefix), multimodal=True)
    docs = []
    for d in range(len(ds.document_indices) - 1):
        s0, s1 = int(ds.document_indices[d]), int(ds.document_indices[d + 1])
        seqs = [ds[i] for i in range(s0, s1)]
        docs.append((np.concatenate([s[0] for s in seqs]),
                     np.concatenate([np.full(len(s[0]), s[1]) for s in seqs])))
    return docs


def test_stored_modes_mark_exactly_the_assistant_replies(conversation_dataset, corpus, tok):
    _, rows, clips = corpus
    meta = read_metadata(conversation_dataset)
    assert meta.kind == "conversation" and meta.extra["chat_template"] == "tokenizer"
    docs = _documents(conversation_dataset)
    assert len(docs) == len(rows)
    for (ids, modes), row in zip(docs, rows.values()):
        replies = [m["content"] + "<|im_end|>" for m in row["messages"] if m["role"] == "assistant"]
        assert tok.detokenize(ids[modes == MODE_TEXT]) == "".join(replies)
        assert (modes == MODE_SPEECH).sum() == 3 * sum(isinstance(m["content"], list) for m in row["messages"])
        assert modes[0] == MODE_CONTEXT and ids[-1] == tok.eod_id and modes[-1] == MODE_CONTEXT
    assert meta.extra["assistant_tokens"] == sum(int((m == MODE_TEXT).sum()) for _, m in docs)
    audio = IndexedDataset(conversation_dataset + "_audio", multimodal=False)
    assert len(audio) == len(clips)
    for i, pcm in enumerate(clips.values()):
        assert np.array_equal(audio[i], pcm)


def test_bad_rows_are_counted_skips_with_file_and_line(tmp_path, tok_dir, capsys):
    write_wav(tmp_path / "ok.wav", 8000)
    rows = [
        conversation(0, "ok.wav"),                                                          # line 1: good
        {"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]},  # 2: bad role
        conversation(2, "missing.wav"),                                                     # 3: missing audio
        {"messages": [{"role": "user", "content": {"text": "x"}}, {"role": "assistant", "content": "y"}]},  # 4
        conversation(4),                                                                    # 5: good
        [1, 2, 3],                                                                          # 6: not an object
    ]
    path = write_rows(tmp_path / "rows.jsonl", rows, raw_lines=[b'{"messages": "caf\xe9"}', b"{not json"])
    prefix = tmp_path / "out" / "sft"
    assert _preprocess([path], prefix, tok_dir) == 0
    err = capsys.readouterr().err
    stats = json.loads((tmp_path / "out" / "sft.stats.json").read_text())
    assert stats["documents"] == 2
    assert stats["skipped"] == {"bad_role": 1, "missing_audio": 1, "bad_content": 1, "not_an_object": 1,
                                "invalid_utf8": 1, "invalid_json": 1}
    for line, what in ((2, "role 'robot'"), (3, "missing.wav does not exist"), (4, "message 0 (user) content"),
                       (6, "not a JSON object"), (7, "not valid UTF-8"), (8, "not valid JSON")):
        assert f"{path}:{line}: " in err and what in err, (line, what)
    assert "skipped 1 document: missing_audio (e.g. " + f"{path}:3)" in err


def test_an_over_long_conversation_is_skipped_and_counted(tmp_path, tok_dir, capsys):
    write_wav(tmp_path / "long.wav", 16000 * 20)  # 500 placeholders once expanded
    rows = [conversation(0), conversation(1, "long.wav"), conversation(2, turns=2)]
    path = write_rows(tmp_path / "rows.jsonl", rows)
    assert _preprocess([path], tmp_path / "sft", tok_dir, "--seq-length", "400") == 0
    stats = json.loads((tmp_path / "sft.stats.json").read_text())
    assert stats["documents"] == 2 and stats["skipped"] == {"conversation_too_long": 1}
    assert f"{path}:2: " in capsys.readouterr().err


def test_partitions_and_workers_write_the_same_dataset(tmp_path, corpus, tok_dir):
    one, four = tmp_path / "one" / "sft", tmp_path / "four" / "sft"
    assert _preprocess([corpus[0]], one, tok_dir) == 0
    assert _preprocess([corpus[0]], four, tok_dir, "--workers", "2", "--partitions", "4") == 0
    for suffix in (".bin", ".idx", "_audio.bin", "_audio.idx"):
        assert (tmp_path / "one" / f"sft{suffix}").read_bytes() == (tmp_path / "four" / f"sft{suffix}").read_bytes()


def test_compressed_input_and_a_builtin_template(tmp_path, tok_dir):
    rows = [conversation(i) for i in range(3)]
    with gzip.open(tmp_path / "rows.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    prefix = tmp_path / "sft"
    assert _preprocess([str(tmp_path / "rows.jsonl.gz")], prefix, tok_dir, "--chat-template", "llama3") == 0
    assert read_metadata(str(prefix)).extra["chat_template"] == "llama3" and len(_documents(prefix)) == 3


def test_conversation_flags_are_refused_where_they_do_not_apply(tmp_path, tok_dir, tiny_shards, capsys):
    text = write_rows(tmp_path / "t.jsonl", [{"text": "plain text"}])
    args = ["--input", text, "--output-prefix", str(tmp_path / "x"), "--tokenizer-type", "huggingface",
            "--tokenizer-model", tok_dir, "--no-progress"]
    assert main(args + ["--chat-template", "chatml"]) == 2
    assert "--chat-template apply to --format conversation only" in capsys.readouterr().err
    assert _preprocess([tiny_shards], tmp_path / "y", tok_dir) == 2
    assert "not shards" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "y.idx")


@pytest.fixture(scope="module")
def tiny_shards(tmp_path_factory):
    from tests.data.indexed.tiny_corpus import make_documents, write_shards

    out = tmp_path_factory.mktemp("shards")
    write_shards(make_documents(4, seed=1), str(out), docs_per_shard=4)
    return str(out)
