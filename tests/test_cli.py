"""The ``inserter`` entry point: every command's --help starts without torch or megatron-core, and a
mistyped command gets a suggestion."""

from __future__ import annotations

import io
import subprocess
import sys
from contextlib import redirect_stdout

import pytest

from megatron_inserter import cli
from megatron_inserter.errors import UsageError

HEAVY = ("torch", "megatron")  # top-level packages a --help must not import


def subcommands(command: str) -> list[str]:
    """The names ``inserter COMMAND --help`` lists under "commands:"."""
    out = io.StringIO()
    with redirect_stdout(out):
        cli.main([command, "--help"])
    lines = out.getvalue().splitlines()
    start = lines.index("commands:") + 1
    names = []
    for line in lines[start:]:
        if not line.startswith("  "):
            break
        names.append(line.split()[0])
    return names


NESTED = {c: subcommands(c) for c in ("eval", "convert", "desta")}
COMMAND_LINES = [[]] + [[c] for c in cli.COMMANDS] + [[c, s] for c, subs in NESTED.items() for s in subs]


def imported_modules(importtime_stderr: str) -> list[str]:
    """Module names from ``python -X importtime`` output."""
    return [line.rsplit("|", 1)[1].strip() for line in importtime_stderr.splitlines()
            if line.startswith("import time:") and "|" in line and "imported package" not in line]


def test_eval_and_convert_list_their_subcommands():
    assert {"asr", "speechinstructbench"} <= set(NESTED["eval"])
    assert {"hf-to-mcore", "mcore-to-hf"} <= set(NESTED["convert"])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("argv", COMMAND_LINES, ids=lambda a: " ".join(a) or "inserter")
def test_help_imports_neither_torch_nor_megatron(argv):
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "megatron_inserter.cli", *argv, "--help"],
                         check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "usage: inserter" in out.stdout
    modules = imported_modules(out.stderr)
    assert "megatron_inserter" in modules
    assert "megatron_inserter.flags" in modules or argv == []  # the import log was read
    heavy = sorted({m for m in modules if m.split(".")[0] in HEAVY})
    assert heavy == [], f"`inserter {' '.join(argv)} --help` imports {heavy[:10]}"


def test_top_level_help_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in cli.COMMANDS)


@pytest.mark.parametrize("typo, suggestion", [("trian", "train"), ("generat", "generate"),
                                              ("preprocces", "preprocess"), ("train_tokenizer", "train-tokenizer")])
def test_unknown_command_gets_did_you_mean(capsys, typo, suggestion):
    assert cli.main([typo]) == 2
    err = capsys.readouterr().err
    assert err == f"inserter: error: unknown command {typo!r}; did you mean {suggestion!r}?\n"


def test_unknown_command_without_a_close_match_lists_the_commands(capsys):
    assert cli.main(["xyzzy"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "choose from synth, train-tokenizer" in err


def test_debug_before_the_command_shows_the_traceback(capsys):
    assert cli.main(["train", "--micro-batch", "2"]) == 2  # one line without --debug
    assert capsys.readouterr().err.startswith("inserter train: error: unrecognized arguments: --micro-batch")
    with pytest.raises(UsageError, match="--micro-batch"):
        cli.main(["--debug", "train", "--micro-batch", "2"])
