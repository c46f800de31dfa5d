"""One unit -> one shard + manifest: duplicates, counting, skipped lines listed, progress reports, empty units."""

import json
import os

from megatron_inserter.data.synth.config import SynthConfig
from megatron_inserter.data.synth.plan import WorkUnit
from megatron_inserter.data.synth.worker import process_unit
from megatron_inserter.data.text_inputs import InputFile
from tests.data.synth.test_interleave import TEXT, FakeBackend


def _unit(lines, index=0):
    return WorkUnit(index, 0, index, InputFile("/x/a.jsonl", "a.jsonl"), 11, [line.encode() for line in lines])


def test_unit_writes_shard_then_manifest_and_counts_everything(tmp_path):
    cfg = SynthConfig(input=("x",), output_dir=str(tmp_path), name="t")
    os.makedirs(tmp_path / "manifests")
    doc = json.dumps({"id": "same", "text": TEXT})
    lines = [doc, json.dumps({"text": TEXT}), doc, "{bad", json.dumps({"text": "Tiny."})]
    reports = []
    stats = process_unit(_unit(lines), cfg, FakeBackend(), report=lambda d, s: reports.append((d, s)))
    assert stats.docs_read == 5 and stats.docs_written == 2 and stats.shards == 1
    assert stats.skipped == {"duplicate_id": 1, "invalid_json": 1, "too_short": 1}
    assert sum(d for d, _ in reports) == 5 and abs(sum(s for _, s in reports) - stats.speech_seconds) < 1e-6
    manifest = json.loads((tmp_path / "manifests" / "t-00000-000000.json").read_text())
    assert manifest["shard"] == "t-00000-000000.tar" and manifest["first_line"] == 11
    assert manifest["stats"]["docs_written"] == 2
    assert manifest["skipped_lines"] == [
        {"line": 13, "reason": "duplicate_id", "id": "same", "first": "a.jsonl:11"},
        {"line": 14, "reason": "invalid_json"}, {"line": 15, "reason": "too_short"}]
    assert os.path.getsize(tmp_path / "t-00000-000000.tar") == stats.shard_bytes
    assert sorted(os.listdir(tmp_path)) == ["manifests", "t-00000-000000.tar"]


def test_unit_without_any_written_document_has_a_manifest_but_no_shard(tmp_path):
    cfg = SynthConfig(input=("x",), output_dir=str(tmp_path), name="t")
    os.makedirs(tmp_path / "manifests")
    stats = process_unit(_unit(["", "{bad"], index=3), cfg, FakeBackend())
    assert stats.shards == 0 and stats.docs_read == 2
    manifest = json.loads((tmp_path / "manifests" / "t-00000-000003.json").read_text())
    assert manifest["shard"] is None
    assert sorted(os.listdir(tmp_path)) == ["manifests"]
