"""InserterModel: speech frames land exactly in their placeholder runs, counts are checked, and the freeze
switches keep frozen weights bitwise unchanged through optimizer steps."""

import pytest

from tests.harness import run_distributed
from tests.models import model_checks


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    ckpt = str(tmp_path_factory.mktemp("inserter-model") / "ckpt")
    return run_distributed(model_checks.model_suite, 1, ckpt)[0]


def test_each_placeholder_run_gets_its_own_clip_frames(suite):
    p = suite["placement"]
    assert p["num_clips"] == p["num_runs"] > 2  # several clips, some sharing a row
    assert p["placeholders"] > 0
    assert max(p["diffs"]) < 1e-5
    assert p["changed"] > 1e-3  # the frames differ from the placeholder's own embedding
    assert p["text_kept"]


def test_placeholder_frame_count_mismatch_names_both_counts(suite):
    p = suite["placement"]
    assert p["error"] is not None
    assert f"{p['placeholders'] - 1} audio placeholder tokens" in p["error"]
    assert f"{p['placeholders']} encoder frames" in p["error"]


@pytest.mark.parametrize("case,frozen", [("encoder+llm", {"encoder", "language_model"}), ("adapter", {"adapter"})])
def test_frozen_weights_stay_bitwise_equal_and_others_move(suite, case, frozen):
    report = suite["freezing"][case]
    for part, r in report.items():
        assert r["count"] > 0
        if part in frozen:
            assert r["frozen"]
            assert len(r["unchanged"]) == r["count"], part
        else:
            assert r["unchanged"] == [], (part, r["unchanged"])
