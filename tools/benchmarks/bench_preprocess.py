#!/usr/bin/env python3
"""Benchmark `inserter preprocess`.

Default: against Megatron-LM's ``tools/preprocess_data.py`` on the same ~30 MB English jsonl with the same
SentencePiece model, at 1 and 2 workers, each configuration run ``--repeats`` times interleaved; prints
wall-clock seconds and the ratio Megatron / ours at equal workers (> 1: ours is faster), and checks that
both wrote the same token ids (ours adds the BOS, Megatron's SentencePiece eod is the model's ``</s>``).

    .venv/bin/python tools/benchmarks/bench_preprocess.py --megatron-lm-preprocess Megatron-LM/tools/preprocess_data.py

Megatron-LM's tools are not part of the megatron-core wheel: point ``--megatron-lm-preprocess`` at the script
of a Megatron-LM checkout (its directory's parent must provide ``megatron.training``, as a checkout does).
Megatron runs with ``--tokenizer-type SentencePieceTokenizer --append-eod``; its ``--workers N`` is N
encoding processes plus the main process that writes.

``--scaling``: the earlier suite instead: text tokens/s (1 vs 2 workers), audio x real time, and peak
memory as the corpus grows 10x (it must stay flat: the corpus is streamed, never held).
"""

from __future__ import annotations

import argparse
import io
import itertools
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


def train_tokenizer(jsonl: str, out: str, vocab: int = 4000, max_documents: int = 3000) -> str:
    from megatron_inserter.data.indexed.tokenizer_cli import main

    assert main(["--input", jsonl, "--vocab-size", str(vocab), "--output", out,
                 "--max-documents", str(max_documents)]) == 0
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


# --- against Megatron-LM's preprocess_data.py ----------------------------------------------------------------

DEMO_CORPUS = os.path.join(os.path.dirname(__file__), "..", "..", "megatron_inserter", "assets", "demo_corpus.jsonl")


def english_sentences() -> list[str]:
    sentences = []
    with open(DEMO_CORPUS, encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            if doc.get("lang") == "en":
                sentences += [p.strip() + "." for p in doc["text"].split(". ") if p.strip()]
    return sentences


def vary(rng: random.Random, sentence: str) -> str:
    """The sentence with a few changes: a number, a swapped word pair, a changed case, a dropped word."""
    words = sentence.split()
    r = rng.random()
    if r < 0.25 and len(words) > 3:
        words.insert(rng.randrange(len(words)), str(rng.randint(2, 9999)))
    elif r < 0.5 and len(words) > 3:
        a, b = rng.sample(range(len(words)), 2)
        words[a], words[b] = words[b], words[a]
    elif r < 0.65:
        k = rng.randrange(len(words))
        words[k] = words[k].upper() if rng.random() < 0.5 else words[k].capitalize()
    elif r < 0.8 and len(words) > 4:
        del words[rng.randrange(len(words))]
    return " ".join(words)


def write_english_jsonl(path: str, megabytes: float, seed: int = 0) -> str:
    """About ``megabytes`` of English documents (20 to 80 varied demo-corpus sentences each), one per line."""
    rng, pool = random.Random(seed), english_sentences()
    target, written = int(megabytes * 1e6), 0
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            text = " ".join(vary(rng, rng.choice(pool)) for _ in range(rng.randint(20, 80)))
            line = json.dumps({"text": text}, ensure_ascii=False) + "\n"
            f.write(line)
            written += len(line.encode("utf-8"))
    return path


def run_ours(jsonl: str, prefix: str, tok: str, workers: int) -> tuple[float, float]:
    cmd = [sys.executable, "-m", "megatron_inserter.cli", "preprocess", "--input", jsonl, "--output-prefix", prefix,
           "--tokenizer-type", "sentencepiece", "--tokenizer-model", tok, "--workers", str(workers), "--no-progress"]
    return _timed(cmd, cwd=None)


def run_megatron(script: str, jsonl: str, prefix: str, tok: str, workers: int, cwd: str) -> tuple[float, float]:
    cmd = [sys.executable, script, "--input", jsonl, "--output-prefix", prefix, "--tokenizer-type",
           "SentencePieceTokenizer", "--tokenizer-model", tok, "--workers", str(workers), "--append-eod",
           "--log-interval", "100000"]
    return _timed(cmd, cwd=cwd)


def _timed(cmd: list[str], cwd: str | None) -> tuple[float, float]:
    """(wall-clock seconds, CPU seconds of the command and all its processes)."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    cpu0 = _children_cpu_seconds()
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         check=False)
    seconds = time.perf_counter() - t0
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd[:3])} ... failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return seconds, _children_cpu_seconds() - cpu0


def _children_cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def documents(prefix: str, strip_bos: int | None, strip_eod: int | None) -> list[np.ndarray]:
    """The token ids of every document of a dataset, without the framing tokens given."""
    from megatron_inserter.data.indexed.index_format import read_header, read_index

    index = read_index(prefix + ".idx", read_header(prefix + ".idx").has_modes)
    tokens = np.memmap(prefix + ".bin", dtype=index.header.dtype, mode="r")
    itemsize = index.header.dtype.itemsize
    seq_start = np.asarray(index.sequence_pointers) // itemsize
    seq_end = seq_start + np.asarray(index.sequence_lengths)
    docs = np.asarray(index.document_indices)
    out = []
    for a, b in itertools.pairwise(docs):
        ids = np.asarray(tokens[seq_start[a]:seq_end[b - 1]])
        if strip_bos is not None and len(ids) and ids[0] == strip_bos:
            ids = ids[1:]
        if strip_eod is not None and len(ids) and ids[-1] == strip_eod:
            ids = ids[:-1]
        out.append(ids.astype(np.int64))
    return out


def compare_with_megatron(args) -> None:
    work = args.workdir or tempfile.mkdtemp(prefix="bench_preprocess_")
    os.makedirs(work, exist_ok=True)
    t = time.time()
    jsonl = write_english_jsonl(os.path.join(work, "english.jsonl"), args.megabytes, seed=7)
    tok = train_tokenizer(jsonl, os.path.join(work, "tok.model"), vocab=args.vocab, max_documents=2000)
    from megatron_inserter.data.tokenizers import build_tokenizer

    tokenizer = build_tokenizer("sentencepiece", tok)
    print(f"{os.path.getsize(jsonl) / 1e6:.1f} MB of jsonl and a {tokenizer.vocab_size}-piece SentencePiece model "
          f"in {time.time() - t:.1f}s under {work}", file=sys.stderr)
    script = os.path.abspath(args.megatron_lm_preprocess) if args.megatron_lm_preprocess else None
    runs: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for rep in range(args.repeats):
        for workers in args.workers:
            ours = os.path.join(work, f"ours_w{workers}")
            runs.setdefault(("ours", workers), []).append(run_ours(jsonl, ours, tok, workers))
            if script:
                mg = os.path.join(work, f"megatron_w{workers}")
                runs.setdefault(("megatron", workers), []).append(run_megatron(script, jsonl, mg, tok, workers, work))
            print(f"repeat {rep + 1}/{args.repeats}, {workers} worker(s) done", file=sys.stderr)
    wall = {k: min(w for w, _ in v) for k, v in runs.items()}
    cpu = {k: min(c for _, c in v) for k, v in runs.items()}
    print(f"{'configuration':26s} {'wall s':>8s} {'CPU s':>8s}  (best of {args.repeats}; all runs wall/CPU)")
    for (tool, workers), v in sorted(runs.items()):
        print(f"{tool + f', {workers} worker(s)':26s} {wall[tool, workers]:8.2f} {cpu[tool, workers]:8.2f}  "
              + " ".join(f"{w:.1f}/{c:.1f}" for w, c in v))
    if not script:
        print("(no --megatron-lm-preprocess: ratios need Megatron-LM's tools/preprocess_data.py)")
        return
    for workers in args.workers:
        print(f"ratio Megatron / ours at {workers} worker(s): wall clock {wall['megatron', workers] / wall['ours', workers]:.2f}x, "
              f"CPU time {cpu['megatron', workers] / cpu['ours', workers]:.2f}x")
    w = args.workers[0]
    a = documents(os.path.join(work, f"ours_w{w}"), tokenizer.bos_id, tokenizer.eod_id)
    b = documents(os.path.join(work, f"megatron_w{w}_text_document"), None, tokenizer._sp.eos_id())
    same = len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    print(f"same token ids in both outputs ({len(a)} documents): {'yes' if same else 'NO'}")
    print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; each ratio compares runs of the same "
          f"configuration interleaved in time)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--megatron-lm-preprocess", default=None, metavar="PATH",
                    help="Megatron-LM's tools/preprocess_data.py (in a checkout providing megatron.training)")
    ap.add_argument("--megabytes", type=float, default=30.0, help="size of the English jsonl")
    ap.add_argument("--vocab", type=int, default=8000, help="SentencePiece vocabulary size")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=2, help="runs per configuration (the best is compared)")
    ap.add_argument("--scaling", action="store_true", help="run the worker-scaling / audio / memory suite instead")
    ap.add_argument("--docs", type=int, default=4000, help="--scaling: jsonl documents (the 10x run uses 10 times as many)")
    ap.add_argument("--audio-docs", type=int, default=150, help="--scaling: interleaved documents with speech")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    if args.scaling:
        scaling(args)
    else:
        compare_with_megatron(args)


def scaling(args) -> None:
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
