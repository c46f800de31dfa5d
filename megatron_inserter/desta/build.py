"""``inserter desta build``: synthesized shards -> one DeSTA2 seed per speech segment.

Two passes, so that the buckets can come from the whole distribution and a killed run loses nothing:

1. Every speech segment of every shard is decoded, written as a 16 kHz wav under the audio folder
   (``<output stem>_audio/<2 hex>/<id>.wav``, atomically) and measured (``desta.measure``; with
   ``--workers N``, N processes that die with this one measure batches of clips, in order); its record goes
   to ``<audio folder>/measurements.jsonl`` (appended and fsynced one by one). A segment whose record and
   wav exist is skipped, so a rerun resumes where the last one stopped.
2. The tercile buckets are fitted on all records of this run's segments, and the seeds file (header, then
   one row per segment in shard order) is written atomically.

A seed id is ``<document key>-<n>``: the n-th speech segment of the document (document keys are the
SHA-1 of the document id, as in the shards). Bad documents, undecodable or empty audio and segments
without text are counted skips (the first few on stderr), never fatal.
"""

from __future__ import annotations

import io
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from megatron_inserter.data.indexed.audio_store import AudioDecodeError, decode_audio, int16_to_float
from megatron_inserter.data.indexed.sources import SHARD_EXTENSIONS, shard_documents
from megatron_inserter.data.text_inputs import SkipReport
from megatron_inserter.desta.measure import SAMPLE_RATE, measure
from megatron_inserter.desta.seeds import Buckets, header_record, noise_label, seed_transcript
from megatron_inserter.desta.voices import voice_of
from megatron_inserter.errors import UsageError
from megatron_inserter.eval.records import RecordLog, dumps
from megatron_inserter.files import atomic_write, write_bytes_atomic

MEASURE_VERSION = 1  # records measured by another version are measured again
MIN_SECONDS = 0.1
PROG = "inserter desta build"


@dataclass
class BuildConfig:
    shards: list[str]  # shard files or folders holding them
    output: Path
    audio_dir: Path | None = None  # default: <output stem>_audio next to the output
    limit: int = 0  # stop after this many segments (0: all)
    workers: int = 1  # processes measuring clips
    progress: bool = True


@dataclass
class BuildResult:
    seeds: int = 0
    measured: int = 0
    resumed: int = 0
    skipped: Counter = field(default_factory=Counter)
    buckets: Buckets | None = None


def shard_files(inputs: list[str]) -> list[str]:
    files = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(os.path.join(item, n) for n in os.listdir(item)
                           if n.endswith(SHARD_EXTENSIONS) and not n.startswith("."))
        elif os.path.isfile(item):
            found = [item]
        else:
            raise UsageError(f"--shards {item}: no such file or folder (give synthesized shards, *.tar)")
        if not found:
            raise UsageError(f"--shards {item} holds no shards (*.tar); point it at `inserter synth --output-dir`")
        files += found
    return files


def default_audio_dir(output: Path) -> Path:
    name = output.name.split(".")[0] or "seeds"
    return output.parent / f"{name}_audio"


def encode_wav(audio: np.ndarray) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.asarray(audio, dtype=np.int16), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _segments(path: str, report: SkipReport):
    """(seed id, segment, document, encoded audio, index) of each speech segment of a shard."""
    for _, doc, audio in shard_documents(path, report):
        for n, seg in enumerate(doc.speech):
            yield f"{doc.key}-{n}", seg, doc, audio[seg.audio], n


def _record(seed_id: str, seg, doc, pcm: np.ndarray, measured: dict, rel_audio: str, shard: str, n: int) -> dict:
    voice = voice_of(seg, doc.lang)
    c = seg.controls
    return {
        "id": seed_id, "version": MEASURE_VERSION, "audio": rel_audio,  # inside the audio folder
        "text": seg.text,
        "duration": round(len(pcm) / SAMPLE_RATE, 4),
        "measured": measured,
        "voice": {"gender": voice.gender, "accent": voice.accent, "language": voice.language, "voice": voice.voice},
        "recorded": {"speaker": seg.speaker, "tts": seg.tts, "tts_model": seg.tts_model,
                     "controls": {"speed": c.speed, "pitch": c.pitch, "volume": c.volume, "noise": c.noise,
                                  "snr_db": c.snr_db}},
        "source": {"shard": os.path.basename(shard), "document": doc.id, "segment": n},
    }


def _reusable(record: dict | None) -> bool:
    return (record is not None and record.get("version") == MEASURE_VERSION
            and all(isinstance(record.get(k), dict) for k in ("measured", "voice", "recorded", "source")))


def seed_row(record: dict, buckets: Buckets, audio_base: str) -> dict:
    """The seeds-file row of a measurement record; ``audio_base``: the audio folder, relative to the seeds
    file's folder."""
    measured, voice = record["measured"], record["voice"]
    snr = record["recorded"]["controls"].get("snr_db")
    attributes = {
        "gender": voice["gender"], "accent": voice["accent"], "language": voice["language"],
        "pitch": buckets.label("pitch", measured, voice["gender"]), "speed": buckets.label("speed", measured),
        "volume": buckets.label("volume", measured), "noise": noise_label(snr, bool(measured.get("noise_free"))),
    }
    attributes = {k: v for k, v in attributes.items() if v is not None}
    if snr is not None:
        attributes["snr_db"] = snr
    return {"id": record["id"], "audio": os.path.join(audio_base, record["audio"]), "text": record["text"],
            "duration": record["duration"],
            "seed": seed_transcript(record["text"], record["duration"], attributes), "attributes": attributes,
            "measured": measured, "recorded": record["recorded"], "source": record["source"]}


def _measure(job: tuple[np.ndarray, str]) -> dict:
    pcm, text = job
    return measure(int16_to_float(pcm), text).as_dict()


def _start_workers(n: int):
    """A pool of ``n`` spawned processes that die with this one (None for ``n <= 1``)."""
    if n <= 1:
        return None
    import multiprocessing as mp

    from megatron_inserter.lifetime import die_with_parent

    return mp.get_context("spawn").Pool(n, initializer=die_with_parent, initargs=(os.getpid(),))


def build(config: BuildConfig) -> BuildResult:
    files = shard_files(config.shards)
    output = Path(config.output)
    audio_dir = Path(config.audio_dir) if config.audio_dir else default_audio_dir(output)
    report = SkipReport(prog=PROG)
    result = BuildResult(skipped=report.counts)
    order: list[str] = []
    seen: set[str] = set()
    pending: list[tuple] = []  # segments decoded and waiting to be measured
    batch = max(1, config.workers) * 16
    bar = _progress(config.progress)
    pool = _start_workers(config.workers)

    def measure_pending(log: RecordLog) -> None:
        jobs = [(pcm, seg.text) for _, seg, _, pcm, _, _, _ in pending]
        measured = pool.map(_measure, jobs) if pool is not None else [_measure(job) for job in jobs]
        for (seed_id, seg, doc, pcm, rel, path, n), values in zip(pending, measured):
            write_bytes_atomic(audio_dir / rel, encode_wav(pcm))
            log.append(_record(seed_id, seg, doc, pcm, values, rel, path, n))
        result.measured += len(pending)
        if bar is not None:
            bar.update(len(pending))
        pending.clear()

    try:
        with RecordLog(audio_dir / "measurements.jsonl", key="id") as log:
            for path in files:
                if config.limit and len(order) >= config.limit:
                    break
                for seed_id, seg, doc, data, n in _segments(path, report):
                    if config.limit and len(order) >= config.limit:
                        break
                    where = f"{path}: document {doc.id!r} segment {n}"
                    if seed_id in seen:
                        report.add("duplicate_id", where, f"seed id {seed_id} already came from another document "
                                                          "with the same id; this segment is left out")
                        continue
                    rel = f"{seed_id[:2]}/{seed_id}.wav"
                    if _reusable(log.get(seed_id)) and (audio_dir / rel).is_file():
                        seen.add(seed_id)
                        order.append(seed_id)
                        result.resumed += 1
                        continue
                    if not seg.text.strip():
                        report.add("no_text", where, "the speech segment has no transcript")
                        continue
                    try:
                        pcm = decode_audio(data)
                    except AudioDecodeError as err:
                        report.add(err.reason, where, str(err))
                        continue
                    if len(pcm) < MIN_SECONDS * SAMPLE_RATE:
                        report.add("too_short", where, f"{len(pcm)} samples, under {MIN_SECONDS} s")
                        continue
                    seen.add(seed_id)
                    order.append(seed_id)
                    pending.append((seed_id, seg, doc, pcm, rel, path, n))
                    if len(pending) >= batch:
                        measure_pending(log)
            measure_pending(log)
            records = [log.get(i) for i in order]
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        if bar is not None:
            bar.close()
    buckets = Buckets.fit(records)
    audio_base = os.path.relpath(audio_dir, output.parent)
    rows = [seed_row(r, buckets, audio_base) for r in records]
    stats = {"shards": len(files), "seeds": len(rows), "measured_this_run": result.measured,
             "resumed": result.resumed, "skipped": dict(report.counts)}
    with atomic_write(output, "w") as f:
        f.write(dumps(header_record(buckets, stats)) + "\n")
        for row in rows:
            f.write(dumps(row) + "\n")
    result.seeds, result.buckets = len(rows), buckets
    return result


def _progress(enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(desc="measure", unit="clip", file=sys.stderr, dynamic_ncols=True)
