"""``inserter synth-filter``: the ASR round-trip check as a separate pass over finished shards, so ASR can run
on other machines than TTS.

    inserter synth-filter --shards shards/ --output-dir shards-checked/ \\
        --asr-url http://gpu07:8000/v1 --asr-model whisper-large-v3 --max-span-wer 0.2

Each shard of ``--shards`` is read through ``data.document``; every speech segment is transcribed and scored
like in ``inserter synth`` (WER for English, CER for Chinese, with ``eval.text_norm``). A segment within
``--max-span-wer`` keeps its audio (bytes unchanged) and records ``asr_wer``; one above it becomes text, merged
with the text around it, so the document text is unchanged; so does a segment whose audio does not decode
(``spans_failed``). A document left without speech is dropped (``asr_rejected``). The new shard has the
same name in ``--output-dir``, is written under a temporary name and renamed when complete, and its
manifest (``filter-manifests/NAME.json``) is written last: running the same command again skips finished
shards. A malformed document is a counted skip; a tar that breaks off keeps
the documents before the damage. ``filter-stats.json`` sums the counters.
"""

from __future__ import annotations

import glob
import io
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from megatron_inserter.data.document import (
    Segment,
    ShardDocument,
    ShardRecordError,
    SpeechSegment,
    TextSegment,
    from_members,
)
from megatron_inserter.data.synth.asr import transcriber_for
from megatron_inserter.data.synth.asr.base import Transcriber, round_trip_error
from megatron_inserter.data.synth.config import FilterConfig
from megatron_inserter.data.synth.shards import ShardWriter, iter_shard_members, read_manifest, write_json
from megatron_inserter.data.synth.stats import SynthStats, wer_bucket
from megatron_inserter.data.synth.tts.base import to_16k
from megatron_inserter.errors import DataError, UsageError

MANIFEST_DIR = "filter-manifests"
DOCS_PER_ROUND = 64  # documents whose segments are transcribed together


def shard_files(directory: str) -> list[str]:
    if not os.path.isdir(directory):
        raise UsageError(f"--shards {directory!r} is not a directory")
    files = sorted(p for p in glob.glob(os.path.join(directory, "*.tar")) if not os.path.basename(p).startswith("."))
    if not files:
        raise UsageError(f"--shards {directory!r} holds no .tar shards")
    return files


def decode_segment_audio(data: bytes) -> np.ndarray | None:
    """FLAC/WAV bytes of a speech segment -> 16 kHz mono float32; ``None`` when they are not audio."""
    import soundfile as sf

    try:
        audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return None
    return to_16k(audio.mean(axis=1), rate) if audio.size else None


def transcribe_all(transcriber: Transcriber, clips: list[tuple[np.ndarray, str]], pool) -> list[str | None]:
    if not clips:
        return []
    if transcriber.concurrent:
        return list(pool.map(lambda clip: transcriber.transcribe_one(*clip), clips))
    return transcriber.transcribe(clips)


def filter_document(doc: ShardDocument, audio: dict[str, bytes], transcripts: dict[int, str | None],
                    max_wer: float | None, stats: SynthStats) -> tuple[ShardDocument | None, dict[str, bytes]]:
    """``doc`` with each speech segment kept (``asr_wer`` recorded, audio renamed in order) or turned into
    text; ``(None, {})`` when no speech is left."""
    segments: list[Segment] = []
    members: dict[str, bytes] = {}
    for i, seg in enumerate(doc.segments):
        if isinstance(seg, SpeechSegment):
            language = seg.language or doc.lang or "en"
            transcript = transcripts.get(i)
            wer = round_trip_error(seg.text, transcript, language)
            if i in transcripts:
                stats.asr_checked += 1
                if wer is not None:
                    key = wer_bucket(wer)
                    stats.asr_wer_hist[key] = stats.asr_wer_hist.get(key, 0) + 1
                    stats.asr_wer_sum += wer
            if i in transcripts and (max_wer is None or (wer is not None and wer <= max_wer)
                                     or (wer is None and transcript is not None)):
                name = f"{len(members)}.flac" if seg.audio.endswith(".flac") else f"{len(members)}.wav"
                members[name] = audio[seg.audio]
                segments.append(replace(seg, audio=name, asr_wer=wer))
                stats.spans += 1
                stats.speech_seconds += seg.duration
                continue
            if i in transcripts:
                stats.spans_asr_rejected += 1
            seg = TextSegment(seg.text)
        if segments and isinstance(segments[-1], TextSegment) and isinstance(seg, TextSegment):
            segments[-1] = TextSegment(segments[-1].text + seg.text)
        else:
            segments.append(TextSegment(seg.text) if isinstance(seg, TextSegment) else seg)
    if not members:
        return None, {}
    return ShardDocument(doc.id, tuple(segments), lang=doc.lang, source=doc.source), members


def filter_shard(path: str, cfg: FilterConfig, transcriber: Transcriber, pool) -> SynthStats:
    """One shard -> its checked copy in ``cfg.output_dir`` and its manifest (written last)."""
    name = os.path.basename(path)
    stats = SynthStats()
    damaged: list[str] = []
    skipped: list[dict] = []
    writer = ShardWriter(os.path.join(cfg.output_dir, name))
    try:
        batch: list[tuple[ShardDocument, dict[str, bytes]]] = []

        def flush():
            clips, where = [], []
            for d, (doc, audio) in enumerate(batch):
                for i, seg in enumerate(doc.segments):
                    if isinstance(seg, SpeechSegment):
                        clip = decode_segment_audio(audio[seg.audio])
                        if clip is None:  # cannot be checked: becomes text
                            stats.spans_failed += 1
                            skipped.append({"id": doc.id, "segment": i, "reason": "bad_audio"})
                            continue
                        clips.append((clip, seg.language or doc.lang or "en"))
                        where.append((d, i))
            found: list[dict[int, str | None]] = [{} for _ in batch]
            for (d, i), text in zip(where, transcribe_all(transcriber, clips, pool)):
                found[d][i] = text
            for (doc, audio), transcripts in zip(batch, found):
                new, members = filter_document(doc, audio, transcripts, cfg.max_span_wer, stats)
                if new is None:
                    stats.skip("asr_rejected")
                    skipped.append({"id": doc.id, "reason": "asr_rejected"})
                    continue
                writer.add(new, members)
                stats.docs_written += 1
            batch.clear()

        for key, members in iter_shard_members(path, damaged):
            stats.docs_read += 1
            try:
                doc, audio = from_members(members, shard=path)
            except ShardRecordError as e:
                stats.skip(e.reason)
                skipped.append({"key": key, "reason": e.reason, "detail": e.what})
                continue
            batch.append((doc, audio))
            if len(batch) >= DOCS_PER_ROUND:
                flush()
        flush()
        if damaged:
            stats.skip("shard_truncated")
        stats.shard_bytes = writer.commit()
        stats.shards = 1
        writer = None
    finally:
        if writer is not None:
            writer.abort()
    stats.add(SynthStats.from_dict(transcriber.collect_stats()))
    write_json(os.path.join(cfg.output_dir, MANIFEST_DIR, f"{name}.json"),
               {"shard": name, "source": os.path.abspath(path), "stats": stats.to_dict(), "skipped": skipped[:1000],
                "damaged": damaged})
    return stats


def is_filtered(cfg: FilterConfig, name: str) -> bool:
    manifest = os.path.join(cfg.output_dir, MANIFEST_DIR, f"{name}.json")
    if not os.path.exists(manifest) or not os.path.exists(os.path.join(cfg.output_dir, name)):
        return False
    try:
        read_manifest(manifest)
    except (OSError, DataError):
        return False
    return True


def run_filter(cfg: FilterConfig) -> SynthStats:
    files = shard_files(cfg.shards)
    os.makedirs(os.path.join(cfg.output_dir, MANIFEST_DIR), exist_ok=True)
    transcriber = transcriber_for(cfg)
    pool = ThreadPoolExecutor(max(1, transcriber.concurrency), thread_name_prefix="asr")
    total = SynthStats()
    t0 = time.monotonic()
    done = resumed = 0
    try:
        for path in files:
            name = os.path.basename(path)
            if is_filtered(cfg, name):
                resumed += 1
                continue
            s = filter_shard(path, cfg, transcriber, pool)
            done += 1
            if cfg.progress:
                print(f"[synth-filter] {name}: {s.docs_written}/{s.docs_read} documents kept, {s.spans} segments "
                      f"kept, {s.spans_asr_rejected} turned into text", file=sys.stderr, flush=True)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        transcriber.close()
    for path in files:
        manifest = os.path.join(cfg.output_dir, MANIFEST_DIR, f"{os.path.basename(path)}.json")
        if os.path.exists(manifest):
            total.add(SynthStats.from_dict(read_manifest(manifest)["stats"]))
    summary = total.summary()
    summary.update({"shards_done_this_run": done, "shards_resumed": resumed, "max_span_wer": cfg.max_span_wer,
                    "asr_model": cfg.asr_model, "wall_seconds_this_run": time.monotonic() - t0,
                    "speech_ratio": None, "words": None, "spoken_words": None})
    write_json(os.path.join(cfg.output_dir, "filter-stats.json"), summary)
    return total

