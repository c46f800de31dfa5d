"""A checkpoint saved at TP=1 loads at TP=2 and at PP=2: the same validation loss, and training continues
from the resharded optimizer state to the same next-step loss."""

import pytest

from tests.harness import run_distributed
from tests.training.runs import common_flags, train_results

FLAGS = {"train_iters": 3, "eval_iters": 2, "eval_interval": 100, "split": "80,20,0", "lr_warmup_iters": 0}


def _eval_and_continue(tok, prefix, ckpt, **layout):
    evaluate = common_flags(tok, prefix, load=ckpt, skip_train="", **FLAGS, **layout)
    resume = common_flags(tok, prefix, load=ckpt, **FLAGS, **layout)
    return [evaluate, resume]


def test_tp1_checkpoint_loads_at_tp2_and_pp2(tmp_path, corpus):
    tok, prefix = corpus
    ckpt = str(tmp_path / "ckpt")
    save = common_flags(tok, prefix, save=ckpt, exit_interval=2, **FLAGS)
    saved, ref_eval, ref_next = run_distributed(train_results, 1, [save] + _eval_and_continue(tok, prefix, ckpt))[0]
    assert saved["checkpoint"].endswith("iter_0000002")
    ref_loss = ref_eval["validation"][0]["lm loss"]
    assert ref_eval["history"] == []  # --skip-train: no steps
    assert ref_next["history"][0]["iteration"] == 3

    layouts = ({"tensor_model_parallel_size": 2}, {"pipeline_model_parallel_size": 2})
    argvs = [argv for layout in layouts for argv in _eval_and_continue(tok, prefix, ckpt, **layout)]
    for rank_runs in run_distributed(train_results, 2, argvs):  # every rank reports the same numbers
        for layout, (rank_eval, rank_next) in zip(layouts, zip(rank_runs[::2], rank_runs[1::2])):
            assert rank_eval["validation"][0]["lm loss"] == pytest.approx(ref_loss, rel=1e-5), layout
            nxt, ref = rank_next["history"][0], ref_next["history"][0]
            assert nxt["lm loss"] == pytest.approx(ref["lm loss"], rel=1e-5), layout
            assert nxt["lr"] == ref["lr"] and nxt["consumed_samples"] == ref["consumed_samples"]
            # After the step the models agree again: the optimizer moments were resharded, not reset.
            assert rank_next["validation"][0]["lm loss"] == pytest.approx(ref_next["validation"][0]["lm loss"],
                                                                          rel=1e-4), layout
