import os

import pytest

from tests.data.conversation.helpers import (
    QWEN2_TEMPLATE,
    conversation,
    hf_tokenizer_dir,
    write_rows,
    write_wav,
)

NUM_CONVERSATIONS = 24
CLIP_SAMPLES = [6400 + 1760 * i for i in range(NUM_CONVERSATIONS)]  # 0.4 s .. 2.9 s, each a different frame count


@pytest.fixture(scope="session")
def tok_dir(tmp_path_factory):
    """A Qwen2-style Hugging Face tokenizer directory with Qwen2's chat_template."""
    return hf_tokenizer_dir(tmp_path_factory.mktemp("tok") / "qwen2ish", chat_template=QWEN2_TEMPLATE)


@pytest.fixture(scope="session")
def tok(tok_dir):
    from megatron_inserter.data.tokenizers import build_tokenizer

    return build_tokenizer("huggingface", tok_dir)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """(jsonl path, {conversation id: row}, {audio path: pcm}): every other conversation starts with a spoken
    question (its clip in clips/, named relative to the jsonl), conversations have 1 to 3 turns."""
    root = tmp_path_factory.mktemp("conversations")
    os.makedirs(root / "clips")
    rows, clips = [], {}
    for i in range(NUM_CONVERSATIONS):
        audio = None
        if i % 2 == 0:
            audio = f"clips/q{i}.wav"
            clips[str(root / audio)] = write_wav(root / audio, CLIP_SAMPLES[i], freq=180 + 10 * i)
        rows.append(conversation(i, audio, turns=1 + i % 3))
    path = write_rows(root / "dialogue.jsonl", rows)
    return path, {r["id"]: r for r in rows}, clips


@pytest.fixture(scope="session")
def conversation_dataset(tmp_path_factory, corpus, tok_dir):
    """``inserter preprocess --format conversation`` of the corpus: the output prefix."""
    from megatron_inserter.data.indexed.preprocess_cli import main

    prefix = str(tmp_path_factory.mktemp("indexed") / "sft")
    assert main(["--format", "conversation", "--input", corpus[0], "--output-prefix", prefix, "--tokenizer-type",
                 "huggingface", "--tokenizer-model", tok_dir, "--no-progress"]) == 0
    return prefix
