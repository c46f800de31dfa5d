#!/usr/bin/env python3
"""Benchmark `inserter preprocess`: text tokens/s (1 vs 2 workers), audio x real time, and peak memory as
the corpus grows 10x (it must stay flat: the corpus is streamed, never held).

    .venv/bin/python tools/benchmarks/bench_preprocess.py [--docs 4000] [--audio-docs 150] [--workdir DIR]

Every figure is measured in this run, each with its baseline: 2 workers against 1, 10x corpus against 1x.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time

import numpy as np

EN = ["the", "of", "and", "to", "in", "is", "was", "for", "on", "that", "with", "as", "by", "at", "from", "his", "her", "an", "were", "which", "are", "this", "be", "had", "or", "speech", "model", "text", "audio", "listen", "learn", "people", "city", "river", "history", "music", "language", "school", "water"]
ZH = list("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面")


def make_text(rng: random.Random, n_words: int) -> str:
    if rng.random() < 0.25:
        return "".join(rng.choice(ZH) for _ in range(n_words)) + "。"
    return " ".join(rng.choice(EN) for _ in range(n_words)) + ". "


def write_jsonl(path: str, n_docs: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n_docs):
            text = "".join(make_text(rng, rng.randint(8, 40)) for _ in range(rng.randint(5, 20)))
            f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    return path


def speech_pcm(rng: np.random.Generator, seconds: float) -> np.ndarray:
    n = int(seconds * 16000)
    t = np.arange(n) / 16000
    f0 = rng.uniform(100, 250)
    wave = 0.25 * np.sin(2 * np.pi * f0 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.02 * rng.standard_normal(n)
    return np.round(np.clip(wave, -1, 1) * 32767).astype(np.int16)


def write_shards(out_dir: str, n_docs: int, seed: int = 0, docs_per_shard: int = 50,
                 speech_share: float = 0.3) -> str:
    """Demo-like interleaved documents: about ``speech_share`` of the text spans replaced by 1.5-4 s clips."""
    import hashlib

    import soundfile as sf
    import webdataset as wds

    os.makedirs(out_dir, exist_ok=True)
    rng, nrng = random.Random(seed), np.random.default_rng(seed)
    writer = None
    for d in range(n_docs):
        if d % docs_per_shard == 0:
            if writer:
                writer.close()
            writer = wds.TarWriter(os.path.join(out_dir, f"bench-00000-{d // docs_per_shard:06d}.tar"), mtime=0)
        sample, segments, k = {"__key__": hashlib.sha1(f"{seed}-{d}".encode()).hexdigest()[:16]}, [], 0
        for _ in range(rng.randint(6, 24)):
            text = make_text(rng, rng.randint(5, 14))
            if rng.random() < speech_share:
                pcm = speech_pcm(nrng, rng.uniform(1.5, 4.0))
                buf = io.BytesIO()
                sf.write(buf, pcm, 16000, format="FLAC", subtype="PCM_16")
                sample[f"{k}.flac"] = buf.getvalue()
                segments.append({"type": "speech", "text": text, "speaker": "s", "duration": len(pcm) / 16000,
                                 "sample_rate": 16000, "num_samples": len(pcm), "audio": f"{k}.flac"})
                k += 1
            else:
                segments.append({"type": "text", "text": text})
        sample["json"] = json.dumps({"id": str(d), "lang": "en", "source": "bench", "segments": segments}).encode()
        writer.write(sample)
    writer.close()
    return out_dir


def train_tokenizer(jsonl: str, out: str, vocab: int = 4000) -> str:
    from megatron_inserter.data.indexed.tokenizer_cli import main

    assert main(["--input", jsonl, "--vocab-size", str(vocab), "--output", out, "--max-documents", "3000"]) == 0
    return out


def run_preprocess(inputs: str, prefix: str, tok: str, workers: int) -> tuple[dict, float]:
    """Run in a child process; returns (stats + its CPU seconds, peak RSS in KiB while it preprocessed)."""
    code = "import sys; sys.path.insert(0, sys.argv.pop(1)); import bench_preprocess as b; sys.exit(b.measured_main())"
    args = [sys.executable, "-W", "ignore", "-c", code, os.path.dirname(os.path.abspath(__file__)), "--input", inputs, "--output-prefix", prefix,
            "--tokenizer-type", "sentencepiece", "--tokenizer-model", tok, "--workers", str(workers), "--no-progress"]
    out = subprocess.run(args, stdout=subprocess.PIPE, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"preprocess failed ({out.returncode})")
    values = {line.split()[0]: float(line.split()[1]) for line in out.stdout.splitlines()
              if line.startswith(("PEAK_RSS_KIB", "CPU_SECONDS"))}
    with open(prefix + ".stats.json") as f:
        stats = json.load(f)
    stats["cpu_seconds"] = values["CPU_SECONDS"]  # while preprocessing, workers included
    return stats, values["PEAK_RSS_KIB"]


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the preprocessing workers)."""
    import resource

    return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))


def measured_main() -> int:
    """`inserter preprocess` with the main process's resident memory sampled every 20 ms while it runs."""
    import threading

    from megatron_inserter.data.indexed.preprocess_cli import main

    peak, done = [_rss_kib()], threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], _rss_kib())

    cpu_before = _cpu_seconds()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    rc = main(sys.argv[1:])
    done.set()
    thread.join()
    cpu = _cpu_seconds() - cpu_before
    print("PEAK_RSS_KIB", max(peak[0], _rss_kib()))
    print("CPU_SECONDS", cpu)
    return rc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=4000, help="jsonl documents (the 10x run uses 10 times as many)")
    ap.add_argument("--audio-docs", type=int, default=150, help="interleaved documents with speech")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = args.workdir or tempfile.mkdtemp(prefix="bench_preprocess_")
    os.makedirs(work, exist_ok=True)
    t = time.time()
    small = write_jsonl(os.path.join(work, "small.jsonl"), args.docs, seed=1)
    big = write_jsonl(os.path.join(work, "big.jsonl"), 10 * args.docs, seed=2)
    shards = write_shards(os.path.join(work, "shards"), args.audio_docs, seed=3)
    shards10 = write_shards(os.path.join(work, "shards10"), 10 * args.audio_docs, seed=4)
    tok = train_tokenizer(small, os.path.join(work, "tok.model"))
    print(f"corpora written in {time.time() - t:.1f}s under {work}", file=sys.stderr)

    _, rss1 = run_preprocess(small, os.path.join(work, "t1"), tok, 1)
    s10, rss10 = run_preprocess(big, os.path.join(work, "t10"), tok, 1)
    s10w2, _ = run_preprocess(big, os.path.join(work, "t10w2"), tok, 2)
    _, arss1 = run_preprocess(shards, os.path.join(work, "a1"), tok, 1)
    a10, arss10 = run_preprocess(shards10, os.path.join(work, "a10"), tok, 1)
    a10w2, _ = run_preprocess(shards10, os.path.join(work, "a10w2"), tok, 2)

    tps1, tps2 = s10["tokens_per_second"], s10w2["tokens_per_second"]
    xrt1, xrt2 = a10["audio_x_real_time"], a10w2["audio_x_real_time"]
    rows = [
        ("text tokens/s, 1 worker", tps1, f"{s10['tokens']} tokens"),
        ("text tokens/s, 2 workers", tps2, f"x{tps2 / tps1:.2f} vs 1 worker (wall clock)"),
        ("text tokens per CPU-second, 1 w", s10["tokens"] / s10["cpu_seconds"], ""),
        ("text tokens per CPU-second, 2 w", s10w2["tokens"] / s10w2["cpu_seconds"],
         f"x{s10['cpu_seconds'] / s10w2['cpu_seconds']:.2f} vs 1 worker (1.0 = no parallel overhead)"),
        ("text peak RSS MiB, 1x corpus", rss1 / 1024, ""),
        ("text peak RSS MiB, 10x corpus", rss10 / 1024, f"x{rss10 / rss1:.2f} vs 1x"),
        ("audio x real time, 1 worker", xrt1, f"{a10['speech_hours']:.2f} h of speech"),
        ("audio x real time, 2 workers", xrt2, f"x{xrt2 / xrt1:.2f} vs 1 worker (wall clock)"),
        ("audio x real time per CPU, 1 w", a10["speech_samples"] / 16000 / a10["cpu_seconds"], ""),
        ("audio x real time per CPU, 2 w", a10w2["speech_samples"] / 16000 / a10w2["cpu_seconds"],
         f"x{a10['cpu_seconds'] / a10w2['cpu_seconds']:.2f} vs 1 worker (1.0 = no parallel overhead)"),
        ("audio peak RSS MiB, 1x corpus", arss1 / 1024, ""),
        ("audio peak RSS MiB, 10x corpus", arss10 / 1024, f"x{arss10 / arss1:.2f} vs 1x"),
    ]
    for name, value, note in rows:
        print(f"{name:32s} {value:12.1f}  {note}")
    print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: wall-clock worker scaling is bounded "
          f"by the free cores; the per-CPU-second figures are not)")


if __name__ == "__main__":
    main()
