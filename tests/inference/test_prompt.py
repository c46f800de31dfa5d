"""Prompts begin as training documents begin: with the tokenizer's BOS when it has one, none otherwise."""

import json
import os

import numpy as np
import pytest

from megatron_inserter.data.frames import FrameSpec
from megatron_inserter.data.tokenizers import build_tokenizer, train_sentencepiece
from megatron_inserter.inference.prompt import Prompt, document_start, encode_prompt

TEXTS = ["The quick brown fox jumps over the lazy dog. Speech models learn to listen.",
         "A system prompt and a user turn, then the assistant answers."] * 20
CHAT = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_bos|>", "<|audio_eos|>", "<|AUDIO|>"]


@pytest.fixture(scope="module")
def sentencepiece(tmp_path_factory):
    path = tmp_path_factory.mktemp("sp") / "t.model"
    return build_tokenizer("sentencepiece", train_sentencepiece(TEXTS, str(path), vocab_size=300))


def _hf_dir(path, bos_token: str | None) -> str:
    """A Qwen2-like local tokenizer (byte-level BPE, chat and audio tokens); Qwen2's has no bos_token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=300, special_tokens=CHAT, show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    os.makedirs(path, exist_ok=True)
    tok.save(os.path.join(path, "tokenizer.json"))
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "<|endoftext|>", "bos_token": bos_token}, f)
    return str(path)


def test_plain_prompt_is_the_start_of_the_training_stream_of_the_same_document(sentencepiece, tmp_path):
    from megatron_inserter.data.indexed.low_level import InterleavedLowLevelDataset
    from megatron_inserter.data.indexed.preprocess import write_dataset
    from megatron_inserter.data.indexed.sources import Document, Segment

    tok, spec = sentencepiece, FrameSpec()
    pcm = (np.sin(np.arange(16_000) / 7) * 8000).astype(np.int16)  # 1 s, whole 10 ms hops
    text = " the fox listens"
    write_dataset(str(tmp_path / "d"), [Document("d", [Segment("spoken words", pcm), Segment(text)])], tok)
    stored = InterleavedLowLevelDataset(str(tmp_path / "d"), tok)
    doc_len = int(stored.document_layout(spec)[0][0])
    tokens, _, clips = stored.read_expanded(0, 0, doc_len, spec)
    trained = np.concatenate(tokens).tolist()

    prompt = encode_prompt(Prompt(text=text, audio=pcm.astype(np.float32) / 32768), tok, spec, "plain")
    assert tok.bos_id is not None and prompt.ids[0] == tok.bos_id and trained[0] == tok.bos_id
    assert prompt.ids == trained[:-1] and trained[-1] == tok.eod_id  # everything but the end of the document
    assert [c.tolist() for c in prompt.clips] == [(c.astype(np.float32) / 32768).tolist() for c in clips]


def test_a_text_only_prompt_starts_with_bos_too(sentencepiece):
    ids = encode_prompt(Prompt(text="the lazy dog"), sentencepiece, FrameSpec(), "plain").ids
    assert ids == [sentencepiece.bos_id] + sentencepiece.tokenize("the lazy dog")


def test_chatml_prompt_starts_with_bos_only_when_the_tokenizer_has_one(tmp_path):
    qwen_like = build_tokenizer("huggingface", _hf_dir(tmp_path / "qwen", bos_token=None))
    with_bos = build_tokenizer("huggingface", _hf_dir(tmp_path / "bos", bos_token="<|endoftext|>"))
    assert qwen_like.bos_id is None and document_start(qwen_like) == []
    audio = np.zeros(8000, dtype=np.float32)
    plain, chat = (encode_prompt(Prompt(text="the fox", audio=audio), qwen_like, FrameSpec(), t)
                   for t in ("plain", "chatml"))
    assert plain.ids[0] == qwen_like.audio_bos_id and chat.ids[0] == qwen_like.tokenize("<|im_start|>")[0]
    chat_bos = encode_prompt(Prompt(text="the fox", audio=audio), with_bos, FrameSpec(), "chatml")
    assert with_bos.bos_id == 0 and chat_bos.ids == [0] + chat.ids  # the same vocabulary, one BOS more


def test_tokenizers_without_a_bos_attribute_get_no_bos():
    class Minimal:  # the attributes generation needs, no bos_id
        audio_bos_id, audio_eos_id, audio_placeholder_id = 1, 2, 3

        def tokenize(self, text):
            return [10 + ord(c) % 50 for c in text]

    assert encode_prompt(Prompt(text="ab"), Minimal(), FrameSpec(), "plain").ids == [10 + 97 % 50, 10 + 98 % 50]
