#!/usr/bin/env python3
"""Benchmark the text reader (``megatron_inserter.data.text_inputs``): records/s of plain, .gz and .zst
jsonl read with every compressed stream checked end to end (a first pass) and every line parsed and
checked, against a baseline measured in the same run: the unchecked one-pass read (``gzip.open`` / a
zstandard stream reader, ``json.loads`` per line).

    .venv/bin/python tools/benchmarks/bench_text_inputs.py [--mb 40] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import random
import tempfile
import time


def make_corpus(path: str, megabytes: float, seed: int = 0) -> None:
    words = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "speech", "models",
             "learn", "to", "listen", "and", "read", "interleaved", "text", "with", "synthesized", "audio",
             "spans", "语音", "模型", "学习", "理解", "文本"]
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        i = 0
        while f.tell() < megabytes * 1e6:
            text = " ".join(rng.choice(words) for _ in range(rng.randint(50, 400)))
            f.write(json.dumps({"id": f"doc-{i}", "text": text}, ensure_ascii=False) + "\n")
            i += 1


def baseline(path: str) -> int:
    """One unchecked pass, the way a reader without integrity checks does it."""
    if path.endswith(".gz"):
        stream = gzip.open(path, "rb")  # noqa: SIM115 - closed by the with below
    elif path.endswith(".zst"):
        import zstandard

        stream = io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(path, "rb"),  # noqa: SIM115
                                                                             read_across_frames=True))
    else:
        stream = open(path, "rb")  # noqa: SIM115
    n = 0
    with stream:
        for line in stream:
            if line.strip() and isinstance(json.loads(line).get("text"), str):
                n += 1
    return n


def checked(path: str) -> int:
    from megatron_inserter.data.text_inputs import SkipReport, read_records

    skips = SkipReport()
    n = sum(1 for _ in read_records([path], "text", skips))
    assert skips.total == 0
    return n


def best_of(fn, path: str, repeats: int) -> tuple[float, int]:
    times, n = [], 0
    for _ in range(repeats):
        t = time.perf_counter()
        n = fn(path)
        times.append(time.perf_counter() - t)
    return min(times), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=40.0, help="size of the plain corpus in MB")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = args.workdir or tempfile.mkdtemp(prefix="bench_text_inputs_")
    plain = os.path.join(work, "corpus.jsonl")
    make_corpus(plain, args.mb)
    with open(plain, "rb") as f:
        data = f.read()
    with open(plain + ".gz", "wb") as f:
        f.write(gzip.compress(data, compresslevel=6))
    import zstandard

    with open(plain + ".zst", "wb") as f:
        f.write(zstandard.ZstdCompressor(level=3, write_checksum=True).compress(data))
    print(f"corpus: {len(data) / 1e6:.1f} MB of jsonl in {work}")
    for path in (plain, plain + ".gz", plain + ".zst"):
        t_base, n_base = best_of(baseline, path, args.repeats)
        t_checked, n_checked = best_of(checked, path, args.repeats)
        assert n_base == n_checked, (n_base, n_checked)
        print(f"{os.path.basename(path):18s} baseline {n_base / t_base:9.0f} records/s, checked reader "
              f"{n_checked / t_checked:9.0f} records/s: {t_checked / t_base:.2f}x the baseline's time")


if __name__ == "__main__":
    main()
