"""The flag pattern: a dataclass is the flags, the help shows one default, and errors are one line."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import pytest

from megatron_inserter.errors import DataError, InserterError, UsageError
from megatron_inserter.flags import arg, build_parser, parse_flags, run_command, run_subcommands


@dataclass
class Flags:
    input: list = arg([], "inputs", required=True, metavar="PATH")  # noqa: RUF009
    workers: int = arg(2, "worker processes")
    ratio: float = arg(0.3, "speech ratio")
    mode: str = arg("word", "span mode", choices=["word", "sentence"])
    prompt: str = arg("", "text after the audio")
    keep: bool = arg(True, "keep temporary files")
    tag: list = arg([], "a tag (repeatable)", repeat=True, metavar="TAG")  # noqa: RUF009
    limit: int = arg(None, "stop after N documents")
    config: str = arg(None, "YAML defaults")


def _parse(*argv: str) -> Flags:
    return parse_flags(Flags, list(argv), "inserter test")


def test_fields_become_typed_flags_with_their_defaults():
    f = _parse("--input", "a", "b", "--workers", "4", "--ratio", "0.5", "--no-keep", "--tag", "x", "--tag", "y")
    assert f == Flags(input=["a", "b"], workers=4, ratio=0.5, mode="word", prompt="", keep=False, tag=["x", "y"],
                      limit=None, config=None)
    assert _parse("--input", "a").tag == [] and Flags().tag is not Flags().tag  # fresh lists per instance


@pytest.mark.parametrize("argv, named", [
    (["--input", "a", "--wokers", "3"], "--wokers -> --workers"),  # did you mean
    (["--input", "a", "--work", "3"], "--work"),                    # no abbreviations
    (["--input", "a", "--mode", "line"], "--mode"),
    (["--input", "a", "--workers", "many"], "--workers"),
    (["--workers", "3"], "missing required arguments: --input"),
])
def test_bad_flags_are_a_usage_error_naming_the_flag(argv, named):
    with pytest.raises(UsageError, match=named) as e:
        _parse(*argv)
    assert e.value.exit_code == 2


def test_help_shows_each_default_once_and_says_required():
    text = " ".join(build_parser(Flags, "inserter test").format_help().split())
    assert "inputs (required)" in text and "worker processes (default: 2)" in text
    assert text.count("(default: 2)") == 1 and "(default: )" not in text and "(default: None)" not in text
    assert "--keep, --no-keep" in text and "--debug" in text


def test_config_file_gives_defaults_and_the_command_line_wins(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("input: [x, y]\nworkers: 8\nkeep: false\n")
    f = _parse("--config", str(cfg), "--workers", "3")
    assert (f.input, f.workers, f.keep) == (["x", "y"], 3, False)
    cfg.write_text("wokers: 8\n")
    with pytest.raises(UsageError, match="wokers"):
        _parse("--config", str(cfg), "--input", "a")


def _run_with(error: BaseException | None):
    def run(flags: Flags) -> int:
        if error is not None:
            raise error
        return 0

    return run


@pytest.mark.parametrize("error, code, says", [
    (DataError("shard x.tar: member 3 is truncated; re-run synth"), 1, "shard x.tar: member 3 is truncated"),
    (UsageError("--input and --resume\n  exclude each other"), 2, "--input and --resume exclude each other"),
    (FileNotFoundError(2, "No such file or directory", "corpus.jsonl"), 1, "corpus.jsonl"),
    (zlib.error("Error -3 while decompressing data: invalid block type"), 1, "invalid block type"),
    (ValueError("bad value in row 7"), 1, "bad value in row 7"),
])
def test_errors_are_one_line_naming_the_problem(capsys, error, code, says):
    assert run_command("inserter test", Flags, _run_with(error), ["--input", "a"]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("inserter test: error: ") and says in err
    assert "Traceback" not in err
    assert ("--debug" in err) is (not isinstance(error, (InserterError, OSError)))  # a library's error says how


def test_debug_shows_the_traceback_instead(monkeypatch):
    with pytest.raises(DataError, match="truncated"):
        run_command("inserter test", Flags, _run_with(DataError("truncated")), ["--input", "a", "--debug"])
    monkeypatch.setenv("INSERTER_DEBUG", "1")
    with pytest.raises(OSError):
        run_command("inserter test", Flags, _run_with(OSError("disk full")), ["--input", "a"])


def test_bugs_are_not_hidden():
    with pytest.raises(ZeroDivisionError):
        run_command("inserter test", Flags, _run_with(ZeroDivisionError()), ["--input", "a"])


def test_usage_errors_exit_2_before_run_is_called(capsys):
    called = []
    assert run_command("inserter test", Flags, called.append, ["--input", "a", "--mode", "line"]) == 2
    assert called == [] and capsys.readouterr().err.startswith("inserter test: error: argument --mode")


def test_subcommands_dispatch_and_suggest(capsys):
    seen = []
    commands = {"hf-to-mcore": (Flags, lambda f: seen.append(("hf", f.workers)), "to megatron"),
                "mcore-to-hf": (Flags, lambda f: seen.append(("mcore", f.workers)), "to Hugging Face")}
    assert run_subcommands("inserter convert", commands, ["mcore-to-hf", "--input", "a", "--workers", "5"]) == 0
    assert seen == [("mcore", 5)]
    assert run_subcommands("inserter convert", commands, ["hf-to-mcor"]) == 2
    assert "did you mean 'hf-to-mcore'?" in capsys.readouterr().err
    assert run_subcommands("inserter convert", commands, ["--help"]) == 0
    assert "mcore-to-hf  to Hugging Face" in capsys.readouterr().out
