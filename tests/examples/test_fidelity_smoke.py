"""examples/fidelity: the gap computation on hand-checkable cases, the probe's held-out split, and the whole
experiment at smoke scale (every stage, four arms, well-formed finite metrics)."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.harness import run_distributed

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIDELITY = os.path.join(ROOT, "examples", "fidelity")
sys.path.insert(0, FIDELITY)

import gap
import probe

PLACEHOLDER = 7


class LabelLoss(torch.nn.Module):
    """A stand-in model whose per-token loss is known: the label id, plus 1 in rows that carry speech."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.clips_seen = []

    def forward(self, tokens, positions, mask, labels=None, audio=None, audio_lengths=None):
        self.clips_seen.append(0 if audio is None else int(audio.shape[0]))
        speech = (tokens == PLACEHOLDER).any(dim=1, keepdim=True).float()
        return labels.float() + speech


def test_target_losses_score_exactly_the_continuation_tokens():
    model = LabelLoss()
    seqs = [gap.Sequence([1, 20, 30, 40, 50], [], 2),  # targets 40, 50
            gap.Sequence([1, 9, 8, 7, 7, 6, 11, 12, 13], [np.zeros(400, np.float32)], 3)]  # 11, 12, 13 (+1 each)
    losses = gap.target_losses(model, seqs, pad_id=0, batch_size=8)
    assert losses == [(90.0, 2), (36.0 + 3, 3)]
    assert model.clips_seen == [1]  # the clip went with its batch
    # one at a time: the same numbers (padding never counts)
    assert gap.target_losses(model, seqs, pad_id=0, batch_size=1) == losses


def test_gap_is_zero_for_identical_prefixes_and_exact_on_a_known_case():
    model = LabelLoss()
    written = gap.Sequence([1, 5, 6, 10, 20], [], 2)
    spoken = gap.Sequence([1, 5, 7, 7, 10, 20], [np.zeros(400, np.float32)], 2)
    same = gap.modality_gap(model, [(written, written)], pad_id=0)
    assert same.gap == 0.0 and same.targets == 2 and same.pairs == 1
    known = gap.modality_gap(model, [(spoken, written)], pad_id=0)
    assert known.written_loss == 15.0 and known.spoken_loss == 16.0 and known.gap == 1.0


def test_probe_never_trains_a_pair_it_asks():
    train, held = probe.items()
    assert len(held) == len(probe.WORDS) and len(train) == 3 * len(probe.WORDS)
    trained_text = {d["text"] for d in probe.training_documents(2)}
    for item in held:
        assert item.document() not in trained_text
    assert {i.instruction.split()[3] for i in held} == set(probe.WORDS)  # every word is asked once
    assert probe.is_right(" BREAD. Instruction", "BREAD") and not probe.is_right("bread", "BREAD")
    assert probe.is_right("bread bread bread.", "bread bread bread")


def _zero_gap_with_the_trained_model(rank, world_size, workdir):
    sys.path.insert(0, FIDELITY)
    import evaluate

    from megatron_inserter.inference.loading import load_for_inference

    ckpt = evaluate.checkpoints(os.path.join(workdir, "arms", "b"))[-1][1]
    loaded = load_for_inference(ckpt, initialize=True)
    docs = evaluate.heldout_documents(os.path.join(workdir, "shards", "heldout"))
    pairs = gap.pairs_from_documents(docs, loaded.tokenizer, loaded.config.frame_spec(), 32)[:4]
    pad = loaded.tokenizer.pad_id
    written = gap.modality_gap(loaded.model, [(w, w) for _, w in pairs], pad)
    spoken = gap.modality_gap(loaded.model, [(s, s) for s, _ in pairs], pad)
    real = gap.modality_gap(loaded.model, pairs, pad)
    return written.gap, spoken.gap, real.gap, real.targets, len(pairs)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_smoke_experiment_end_to_end(tmp_path):
    workdir = str(tmp_path / "fidelity")
    done = subprocess.run([sys.executable, os.path.join(FIDELITY, "run.py"), "--workdir", workdir, "--scale", "smoke",
                           "--corpus", "demo"], check=False, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(os.path.join(workdir, "results.json"), encoding="utf-8") as f:
        results = json.load(f)
    arms = results["arms"]
    assert [r["arm"] for r in arms] == ["a", "b", "c", "d"]
    for r in arms:
        for key in ("gap", "spoken_loss", "written_loss", "asr_wer"):
            assert math.isfinite(r[key]), (r["arm"], key)
        assert r["spoken_loss"] > 0 and r["written_loss"] > 0 and r["asr_wer"] >= 0
        assert 0 <= r["spoken_accuracy"] <= 1 and 0 <= r["written_accuracy"] <= 1
        assert r["probe_items"] == len(probe.WORDS) and r["targets"] > 0
        assert [s["iteration"] for s in r["gap_by_step"]] == [0, 2, 4]  # the text LM, then every checkpoint
        assert r["gap_by_step"][-1]["gap"] == r["gap"]
    assert arms[0]["gap_vs_a"] == 1.0
    # every arm started from the same text LM
    assert len({r["gap_by_step"][0]["gap"] for r in arms}) == 1
    # arm d's interleaved data is half of arm b's
    sizes = results["stages"]["preprocess"]
    assert 0 < sizes["word_half"] < sizes["word"]
    with open(os.path.join(workdir, "RESULTS.md"), encoding="utf-8") as f:
        md = f.read()
    for r in arms:
        assert f"| {r['arm']}: " in md
    assert os.path.getsize(os.path.join(workdir, "gap_by_step.png")) > 1000

    written, spoken, real, targets, n = run_distributed(_zero_gap_with_the_trained_model, 1, workdir, timeout=300)[0]
    assert n > 0 and targets > 0
    assert written == 0.0 and spoken == 0.0  # identical prefixes: exactly no gap
    assert math.isfinite(real) and real != 0.0
