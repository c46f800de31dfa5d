"""Tensor, pipeline, virtual-pipeline and data parallel training match a single process."""

import pytest

from tests.harness import run_distributed
from tests.runtime import gpt_parallel as gp


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    ckpt = str(tmp_path_factory.mktemp("ref") / "ckpt")
    run_distributed(gp.make_reference_checkpoint, 1, ckpt)
    baseline = run_distributed(gp.train, 1, ckpt)[0]
    return ckpt, baseline


@pytest.mark.parametrize(
    "world,tp,pp,vp",
    [(2, 2, 1, None), (2, 1, 2, None), (2, 1, 2, 2), (4, 2, 2, None)],
    ids=["tp2", "pp2", "pp2-vpp2", "tp2xpp2"],
)
def test_losses_match_single_process(reference, world, tp, pp, vp):
    ckpt, baseline = reference
    results = run_distributed(gp.train, world, ckpt, tp=tp, pp=pp, vp=vp)
    assert len(baseline) == 3
    assert baseline[0] > baseline[-1]  # it trains
    for per_rank in results:
        assert per_rank == pytest.approx(baseline, abs=1e-6, rel=0)


def test_data_parallel_matches_single_process(reference):
    ckpt, baseline = reference
    results = run_distributed(gp.train, 2, ckpt)  # DP=2, mcore DDP + Megatron optimizer
    for per_rank in results:
        assert per_rank == pytest.approx(baseline, abs=1e-6, rel=0)
