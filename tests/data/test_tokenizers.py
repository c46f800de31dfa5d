import json
import os
import pickle
from pathlib import Path

import pytest

from megatron_inserter.data.tokenizers import SpecialTokens, build_tokenizer, train_sentencepiece

TEXTS = [
    "The quick brown fox jumps over the lazy dog.\nSpeech models learn to listen.",
    "语音模型学习理解文本和合成音频的交错数据。",
    "Numbers 12345 and   spaces\tkept exactly.",
] * 40


def test_sentencepiece_training_is_deterministic_and_round_trips_exactly(tmp_path):
    a = train_sentencepiece(TEXTS, str(tmp_path / "a.model"), vocab_size=400)
    b = train_sentencepiece(TEXTS, str(tmp_path / "b.model"), vocab_size=400)
    assert Path(a).read_bytes() == Path(b).read_bytes()
    tok = build_tokenizer("sentencepiece", a)
    for text in TEXTS[:3] + ["unseen 龘 characters  and\nnewlines  "]:
        ids = tok.tokenize(text)
        assert tok.detokenize(ids) == text
    specials = {tok.eod_id, tok.audio_bos_id, tok.audio_eos_id, tok.audio_placeholder_id}
    assert len(specials) == 4 and tok.pad_id not in specials
    assert tok.id_to_piece(tok.audio_placeholder_id) == "<|AUDIO|>"
    assert tok.id_to_piece(tok.eod_id) == "<|endoftext|>"


def test_sentencepiece_without_audio_symbols_is_refused_with_the_fix(tmp_path):
    import sentencepiece as spm

    prefix = str(tmp_path / "plain")
    spm.SentencePieceTrainer.train(sentence_iterator=iter(TEXTS), model_prefix=prefix, vocab_size=200,
                                   hard_vocab_limit=False, minloglevel=2)
    with pytest.raises(ValueError, match="user_defined_symbols") as e:
        build_tokenizer("sentencepiece", prefix + ".model")
    assert "<|AUDIO|>" in str(e.value)


def test_tokenizer_survives_pickling(tmp_path):
    tok = build_tokenizer("sentencepiece", train_sentencepiece(TEXTS, str(tmp_path / "t.model"), 400))
    back = pickle.loads(pickle.dumps(tok))
    assert back.special_ids() == tok.special_ids()
    assert back.tokenize(TEXTS[1]) == tok.tokenize(TEXTS[1])
    assert back.vocab_hash() == tok.vocab_hash()


def _hf_tokenizer_dir(path, with_audio_tokens: bool) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>"] + (["<|audio_bos|>", "<|audio_eos|>", "<|AUDIO|>"] if with_audio_tokens else [])
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TEXTS, trainer)
    os.makedirs(path, exist_ok=True)
    tok.save(os.path.join(path, "tokenizer.json"))
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "<|endoftext|>", "pad_token": None}, f)
    return str(path)


def test_huggingface_tokenizer_gets_missing_audio_tokens_with_stable_ids(tmp_path):
    directory = _hf_tokenizer_dir(tmp_path / "hf", with_audio_tokens=False)
    a = build_tokenizer("huggingface", directory)
    b = build_tokenizer("huggingface", directory)
    base = a.vocab_size - 3
    assert (a.audio_bos_id, a.audio_eos_id, a.audio_placeholder_id) == (base, base + 1, base + 2)
    assert b.special_ids() == a.special_ids() and b.vocab_hash() == a.vocab_hash()
    assert a.eod_id == a.pad_id == 0  # <|endoftext|>, no pad token configured
    for text in TEXTS[:3]:
        assert a.detokenize(a.tokenize(text)) == text
    assert a.tokenize("x<|AUDIO|>y").count(a.audio_placeholder_id) == 1


def test_huggingface_tokenizer_keeps_existing_audio_tokens(tmp_path):
    directory = _hf_tokenizer_dir(tmp_path / "hf", with_audio_tokens=True)
    tok = build_tokenizer("huggingface", directory)
    assert (tok.eod_id, tok.audio_bos_id, tok.audio_eos_id, tok.audio_placeholder_id) == (0, 1, 2, 3)


def test_custom_special_token_names(tmp_path):
    names = SpecialTokens(audio_bos="<sb>", audio_eos="<se>", audio_placeholder="<sp>", eod="<eod>")
    path = train_sentencepiece(TEXTS, str(tmp_path / "c.model"), 400, specials=names)
    tok = build_tokenizer("sentencepiece", path, names)
    assert [tok.id_to_piece(i) for i in (tok.audio_bos_id, tok.audio_eos_id, tok.audio_placeholder_id, tok.eod_id)] \
        == ["<sb>", "<se>", "<sp>", "<eod>"]


def test_missing_model_and_unknown_type_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="never"):
        build_tokenizer("huggingface", str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="unknown tokenizer type"):
        build_tokenizer("wordpiece", "x")


def test_train_tokenizer_cli_is_deterministic(tmp_path):
    from megatron_inserter.data.indexed.tokenizer_cli import main

    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in TEXTS), encoding="utf-8")
    for name in ("a", "b"):
        assert main(["--input", str(corpus), "--vocab-size", "400", "--output", str(tmp_path / f"{name}.model")]) == 0
    assert (tmp_path / "a.model").read_bytes() == (tmp_path / "b.model").read_bytes()


def test_bos_comes_from_the_model_and_batches_tokenize_as_single_texts(tmp_path):
    sp = build_tokenizer("sentencepiece", train_sentencepiece(TEXTS, str(tmp_path / "t.model"), 400))
    assert sp.bos_id == 2 and sp.id_to_piece(sp.bos_id) == "<s>" and sp.special_ids()["bos_id"] == 2
    qwen_like = build_tokenizer("huggingface", _hf_tokenizer_dir(tmp_path / "hf", with_audio_tokens=True))
    assert qwen_like.bos_id is None  # no bos_token in its tokenizer_config.json
    llama_dir = _hf_tokenizer_dir(tmp_path / "llama", with_audio_tokens=True)
    with open(os.path.join(llama_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>"}, f)
    assert build_tokenizer("huggingface", llama_dir).bos_id == 0
    texts = TEXTS[:3] + ["", "unseen 龘 characters"]
    for tok in (sp, qwen_like):
        batch = tok.tokenize_batch(texts)
        assert [list(map(int, ids)) for ids in batch] == [tok.tokenize(t) for t in texts]
