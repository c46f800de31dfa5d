"""A run SIGKILLed mid-way and restarted with the same arguments ends with exactly the samples of an
uninterrupted run: nothing lost, nothing duplicated, shards byte-identical."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.data.synth.conftest import shard_bytes, synth_args

REPO = Path(__file__).resolve().parents[3]


def _complete(out: Path) -> int:
    d = out / "manifests"
    return len([p for p in os.listdir(d) if p.endswith(".json") and not p.startswith(".")]) if d.exists() else 0


def test_sigkill_then_resume_equals_uninterrupted_run(reference_run, tmp_path):
    corpus, ref_out, _ = reference_run
    total_units = _complete(ref_out)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "megatron_inserter.data.synth.cli", *synth_args(corpus, out, "--workers", "1")]
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _complete(out) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole job, workers included, as a scheduler would
    proc.wait()
    done_at_kill = _complete(out)
    assert 0 < done_at_kill < total_units, "the kill must land mid-run"
    assert not (out / "stats.json").exists()

    resumed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{done_at_kill} already done" in resumed.stderr
    assert shard_bytes(out) == shard_bytes(ref_out)
    assert not [p for p in os.listdir(out) if p.startswith(".")], "no temporary file may remain"
    stats, ref_stats = (json.loads((d / "stats.json").read_text()) for d in (out, ref_out))
    for key in ("docs_read", "docs_written", "skipped", "spans", "spoken_words", "words", "speech_seconds"):
        assert stats[key] == ref_stats[key]
