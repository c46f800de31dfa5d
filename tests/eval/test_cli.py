"""`inserter eval` command line: lazy responder import, clear errors, score-only, compare, templates."""

import json
import subprocess
import sys
import types

import pytest

from megatron_inserter.eval import cli, responder
from tests.eval.fakes import (
    ChatTokenizer,
    ScriptedResponder,
    bench_answer,
    make_bench,
    touch_audio,
    write_jsonl,
)


@pytest.fixture
def fake_backend(monkeypatch):
    """A stand-in for megatron_inserter.inference.model_responder that records how it was built; the
    checkpoint's tokenizer has chat tokens."""
    built = []
    monkeypatch.setattr(responder, "checkpoint_tokenizer", lambda load_dir, tokenizer_model=None: ChatTokenizer())

    def build_responder(load_dir, **generation_kwargs):
        built.append((load_dir, generation_kwargs))
        return ScriptedResponder(bench_answer)

    module = types.ModuleType(responder.RESPONDER_MODULE)
    module.build_responder = build_responder
    monkeypatch.setitem(sys.modules, responder.RESPONDER_MODULE, module)
    return built


def test_missing_generation_backend_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(responder, "RESPONDER_MODULE", "megatron_inserter.inference.not_built_here")
    bench = make_bench(tmp_path / "bench")
    rc = cli.main(
        [
            "speechinstructbench",
            "--bench-dir",
            str(bench),
            "--load",
            "/ckpt/x",
            "--output",
            str(tmp_path / "out"),
            "--tasks",
            "closed",
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "/ckpt/x" in err and "--score-only" in err and "build_responder" in err


def test_closed_run_through_the_command_line(tmp_path, fake_backend, capsys):
    bench = make_bench(tmp_path / "bench")
    rc = cli.main(
        [
            "speechinstructbench",
            "--bench-dir",
            str(bench),
            "--load",
            "/ckpt/step100",
            "--output",
            str(tmp_path / "out"),
            "--tasks",
            "closed",
            "--languages",
            "en,cn",
            "--variants",
            "standard",
            "--responder-arg",
            "tensor_model_parallel_size=2",
            "--no-progress",
        ]
    )
    assert rc == 0
    assert fake_backend == [("/ckpt/step100", {"tensor_model_parallel_size": 2, "template": "chatml"})]
    results = json.loads((tmp_path / "out/results.json").read_text())
    assert results["name"] == "step100" and set(results["details"]) == {"en/closed/standard"}
    assert "SpeechInstructBench: step100" in capsys.readouterr().out


def test_open_tasks_without_a_judge_fail_before_loading_the_model(
    tmp_path, fake_backend, monkeypatch, capsys
):
    monkeypatch.delenv("INSERTER_JUDGE_URL", raising=False)
    bench = make_bench(tmp_path / "bench")
    rc = cli.main(
        [
            "speechinstructbench",
            "--bench-dir",
            str(bench),
            "--load",
            "/ckpt",
            "--output",
            str(tmp_path / "out"),
            "--tasks",
            "closed,open",
        ]
    )
    assert rc == 2 and fake_backend == []
    assert "INSERTER_JUDGE_URL" in capsys.readouterr().err


def test_score_only_then_compare(tmp_path, capsys):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        json.dumps(
            {
                "key": 1,
                "instruction_id_list": ["punctuation:no_comma"],
                "kwargs": [{}],
                "prompt": "p",
                "audio_path": "closed_accent_1_en.wav",
                "response": "No commas.",
            }
        )
        + "\n"
    )
    assert (
        cli.main(
            [
                "speechinstructbench",
                "--score-only",
                str(rows),
                "--output",
                str(tmp_path / "a"),
                "--name",
                "a",
                "--no-progress",
            ]
        )
        == 0
    )
    rows.write_text(rows.read_text().replace("No commas.", "Yes, commas."))
    assert (
        cli.main(
            [
                "speechinstructbench",
                "--score-only",
                str(rows),
                "--output",
                str(tmp_path / "b"),
                "--name",
                "b",
                "--no-progress",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        cli.main(
            [
                "compare",
                str(tmp_path / "a/results.json"),
                str(tmp_path / "b/results.json"),
                "--output",
                str(tmp_path / "cmp.md"),
            ]
        )
        == 0
    )
    table = (tmp_path / "cmp.md").read_text()
    assert "| en/closed/accent/p_acc | 100.00 | 0.00 |" in table
    assert table in capsys.readouterr().out


def test_unknown_flags_and_bad_lists_are_usage_errors(tmp_path, capsys):
    rc = cli.main(["speechinstructbench", "--score-only", "x.jsonl", "--output", str(tmp_path), "--bogus"])
    assert rc == 2 and "--bogus" in capsys.readouterr().err
    rc = cli.main(["speechinstructbench", "--score-only", "x.jsonl", "--output", str(tmp_path), "--tasks", "closd"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--tasks" in err and "closd" in err
    rc = cli.main(["asr", "--manifest", "m.jsonl", "--output", str(tmp_path), "--max-new-tokns", "3"])
    assert rc == 2 and "did you mean: --max-new-tokns -> --max-new-tokens" in capsys.readouterr().err
    assert cli.main(["asrr"]) == 2 and "did you mean 'asr'" in capsys.readouterr().err


def test_help_of_every_eval_command_imports_no_model_code():
    code = (
        "import contextlib, io, sys\n"
        "from megatron_inserter.eval import cli\n"
        "for name in cli.COMMANDS:\n"
        "    with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "        assert cli.main([name, '--help']) == 0 and '--' in out.getvalue()\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'megatron', 'numpy', 'nltk'))\n"
        "print(heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def two_line_manifest(tmp_path):
    for name in ("a.wav", "b.wav"):
        touch_audio(tmp_path / name)
    return write_jsonl(tmp_path / "m.jsonl", [{"audio_filepath": "a.wav", "text": "hello world"},
                                              {"audio_filepath": "b.wav", "text": "good day"}])


@pytest.fixture
def sentencepiece_checkpoint(fake_backend, monkeypatch, tmp_path):
    """The checkpoint's tokenizer: a SentencePiece model as `inserter train-tokenizer` makes, no chat tokens."""
    from megatron_inserter.data.tokenizers import build_tokenizer, train_sentencepiece

    texts = [f"hello world, good day number {i}. Speech models listen." for i in range(60)]
    model = train_sentencepiece(texts, str(tmp_path / "tok.model"), vocab_size=300)
    seen = []

    def checkpoint_tokenizer(load_dir, tokenizer_model=None):
        seen.append(load_dir)
        return build_tokenizer("sentencepiece", model)

    monkeypatch.setattr(responder, "checkpoint_tokenizer", checkpoint_tokenizer)
    return fake_backend


def test_asr_with_default_flags_picks_the_plain_template_for_a_sentencepiece_tokenizer(
    tmp_path, sentencepiece_checkpoint, capsys
):
    manifest = two_line_manifest(tmp_path)
    rc = cli.main(["asr", "--manifest", str(manifest), "--load", "runs/demo/train", "--output", str(tmp_path / "o")])
    assert rc == 0
    assert sentencepiece_checkpoint == [("runs/demo/train", {"template": "plain"})]
    captured = capsys.readouterr()
    assert "inserter eval asr: prompt template plain: the tokenizer of runs/demo/train has no single tokens" in (
        captured.err)
    assert "### ASR: train" in captured.out


def test_chatml_with_a_tokenizer_without_chat_tokens_is_refused_before_the_model_is_built(
    tmp_path, sentencepiece_checkpoint, capsys
):
    manifest = two_line_manifest(tmp_path)
    rc = cli.main(["audio-qa", "--manifest", str(manifest), "--load", "ckpt", "--output", str(tmp_path / "o"),
                   "--prompt-template", "chatml"])
    err = capsys.readouterr().err
    assert rc == 2 and sentencepiece_checkpoint == []
    assert err.startswith("inserter eval audio-qa: error: --prompt-template chatml needs single tokens")
    assert err.count("\n") == 1


def test_errors_are_one_line_and_the_traceback_comes_with_debug(tmp_path, capsys):
    argv = ["asr", "--manifest", str(tmp_path / "none.jsonl"), "--load", "ckpt", "--output", str(tmp_path / "o")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"inserter eval asr: error: --manifest {tmp_path / 'none.jsonl'} does not exist (a jsonl file, " \
                  "one row per clip)\n"
    with pytest.raises(Exception, match="does not exist"):
        cli.main(argv + ["--debug"])
    rows = write_jsonl(tmp_path / "r.jsonl", [{"prompt": "x", "response": "y"}])
    assert cli.main(["speechinstructbench", "--score-only", str(rows), "--output", str(tmp_path / "o"),
                     "--dp-size", "0"]) == 2
    assert "--dp-size must be >= 1" in capsys.readouterr().err
