#!/usr/bin/env python3
"""Benchmark `inserter synth` with the espeak backend: x real time per core and documents/s, 1 vs 2 workers.

    .venv/bin/python tools/benchmarks/bench_synth.py [--docs 400] [--workdir DIR]

The corpus is generated from the demo corpus's sentences with a fixed seed (English and Chinese mixed).
Baselines measured in the same run: the 1-worker run for the 2-worker speed-up, and raw in-process
libespeak-ng synthesis of the same span texts (no resampling, no FLAC, no shards) for the pipeline's
per-core efficiency.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(REPO, "megatron_inserter", "assets", "demo_corpus.jsonl")


def make_corpus(path: str, n_docs: int, seed: int = 0) -> None:
    with open(DEMO, encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    pools = {"en": [], "zh": []}
    for r in records:
        splitter = r"(?<=[.!?])\s+" if r["lang"] == "en" else r"(?<=[。！？])"
        pools[r["lang"]] += [s for s in re.split(splitter, r["text"]) if s.strip()]
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n_docs):
            lang = "zh" if rng.random() < 0.4 else "en"
            sents = rng.sample(pools[lang], rng.randint(4, 8))
            text = ("" if lang == "zh" else " ").join(sents)
            f.write(json.dumps({"id": f"bench-{i}", "lang": lang, "text": text}, ensure_ascii=False) + "\n")


def run_synth(corpus: str, out: str, workers: int) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "megatron_inserter.data.synth.cli", "--input", corpus, "--output-dir", out,
           "--workers", str(workers), "--shard-size", "25", "--no-progress"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    with open(os.path.join(out, "stats.json")) as f:
        return wall, json.load(f)


def raw_espeak_x_real_time(out: str, limit: int = 300) -> float:
    """Span texts of a finished run spoken by bare libespeak-ng calls (22.05 kHz int16, nothing else)."""
    import glob
    import tarfile

    from megatron_inserter.data.synth.speakers import EspeakSpeaker
    from megatron_inserter.data.synth.tts.espeak import EspeakLibrary

    spans = []
    for shard in sorted(glob.glob(os.path.join(out, "*.tar"))):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".json"):
                    meta = json.load(tar.extractfile(m))
                    spans += [(s["text"], s["speaker"]) for s in meta["segments"] if s["type"] == "speech"]
    spans = spans[:limit]
    lib = EspeakLibrary.get()
    samples, t0 = 0, time.perf_counter()
    for text, speaker in spans:
        spk = EspeakSpeaker.from_id(speaker)
        pcm, rate = lib.synth(text, spk.voice_name, spk.rate, spk.pitch)
        samples += len(pcm)
    return samples / rate / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=400)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = args.workdir or tempfile.mkdtemp(prefix="bench_synth_")
    corpus = os.path.join(work, "corpus.jsonl")
    make_corpus(corpus, args.docs)
    print(f"corpus: {args.docs} documents (en+zh) in {corpus}; {os.cpu_count()} cores visible")

    results = {}
    for workers in (1, 2):
        out = os.path.join(work, f"out_w{workers}")
        if os.path.exists(out):
            subprocess.run(["rm", "-rf", out], check=True)
        wall, stats = run_synth(corpus, out, workers)
        results[workers] = (wall, stats)
        print(f"{workers} worker(s): {wall:6.2f} s wall, {stats['docs_read'] / wall:6.1f} docs/s, "
              f"{stats['speech_seconds'] / 3600:.3f} h speech, "
              f"TTS {stats['x_real_time_per_core']:.0f}x real time per core, "
              f"pipeline {stats['speech_seconds'] / stats['worker_seconds']:.0f}x real time per core, "
              f"node {stats['speech_seconds'] / wall:.0f}x real time, "
              f"speech ratio {stats['speech_ratio']:.3f}")
    (w1, s1), (w2, s2) = results[1], results[2]
    assert s1["docs_written"] == s2["docs_written"] and s1["speech_seconds"] == s2["speech_seconds"]
    print(f"2-worker / 1-worker: {w1 / w2:.2f}x documents/s")
    raw = raw_espeak_x_real_time(os.path.join(work, "out_w1"))
    per_core = s1["speech_seconds"] / s1["worker_seconds"]
    print(f"raw libespeak-ng: {raw:.0f}x real time per core; pipeline / raw = {per_core / raw:.2f}")


if __name__ == "__main__":
    main()
