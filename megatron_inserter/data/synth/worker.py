"""One work unit -> one shard and its completion manifest. Runs in a fresh process per unit."""

from __future__ import annotations

import os
import time

from megatron_inserter.data.synth.config import SynthConfig
from megatron_inserter.data.synth.corpus import parse_document
from megatron_inserter.data.synth.document import build_sample
from megatron_inserter.data.synth.plan import WorkUnit
from megatron_inserter.data.synth.shards import (
    ShardWriter,
    atomic_write_json,
    manifest_path,
    sample_key,
    shard_stem,
)
from megatron_inserter.data.synth.stats import SynthStats
from megatron_inserter.data.synth.tts.base import TTSBackend

PROGRESS_EVERY_S = 0.5


def process_unit(unit: WorkUnit, cfg: SynthConfig, backend: TTSBackend, report=None) -> SynthStats:
    """Synthesize every document of ``unit`` into its shard; write the manifest last.

    ``report(docs, speech_seconds)`` is called now and then with the increments since the last call.
    """
    t_start = time.perf_counter()
    stem = shard_stem(cfg.name, unit.rank, unit.shard_index)
    shard_name = f"{stem}.tar"
    stats = SynthStats()
    writer: ShardWriter | None = None
    keys: set[str] = set()
    pending_docs, pending_seconds, last_report = 0, 0.0, time.monotonic()
    try:
        for offset, raw in enumerate(unit.lines):
            stats.docs_read += 1
            pending_docs += 1
            doc, reason = parse_document(raw, unit.file.source, unit.first_line + offset, cfg.json_key)
            if doc is not None and sample_key(doc.id) in keys:
                doc, reason = None, "duplicate_id"
            if doc is not None:
                sample, reason, doc_stats = build_sample(doc, cfg, backend)
                stats.add(doc_stats)
                if sample is not None:
                    if writer is None:
                        writer = ShardWriter(os.path.join(cfg.output_dir, shard_name))
                    writer.add_sample(sample.key, sample.meta, sample.audio_members)
                    keys.add(sample.key)
                    pending_seconds += doc_stats.speech_seconds
            if reason is not None:
                stats.skip(reason)
            if report is not None and time.monotonic() - last_report >= PROGRESS_EVERY_S:
                report(pending_docs, pending_seconds)
                pending_docs, pending_seconds, last_report = 0, 0.0, time.monotonic()
        if writer is not None:
            stats.shard_bytes = writer.commit()
            stats.shards = 1
            writer = None
    finally:
        if writer is not None:
            writer.abort()
    if report is not None and (pending_docs or pending_seconds):
        report(pending_docs, pending_seconds)
    stats.worker_seconds = time.perf_counter() - t_start
    manifest = {
        "shard": shard_name if stats.shards else None,
        "input": unit.file.source,
        "first_line": unit.first_line,
        "num_lines": len(unit.lines),
        "unit_index": unit.unit_index,
        "stats": stats.to_dict(),
    }
    atomic_write_json(manifest_path(cfg.output_dir, stem), manifest)
    return stats
