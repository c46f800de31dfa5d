"""``--model-preset PATH``: a converted checkpoint's model_config.json is a preset, vocabulary kept."""

import dataclasses
import json

import pytest

from megatron_inserter.models.config import InserterModelConfig
from megatron_inserter.models.presets import get_preset


class _Tok:
    def __init__(self, vocab_size, placeholder):
        self.vocab_size, self.audio_placeholder_id = vocab_size, placeholder


def _write(tmp_path, cfg: InserterModelConfig, kind="inserter"):
    data = {"model_type": kind, **dataclasses.asdict(cfg), "padded_vocab_size": 1024, "hf": {}}
    if kind == "gpt":
        data = {"model_type": "gpt", "llm": dataclasses.asdict(cfg.llm), "padded_vocab_size": 1024, "hf": {}}
    (tmp_path / "model_config.json").write_text(json.dumps(data))
    return tmp_path


def test_checkpoint_directory_is_a_preset_and_keeps_its_vocabulary(tmp_path):
    cfg = get_preset("qwen2-audio-7b")
    loaded = InserterModelConfig.from_name(str(_write(tmp_path, cfg)))
    assert loaded.llm == cfg.llm and loaded.encoder == cfg.encoder and loaded.adapter == cfg.adapter
    assert loaded.frame_spec() == cfg.frame_spec()
    # The tokenizer is smaller than the embedding (156032 rows): the rows stay, the placeholder comes along.
    fitted = loaded.with_tokenizer(_Tok(151_650, 151_646))
    assert fitted.llm.vocab_size == 156_032 and fitted.audio_placeholder_id == 151_646
    # A named preset takes the tokenizer's vocabulary instead.
    assert get_preset("tiny").with_tokenizer(_Tok(3000, 7)).llm.vocab_size == 3000


def test_a_tokenizer_larger_than_the_embedding_is_refused(tmp_path):
    loaded = get_preset(str(_write(tmp_path, get_preset("tiny"))))
    with pytest.raises(ValueError, match="embedding has 4000 rows"):
        loaded.with_tokenizer(_Tok(5000, 7))


def test_gpt_config_file_and_bad_files(tmp_path):
    gpt = get_preset(str(_write(tmp_path, get_preset("tiny"), kind="gpt") / "model_config.json"))
    assert gpt.llm == get_preset("tiny").llm and gpt.notes["model_type"] == "gpt"
    (tmp_path / "model_config.json").write_text(json.dumps({"model_type": "inserter", "llm": {}}))
    with pytest.raises(ValueError, match="encoder is missing"):
        get_preset(str(tmp_path))
    with pytest.raises(ValueError, match="no model_config.json"):
        get_preset(str(tmp_path / "nowhere") + "/")
