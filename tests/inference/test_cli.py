"""``inserter generate``: bad rows of --input-jsonl are counted skips while the good ones are answered;
a bad --audio or --load is one line naming it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from megatron_inserter.inference import cli as generate_cli
from megatron_inserter.inference.prompt import TEMPLATES
from tests.harness import free_port


def _wav(path, seconds: float, rate: int = 16000) -> str:
    t = np.arange(int(seconds * rate)) / rate
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate)
    return str(path)


class EchoResponder:
    """Answers "<prompt>|<samples at 16 kHz>"; a batch holding the prompt "boom" fails as a whole."""

    def __init__(self):
        self.batches = []

    def respond(self, requests):
        self.batches.append(len(requests))
        if any(r.text_prompt == "boom" for r in requests):
            raise ValueError("the prompt is longer than the model's sequence length")
        return [f"{r.text_prompt}|{0 if r.audio is None else len(r.audio)}" for r in requests]


@pytest.fixture
def echo(monkeypatch):
    responder = EchoResponder()
    monkeypatch.setattr(generate_cli, "load_responder", lambda flags: responder)
    return responder


def _rows(path, lines) -> str:
    path.write_bytes(b"\n".join(x if isinstance(x, bytes) else json.dumps(x).encode() for x in lines) + b"\n")
    return str(path)


def test_bad_rows_are_counted_skips_and_good_rows_are_answered(tmp_path, capsys, echo):
    _wav(tmp_path / "a.wav", 0.5)
    _wav(tmp_path / "b.flac", 0.25, rate=22050)
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00not audio")
    rows = _rows(tmp_path / "rows.jsonl", [
        {"id": 1, "audio": "a.wav", "prompt": "one"},         # relative to the jsonl's folder
        {"id": 2, "audio": "missing.wav"},
        b"{not json",
        {"id": 3, "prompt": "boom"},                           # fails inside the model: its batch is retried
        {"id": 4, "audio": "broken.wav"},
        b"[1, 2]",
        {"id": 5, "audio": str(tmp_path / "b.flac"), "prompt": "five"},
        b"\xff\xfe not utf-8",
        {"id": 6, "prompt": 7},
        {"id": 7, "prompt": "seven", "extra": {"kept": True}},
    ])
    out = tmp_path / "out" / "answers.jsonl"
    rc = generate_cli.main(["--load", str(tmp_path), "--input-jsonl", rows, "--output-jsonl", str(out),
                            "--micro-batch-size", "4"])
    assert rc == 0
    answers = [json.loads(line) for line in out.read_text().splitlines()]
    assert [a["id"] for a in answers] == [1, 5, 7]
    assert [a["response"] for a in answers] == ["one|8000", "five|4000", "seven|0"]  # b.flac resampled to 16 kHz
    assert answers[2]["extra"] == {"kept": True}
    err = capsys.readouterr().err.splitlines()
    skipped = {line.split(": ", 2)[1].split(":")[-1]: line for line in err if "skipped" in line and "answered" not in line}
    assert sorted(skipped, key=int) == ["2", "3", "4", "5", "6", "8", "9"]
    assert f"{rows}:2: audio file 'missing.wav' does not exist" in skipped["2"]
    assert "not valid JSON" in skipped["3"] and "longer than the model's sequence length" in skipped["4"]
    assert "cannot read audio" in skipped["5"] and "not UTF-8" in skipped["8"] and "'prompt' must be" in skipped["9"]
    assert err[-1].startswith("inserter generate: answered 3 of 10 rows") and "skipped 7" in err[-1]
    assert sorted(os.listdir(out.parent)) == ["answers.jsonl"]  # no temporary file left behind


def test_nothing_answerable_exits_1_and_writes_nothing(tmp_path, capsys, echo):
    rows = _rows(tmp_path / "rows.jsonl", [{"audio": "gone.wav"}, {"prompt": "boom"}])
    out = tmp_path / "answers.jsonl"
    rc = generate_cli.main(["--load", str(tmp_path), "--input-jsonl", rows, "--output-jsonl", str(out)])
    assert rc == 1 and not out.exists() and [p.name for p in tmp_path.iterdir()] == ["rows.jsonl"]
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("inserter generate: error: --input-jsonl") and "none of its 2 rows" in err[-1]


def _one_line(capsys, *named) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("inserter generate: error: ") and "Traceback" not in err
    for name in named:
        assert name in err
    return err


@pytest.mark.parametrize("argv, named", [
    (["--audio", "{tmp}/nope.wav"], ["--audio", "nope.wav"]),
    (["--prompt", "hi", "--load", "{tmp}/no-such-run"], ["--load", "no-such-run"]),
    (["--input-jsonl", "{tmp}/rows.jsonl"], ["--output-jsonl"]),
    (["--input-jsonl", "{tmp}/rows.jsonl", "--output-jsonl", "o", "--prompt", "x"], ["--input-jsonl"]),
    ([], ["--audio", "--prompt"]),
    (["--prompt", "hi", "--top-p", "0"], ["--top-p"]),
])
def test_flag_problems_are_one_line_before_any_model_loads(tmp_path, capsys, argv, named):
    argv = [a.format(tmp=tmp_path) for a in argv]
    argv = argv if "--load" in argv else ["--load", str(tmp_path), *argv]
    assert generate_cli.main(argv) == 2
    _one_line(capsys, *named)


def test_a_directory_that_is_no_checkpoint_is_one_line(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    assert generate_cli.main(["--load", str(tmp_path / "run"), "--prompt", "hi"]) != 0
    _one_line(capsys, str(tmp_path / "run"))


def test_template_choices_are_the_prompt_templates():
    from dataclasses import fields

    (field,) = [f for f in fields(generate_cli.GenerateFlags) if f.name == "prompt_template"]
    assert tuple(field.metadata["choices"]) == TEMPLATES and field.default in TEMPLATES


@pytest.fixture(scope="module")
def inserter_checkpoint(tmp_path_factory):
    """A one-step InSerter run of the tiny preset, saved by the real `inserter train`."""
    from tests.training.corpus import build_corpus

    root = tmp_path_factory.mktemp("generate_cli")
    tok, prefix = build_corpus(str(root), n_docs=32)
    save = str(root / "ckpt")
    argv = ["--model-type", "inserter", "--micro-batch-size", "2", "--global-batch-size", "2", "--seq-length", "64",
            "--lr", "1e-3", "--train-iters", "1", "--tokenizer-model", tok, "--split", "100,0,0", "--eval-iters", "0",
            "--num-workers", "0", "--data-path", prefix, "--save", save]
    result = _inserter("train", *argv)
    assert result.returncode == 0, result.stderr[-3000:]
    return save


def _inserter(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "CUDA_VISIBLE_DEVICES": "",
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "megatron_inserter.cli", *argv], check=False,
                          capture_output=True, text=True, timeout=300, env=env)


def test_real_checkpoint_answers_good_rows_and_skips_the_rest(inserter_checkpoint, tmp_path):
    _wav(tmp_path / "a.wav", 0.6)
    _wav(tmp_path / "tiny.wav", 0.002)  # too short for one encoder frame
    rows = _rows(tmp_path / "rows.jsonl", [{"id": 1, "audio": "a.wav", "prompt": "the cat"},
                                           {"id": 2, "audio": "missing.wav"},
                                           b"{oops",
                                           {"id": 3, "audio": "tiny.wav"},
                                           {"id": 4, "prompt": "one two"}])
    out = tmp_path / "answers.jsonl"
    result = _inserter("generate", "--load", inserter_checkpoint, "--input-jsonl", rows, "--output-jsonl", str(out),
                       "--max-new-tokens", "4", "--micro-batch-size", "4")
    assert result.returncode == 0, result.stderr[-3000:]
    answers = [json.loads(line) for line in out.read_text().splitlines()]
    assert [a["id"] for a in answers] == [1, 4] and all(isinstance(a["response"], str) for a in answers)
    err = [line for line in result.stderr.splitlines() if line.startswith("inserter generate:")]
    skips = {line.split(f"{rows}:")[1].split(":")[0]: line for line in err
             if line.startswith("inserter generate: skipped ")}
    assert sorted(skips) == ["2", "3", "4"]
    assert "too short for one encoder frame" in skips["4"]
    assert "Traceback" not in result.stderr and err[-1].startswith("inserter generate: answered 2 of 5 rows")


def test_real_checkpoint_refuses_a_too_short_audio_in_one_line(inserter_checkpoint, tmp_path):
    result = _inserter("generate", "--load", inserter_checkpoint, "--audio", _wav(tmp_path / "tiny.wav", 0.002))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("inserter generate: error: cannot answer --audio")
    assert "tiny.wav" in errors[0] and "too short" in errors[0]
