"""Packing without cross-document attention (--reset-attention-mask, --reset-position-ids, --eod-mask-loss):
a packed sample's per-token losses equal those of its documents run one by one, at TP1, TP2 and PP2, with the
per-sample mask and with the flattened THD layout (an explicit mask on CPU), for both model families."""

import pytest
import torch

from megatron_inserter.data.indexed.dataset import document_positions, separate_documents
from megatron_inserter.models.documents import DocumentOptions
from tests.harness import run_distributed
from tests.models import documents_checks as dc

EOD = 0
TOKENS = torch.tensor([[5, 6, EOD, 7, EOD, EOD, 8, 9, 9],
                       [1, 2, 3, 4, 5, 6, 7, EOD, 3]])


def test_documents_end_with_their_eod_and_positions_restart_after_it():
    documents, positions = document_positions(TOKENS, EOD)
    assert documents.tolist() == [[0, 0, 0, 1, 1, 2, 3, 3, 3], [0, 0, 0, 0, 0, 0, 0, 0, 1]]
    assert positions.tolist() == [[0, 1, 2, 0, 1, 0, 0, 1, 2], [0, 1, 2, 3, 4, 5, 6, 7, 0]]


def test_separate_documents_resets_positions_and_masks_eod_inputs():
    batch = {"tokens": TOKENS, "loss_mask": torch.ones(2, 9), "position_ids": torch.arange(9).expand(2, 9)}
    out = separate_documents(batch, EOD, reset_position_ids=True, eod_mask_loss=True)
    assert torch.equal(out["position_ids"], document_positions(TOKENS, EOD)[1])
    assert out["loss_mask"].tolist()[0] == [1, 1, 0, 1, 0, 0, 1, 1, 1]
    assert torch.equal(batch["loss_mask"], torch.ones(2, 9))  # a copy: the input is unchanged
    same = separate_documents(batch, EOD, reset_position_ids=False, eod_mask_loss=False)
    assert torch.equal(same["position_ids"], batch["position_ids"]) and torch.equal(same["loss_mask"],
                                                                                    batch["loss_mask"])


def test_layout_masks_and_thd_boundaries_agree():
    layout = DocumentOptions(EOD).layout(TOKENS)
    mask = layout.attention_mask()
    assert mask.shape == (2, 1, 9, 9)
    # Position 3 (second document) sees itself and position 4 nothing; position 4 sees 3 and 4.
    assert (~mask[0, 0, 3]).nonzero().flatten().tolist() == [3]
    assert (~mask[0, 0, 4]).nonzero().flatten().tolist() == [3, 4]
    assert layout.cu_seqlens().tolist() == [0, 3, 5, 6, 9, 17, 18]
    flat = layout.flat_attention_mask()[0, 0]
    # The flattened mask is the per-sample one on the block diagonal, and blocks everything across samples.
    assert torch.equal(flat[:9, :9], mask[0, 0]) and torch.equal(flat[9:, 9:], mask[1, 0])
    assert flat[9:, :9].all()
    assert DocumentOptions(EOD, reset_attention_mask=False, reset_position_ids=False).layout(TOKENS) is None


@pytest.fixture(scope="module")
def results():
    return run_distributed(dc.suite, 2)


def test_rotary_reads_the_table_at_the_document_positions(results):
    r = results[0]["rotary"]
    assert r["shape"][:3] == (5, 2, 1) and r["equal"] and r["restored"]


def _check(result):
    assert set(result["diffs"]) == {"interleaved", "asr", "text", "cut-off"}
    assert result["scale"] > 1.0 and result["positions"] == 2 * dc.SEQ
    assert max(result["diffs"].values()) < 1e-6, result["diffs"]


@pytest.mark.parametrize("layout", list(dc.LAYOUTS))
@pytest.mark.parametrize("kind,thd", dc.CASES)
def test_packed_losses_equal_documents_alone(results, layout, kind, thd):
    on_last_stage = [r[(layout, kind, thd)] for r in results if (layout, kind, thd) in r]
    assert len(on_last_stage) == (1 if layout == "pp2" else 2)
    for result in on_last_stage:
        _check(result)


@pytest.mark.parametrize("layout", list(dc.LAYOUTS))
def test_without_the_reset_documents_see_each_other(results, layout):
    for r in results:
        if (layout, "inserter", False) in r:
            assert r[(layout, "inserter", False)]["without_reset"] > 1e-2
