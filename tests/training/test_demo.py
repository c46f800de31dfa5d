"""``inserter demo --smoke`` runs the whole pipeline end to end, and a re-run skips finished stages."""

import json
import os

from megatron_inserter.demo.stages import SMOKE, STAGES
from megatron_inserter.training.checkpointing import read_tracker
from megatron_inserter.training.metrics import read_metrics
from tests.harness import run_distributed


def _demo(rank, world_size, workdir):
    from megatron_inserter.demo.cli import main

    rc = main(["--workdir", workdir, "--smoke"])
    with open(os.path.join(workdir, "summary.json"), encoding="utf-8") as f:
        return rc, json.load(f)


def test_smoke_demo_end_to_end_then_resumed(tmp_path):
    workdir = str(tmp_path / "demo")
    rc, summary = run_distributed(_demo, 1, workdir, timeout=600)[0]
    assert rc == 0
    assert list(summary["stage_seconds"]) == list(STAGES)
    assert not any(s["skipped"] for s in summary["stage_seconds"].values())
    for stage in STAGES:
        assert os.path.isfile(os.path.join(workdir, "stages", f"{stage}.done.json"))

    # Real data went through: both languages synthesized, three datasets blended.
    assert summary["data"]["docs_written"] == SMOKE.num_docs and summary["data"]["spans"] > 0
    assert summary["data"]["speech_seconds"] > 0 and summary["data"]["text_tokens"] > 0
    train = summary["training"]
    assert train["iterations"] == SMOKE.train_iters == read_tracker(os.path.join(workdir, "train"))
    assert train["end"]["lm loss"] < train["start"]["lm loss"]  # it learned something
    for when in ("start", "end"):  # the modality-gap losses were measured on speech-following text
        assert train[when]["loss after speech"] is not None and train[when]["loss after text"] is not None
    records = read_metrics(summary["files"]["metrics"])
    assert [r["iteration"] for r in records if r["kind"] == "train"] == list(range(1, SMOKE.train_iters + 1))
    assert os.path.getsize(summary["files"]["loss_plot"]) > 1000
    gen = summary["generation"]
    assert gen["speech_seconds"] > 0 and gen["spoken_span"] and 0 < gen["new_tokens"] <= SMOKE.max_new_tokens

    rc, again = run_distributed(_demo, 1, workdir, timeout=300)[0]
    assert rc == 0 and all(s["skipped"] for s in again["stage_seconds"].values())
    assert again["training"] == train and again["generation"] == gen
