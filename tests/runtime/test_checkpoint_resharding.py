"""A dist checkpoint saved at TP=1 loads at TP=2 and at PP=2 with the same eval loss."""

import pytest

from tests.harness import run_distributed
from tests.runtime import gpt_parallel as gp


def test_tp1_checkpoint_loads_at_other_layouts(tmp_path):
    ckpt = str(tmp_path / "ckpt")
    run_distributed(gp.make_reference_checkpoint, 1, ckpt)
    ref = run_distributed(gp.train, 1, ckpt, eval_only=True, ddp=False)[0]
    tp2 = run_distributed(gp.train, 2, ckpt, tp=2, eval_only=True, ddp=False)
    pp2 = run_distributed(gp.train, 2, ckpt, pp=2, eval_only=True, ddp=False)
    for loss in tp2 + pp2:
        assert loss == pytest.approx(ref, abs=1e-6, rel=0)
    # A freshly initialised model of the same shape gives a different loss: the load really happened.
    fresh = run_distributed(_fresh_eval, 1)[0]
    assert abs(fresh - ref) > 1e-3


def test_tied_embeddings_across_pipeline_stages(tmp_path):
    """The output layer on the last stage starts as a copy of the first stage's word embeddings."""
    ckpt = str(tmp_path / "ckpt")
    run_distributed(gp.make_reference_checkpoint, 1, ckpt, tied=True)
    ref = run_distributed(gp.train, 1, ckpt, eval_only=True, ddp=False, tied=True)[0]
    pp2 = run_distributed(gp.train, 2, ckpt, pp=2, eval_only=True, ddp=False, tied=True)
    for loss in pp2:
        assert loss == pytest.approx(ref, abs=1e-6, rel=0)


def _fresh_eval(rank, world_size):
    from megatron_inserter.runtime import ParallelConfig, initialize_parallel
    from megatron_inserter.training.engine import configure_model_config, eval_step

    initialize_parallel(ParallelConfig(seed=999))
    chunks = gp.build_chunks(1, 1, None)
    configure_model_config(chunks, ddp=False)
    mbs = gp.microbatches_for_rank(gp.global_batches(1)[0], 0, 1)
    return eval_step(gp.forward_step, iter(mbs), chunks, len(mbs), gp.SEQ, gp.MBS)["lm loss"]
