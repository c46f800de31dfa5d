"""``inserter train`` failures: one line on stderr naming the file or flag and the fix, a non-zero exit
status and no traceback (each run is the real command in a subprocess)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys

import pytest

from tests.harness import free_port

LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (INFO|WARNING) ")  # the run's progress log


def train(*argv: str, port: int | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RANK", "WORLD_SIZE", "LOCAL_RANK"))}
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port or free_port()), CUDA_VISIBLE_DEVICES="",
               OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "megatron_inserter.cli", "train", *argv], check=False,
                          capture_output=True, text=True, timeout=300, env=env)


def base_flags(tok: str, prefix: str, *extra: str, data: tuple[str, ...] | None = None) -> list[str]:
    return ["--model-type", "gpt", "--micro-batch-size", "2", "--global-batch-size", "2", "--seq-length", "48",
            "--lr", "1e-3", "--train-iters", "1", "--tokenizer-model", tok, "--split", "100,0,0",
            "--eval-iters", "0", "--log-interval", "1", "--num-workers", "0",
            "--data-path", *(data if data is not None else (prefix,)), *extra]


def one_error_line(result: subprocess.CompletedProcess, *named: str) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip() and not LOG_RECORD.match(line)]
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("inserter train: error: ")
    for name in named:
        assert name in lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def gpt_checkpoint(corpus, tmp_path_factory):
    """A one-step gpt run saved by the real command (the success path: exit 0, the checkpoint printed)."""
    tok, prefix = corpus
    save = str(tmp_path_factory.mktemp("train_cli") / "ckpt")
    result = train(*base_flags(tok, prefix, "--save", save))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"checkpoint: {save}/iter_0000001" in result.stdout
    return save


@pytest.mark.parametrize("data, named", [
    (("0.5", "{p}", "{p}_asr"), "WEIGHT PREFIX pairs"),  # was: "dataset file '0.5.idx' does not exist"
    (("-0.5", "{p}", "1.5", "{p}_asr"), "weights must be positive"),
])
def test_malformed_blend_is_one_line_before_anything_is_imported(corpus, data, named):
    tok, prefix = corpus
    result = train(*base_flags(tok, prefix, data=tuple(x.format(p=prefix) for x in data)))
    assert result.returncode == 2
    one_error_line(result, "--data-path", named)


@pytest.mark.parametrize("split, named", [
    ("0,100,0", "leaves no training data"),           # no share at all: refused as a flag
    ("1,990,9", "train split without a usable document"),  # a share too small for this dataset
])
def test_split_that_leaves_no_training_data(corpus, split, named):
    tok, prefix = corpus
    line = one_error_line(train(*base_flags(tok, prefix, "--split", split)), "--split", named)
    assert split == "0,100,0" or prefix in line  # the dataset is named


def test_mismatched_tokenizer_names_both(corpus, tmp_path):
    from megatron_inserter.data.tokenizers import train_sentencepiece
    from tests.training.corpus import documents

    _, prefix = corpus
    other = train_sentencepiece(("".join(s.text for s in d.segments) for d in documents(64, seed=5)),
                                str(tmp_path / "other.model"), vocab_size=400)
    one_error_line(train(*base_flags(other, prefix)), prefix, "other.model", "inserter preprocess")


def test_truncated_shard_is_named(corpus, gpt_checkpoint, tmp_path):
    tok, prefix = corpus
    damaged = str(tmp_path / "damaged")
    shutil.copytree(gpt_checkpoint, damaged)
    shard = os.path.join(damaged, "iter_0000001", "__0_0.distcp")
    os.truncate(shard, os.path.getsize(shard) // 3)
    one_error_line(train(*base_flags(tok, prefix, "--load", damaged, "--train-iters", "2")), shard, "truncated")


def test_model_type_mismatch_says_which(corpus, gpt_checkpoint):
    tok, prefix = corpus
    argv = base_flags(tok, prefix, "--load", gpt_checkpoint, "--train-iters", "2")
    argv[argv.index("--model-type") + 1] = "inserter"
    one_error_line(train(*argv), "--model-type gpt", "--model-type inserter")


def test_rendezvous_port_in_use_says_so(corpus):
    tok, prefix = corpus
    with socket.socket() as busy:  # another single-process run holding the port
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        line = one_error_line(train(*base_flags(tok, prefix), port=port), f"127.0.0.1:{port}", "MASTER_PORT")
    assert "in use" in line
