"""One work unit -> one shard and its completion manifest. Runs in a fresh process per unit."""

from __future__ import annotations

import os
import time

from megatron_inserter.data.document import document_key
from megatron_inserter.data.synth.config import SynthConfig
from megatron_inserter.data.synth.corpus import make_document, read_line
from megatron_inserter.data.synth.interleave import DocumentJob
from megatron_inserter.data.synth.plan import WorkUnit
from megatron_inserter.data.synth.schedule import Scheduler
from megatron_inserter.data.synth.shards import ShardWriter, manifest_path, shard_stem, write_json
from megatron_inserter.data.synth.stats import SynthStats
from megatron_inserter.data.synth.tts.base import TTSBackend

PROGRESS_EVERY_S = 0.5
MAX_LISTED_SKIPS = 1000  # skipped lines listed (with line number and reason) in a manifest; all are counted


def _lines(unit: WorkUnit, cfg: SynthConfig, backend: TTSBackend, check: bool):
    """``((line, reason, skip detail, document), job or None)`` per line of the unit, in order."""
    claimed: dict[str, int] = {}  # sample key -> line that claimed the id, within this unit
    for offset, raw in enumerate(unit.lines):
        line = unit.first_line + offset
        record, doc_id, reason = read_line(raw, unit.file.source, line, cfg.json_keys)
        skip, doc = {}, None
        if doc_id is not None:
            key = document_key(doc_id)
            first = unit.duplicates.get(offset) or (
                f"{unit.file.source}:{claimed[key]}" if key in claimed else None)
            claimed.setdefault(key, line)
            if first is not None:
                reason, skip = "duplicate_id", {"id": doc_id, "first": first}
            else:
                doc, reason = make_document(record, doc_id, unit.file.source, line, cfg.json_keys)
        job = DocumentJob(doc, cfg, backend, check=check) if doc is not None else None
        yield (line, reason, skip, doc), job


def process_unit(unit: WorkUnit, cfg: SynthConfig, backend: TTSBackend, report=None, transcriber=None
                 ) -> SynthStats:
    """Synthesize every document of ``unit`` into its shard; write the manifest last.

    ``report(docs, speech_seconds)`` is called now and then with the increments since the last call.
    """
    t_start, cpu_start = time.perf_counter(), time.process_time()
    stem = shard_stem(cfg.name, unit.rank, unit.shard_index)
    shard_name = f"{stem}.tar"
    stats = SynthStats()
    writer: ShardWriter | None = None
    skipped_lines: list[dict] = []
    pending_docs, pending_seconds, last_report = 0, 0.0, time.monotonic()
    scheduler = Scheduler(backend, transcriber)
    try:
        for (line, reason, skip, doc), result in scheduler.run(_lines(unit, cfg, backend, transcriber is not None)):
            stats.docs_read += 1
            pending_docs += 1
            if result is not None:
                sample, reason, doc_stats = result
                stats.add(doc_stats)
                if sample is not None:
                    if writer is None:
                        writer = ShardWriter(os.path.join(cfg.output_dir, shard_name))
                    writer.add(sample.document, sample.audio)
                    pending_seconds += doc_stats.speech_seconds
                    if doc.removed_controls:
                        stats.docs_cleaned += 1
                        stats.control_chars_removed += doc.removed_controls
            if reason is not None:
                stats.skip(reason)
                if len(skipped_lines) < MAX_LISTED_SKIPS:
                    skipped_lines.append({"line": line, "reason": reason, **skip})
            if report is not None and time.monotonic() - last_report >= PROGRESS_EVERY_S:
                report(pending_docs, pending_seconds)
                pending_docs, pending_seconds, last_report = 0, 0.0, time.monotonic()
        if writer is not None:
            stats.shard_bytes = writer.commit()
            stats.shards = 1
            writer = None
    finally:
        scheduler.close()
        if writer is not None:
            writer.abort()
    if report is not None and (pending_docs or pending_seconds):
        report(pending_docs, pending_seconds)
    stats.tts_seconds += scheduler.tts_seconds
    for source in (backend, transcriber):
        if source is not None:
            stats.add(SynthStats.from_dict(source.collect_stats()))
    stats.worker_seconds = time.perf_counter() - t_start
    stats.worker_cpu_seconds = time.process_time() - cpu_start
    manifest = {
        "shard": shard_name if stats.shards else None,
        "input": unit.file.source,
        "first_line": unit.first_line,
        "num_lines": len(unit.lines),
        "unit_index": unit.unit_index,
        "stats": stats.to_dict(),
        "skipped_lines": skipped_lines,
    }
    write_json(manifest_path(cfg.output_dir, stem), manifest)
    return stats
