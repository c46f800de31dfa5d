"""Resuming is exact: 6 steps straight equal 3 steps, a checkpoint, and 3 resumed steps, bit for bit."""

import os

from megatron_inserter.training.metrics import read_metrics
from tests.harness import run_distributed
from tests.training.runs import common_flags, train_histories, train_history

KEYS = ("iteration", "lm loss", "loss after speech", "loss after text", "lr", "consumed_samples", "grad_norm")


def _rows(history):
    return [tuple(h[k] for k in KEYS) for h in history]


def test_six_steps_straight_equal_three_plus_resumed_three(tmp_path, corpus):
    tok, prefix = corpus
    ckpt = str(tmp_path / "ckpt")
    model = {"model_type": "inserter", "seq_length": 64}  # speech encoder, adapter and LLM, audio read from disk
    straight, first = run_distributed(train_histories, 1, [
        common_flags(tok, prefix, **model), common_flags(tok, prefix, save=ckpt, exit_interval=3, **model)])[0]
    # The resumed half runs in a fresh process: nothing carries over but the checkpoint.
    second = run_distributed(train_history, 1, common_flags(tok, prefix, save=ckpt, load=ckpt, **model))[0]

    assert [h["iteration"] for h in first] == [1, 2, 3]
    assert [h["iteration"] for h in second] == [4, 5, 6]
    assert _rows(first + second) == _rows(straight)  # exact float equality, not approx
    assert [h["consumed_samples"] for h in straight] == [4, 8, 12, 16, 20, 24]
    lrs = [h["lr"] for h in straight]
    assert lrs[0] < lrs[1] and lrs[1] > lrs[-1]  # warm-up then decay: the schedule really resumed mid-way
    # The loss moved, so equality is not two runs that did nothing.
    assert straight[-1]["lm loss"] < straight[0]["lm loss"]
    # The run's metrics log reads as one history across the restart.
    logged = [r for r in read_metrics(os.path.join(ckpt, "logs", "metrics.jsonl")) if r["kind"] == "train"]
    assert [r["iteration"] for r in logged] == [1, 2, 3, 4, 5, 6]
    assert [r["lm loss"] for r in logged] == [h["lm loss"] for h in straight]
