import json

import numpy as np
import pytest

from megatron_inserter.data.conversation.demo_rows import main
from megatron_inserter.data.conversation.messages import load_audio, parse_conversation
from tests.data.indexed.tiny_corpus import make_documents, write_shards


@pytest.mark.parametrize("style, prompt", [("sft", "Write down what is said."),
                                           ("desta", "What can you hear from the audio?")])
def test_every_speech_span_becomes_a_conversation_around_its_audio(tmp_path, style, prompt):
    docs = make_documents(6, seed=5)
    write_shards(docs, str(tmp_path / "shards"), docs_per_shard=3)
    spans = [s for d in docs for s in d["segments"] if s["type"] == "speech" and s["text"].strip()]
    out = tmp_path / "rows" / "conversations.jsonl"
    assert main(["--shards", str(tmp_path / "shards"), "--output", str(out), "--style", style]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == len(spans)
    convs = [parse_conversation(r, base_dir=str(out.parent)) for r in rows]
    assert all(len(c.audio) == 1 for c in convs)
    by_length = {len(s["pcm"]): s for s in spans}
    for row, conv in zip(rows, convs):
        pcm = load_audio(conv.audio[0])  # the span's own audio, copied next to the output
        span = by_length[len(pcm)]
        assert np.array_equal(pcm, span["pcm"])
        reply = row["messages"][-1]["content"]
        if prompt in json.dumps(row["messages"][1]["content"]):
            assert span["text"].strip() in reply
    assert prompt in out.read_text(encoding="utf-8")
