"""The InSerter model (speech in the batch, encoder on the first stage) trains identically under tensor,
pipeline, virtual-pipeline, sequence and data parallelism; text-only batches keep data parallelism alive."""

import pytest

from tests.harness import run_distributed
from tests.models import inserter_parallel as ip

TWO_PROCESS = [n for n, (world, _, _) in ip.LAYOUTS.items() if world == 2]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    ckpt = str(tmp_path_factory.mktemp("inserter-ref") / "ckpt")
    baseline = run_distributed(ip.make_reference, 1, ckpt)[0]
    return ckpt, baseline


@pytest.fixture(scope="module")
def two_process(reference):
    return run_distributed(ip.two_process_suite, 2, reference[0])


def test_reference_trains(reference):
    _, baseline = reference
    assert len(baseline) == 3
    assert baseline[0] > baseline[-1]


@pytest.mark.parametrize("layout", TWO_PROCESS)
def test_two_process_layouts_match_single_process(reference, two_process, layout):
    _, baseline = reference
    for per_rank in two_process:
        assert per_rank[layout] == pytest.approx(baseline, abs=1e-6, rel=0)


def test_tp2_x_pp2_matches_single_process(reference):
    ckpt, baseline = reference
    results = run_distributed(ip.run_layouts, 4, ckpt, ["tp2xpp2"])
    for per_rank in results:
        assert per_rank["tp2xpp2"] == pytest.approx(baseline, abs=1e-6, rel=0)


def test_text_only_batches_match_plain_gpt_under_data_parallel(two_process):
    for per_rank in two_process:
        inserter, gpt = per_rank["text-only"]
        assert len(inserter) == 2
        assert inserter == pytest.approx(gpt, abs=1e-6, rel=0)


def test_context_parallel_slicing_matches_megatron_and_cpu_is_refused(two_process):
    for per_rank in two_process:
        cp = per_rank["cp"]
        assert cp["same_as_megatron"]
        assert cp["audio_kept"]
        assert cp["local_len"] == ip.SEQ // 2
        assert cp["refusal"] is not None and "Transformer Engine" in cp["refusal"]


def test_encoder_and_adapter_live_only_in_the_first_virtual_chunk_of_stage_0(two_process):
    rank0, rank1 = (r["stage-keys"] for r in two_process)
    assert rank0 == [["adapter", "encoder", "language_model"], ["language_model"]]
    assert rank1 == [["language_model"], ["language_model"]]
