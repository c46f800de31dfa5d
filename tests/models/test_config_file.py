"""``model_config.json``: one reader and writer; a checkpoint's file is a preset whose vocabulary is kept."""

import ast
import dataclasses
import json
import os
import subprocess
import sys

import pytest

import megatron_inserter.models as models_pkg
from megatron_inserter.models import config_file
from megatron_inserter.models.config import InserterModelConfig
from megatron_inserter.models.config_file import ModelConfigError
from megatron_inserter.models.presets import resolve


class _Tok:
    def __init__(self, vocab_size, placeholder):
        self.vocab_size, self.audio_placeholder_id = vocab_size, placeholder


def _write(tmp_path, cfg: InserterModelConfig, kind="inserter"):
    padded = cfg.llm.padded_vocab_size(1)
    data = {"model_type": kind, **dataclasses.asdict(cfg), "padded_vocab_size": padded, "hf": {}}
    if kind == "gpt":
        data = {"model_type": "gpt", "llm": dataclasses.asdict(cfg.llm), "padded_vocab_size": padded, "hf": {}}
    (tmp_path / "model_config.json").write_text(json.dumps(data))
    return tmp_path


def test_checkpoint_directory_is_a_preset_and_keeps_its_vocabulary(tmp_path):
    cfg = resolve("qwen2-audio-7b")
    loaded = resolve(str(_write(tmp_path, cfg)))
    assert loaded.llm == cfg.llm and loaded.encoder == cfg.encoder and loaded.adapter == cfg.adapter
    assert loaded.frame_spec() == cfg.frame_spec()
    # The tokenizer is smaller than the embedding (156032 rows): the rows stay, the placeholder comes along.
    fitted = loaded.with_tokenizer(_Tok(151_650, 151_646))
    assert fitted.llm.vocab_size == 156_032 and fitted.audio_placeholder_id == 151_646
    # A named preset takes the tokenizer's vocabulary instead.
    assert resolve("tiny").with_tokenizer(_Tok(3000, 7)).llm.vocab_size == 3000


def test_a_tokenizer_larger_than_the_embedding_is_refused(tmp_path):
    loaded = resolve(str(_write(tmp_path, resolve("tiny"))))
    with pytest.raises(ValueError, match="embedding has 4000 rows"):
        loaded.with_tokenizer(_Tok(5000, 7))


def test_gpt_config_file_and_bad_files(tmp_path):
    gpt = resolve(str(_write(tmp_path, resolve("tiny"), kind="gpt") / "model_config.json"))
    assert gpt.llm == resolve("tiny").llm and gpt.notes["model_type"] == "gpt"
    (tmp_path / "model_config.json").write_text(json.dumps({"model_type": "inserter", "llm": {}}))
    with pytest.raises(ValueError, match="encoder is missing"):
        resolve(str(tmp_path))
    with pytest.raises(ValueError, match="no model_config.json"):
        resolve(str(tmp_path / "nowhere") + "/")


def test_written_file_reads_back_as_the_model_built_and_stays_a_trained_vocabulary(tmp_path):
    built = resolve("tiny").with_tokenizer(_Tok(303, 300))  # a tiny model trained with its own tokenizer
    path = config_file.write(str(tmp_path), config_file.to_dict(built, built.llm.padded_vocab_size(2)))
    parsed = config_file.read(path)
    assert parsed.model_type == "inserter" and parsed.padded_vocab_size == 384 and parsed.hf == {}
    assert parsed.config == built
    again = resolve(str(tmp_path))
    assert again.llm.vocab_size == 303 and again.audio_placeholder_id == 300
    assert again.with_tokenizer(_Tok(303, 300)).llm == built.llm
    # Notes a read adds (where the file came from) are not written back.
    rewritten = config_file.to_dict(again)
    assert rewritten["notes"] == {} and config_file.from_dict(rewritten).config == built
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_config.json"]  # no temporary file left


def test_a_gpt_file_of_the_llm_alone(tmp_path):
    llm = resolve("qwen2-audio-7b").llm
    config_file.write(str(tmp_path), config_file.to_dict(llm, hf={"llm": {"model_type": "qwen2"}}))
    parsed = config_file.read(str(tmp_path))
    assert parsed.model_type == "gpt" and parsed.config == llm and parsed.llm == llm
    assert parsed.padded_vocab_size == 156_032 and parsed.hf == {"llm": {"model_type": "qwen2"}}


@pytest.mark.parametrize("text,needle", [
    ("{not json", "is not valid JSON"),
    ('["a list"]', "must hold a JSON object"),
    ('{"model_type": "bert"}', "model_type must be 'inserter' or 'gpt'"),
    ('{"model_type": "gpt", "llm": {"num_layers": 2, "wings": 3}}', "unknown fields ['wings']"),
])
def test_bad_files_name_the_file_and_the_field(tmp_path, text, needle):
    path = tmp_path / "model_config.json"
    path.write_text(text)
    with pytest.raises(ModelConfigError, match="model_config.json") as err:
        config_file.read(str(path))
    assert needle in str(err.value)


def test_an_embedding_smaller_than_the_vocabulary_is_refused(tmp_path):
    data = config_file.to_dict(resolve("tiny"))
    data["padded_vocab_size"] = 100
    with pytest.raises(ModelConfigError, match="padded_vocab_size 100"):
        config_file.write(str(tmp_path), data)
    assert not any(tmp_path.iterdir())  # nothing written


def test_an_iteration_directory_finds_the_file_of_its_checkpoint(tmp_path):
    config_file.write(str(tmp_path), config_file.to_dict(resolve("tiny")))
    (tmp_path / "iter_0000004").mkdir()
    assert config_file.find(str(tmp_path / "iter_0000004")) == str(tmp_path / "model_config.json")
    assert config_file.find(str(tmp_path / "missing")) is None


def _function_level_imports(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found += [f"{path}:{n.lineno}" for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))]
    return found


def test_model_identity_modules_import_at_the_top_and_stay_light():
    root = os.path.dirname(models_pkg.__file__)
    for name in ("config.py", "config_file.py", "presets.py"):
        assert _function_level_imports(os.path.join(root, name)) == []
    code = ("import sys; import megatron_inserter.models.presets as p; p.resolve('tiny'); "
            "print(sorted(m for m in ('torch', 'megatron', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
