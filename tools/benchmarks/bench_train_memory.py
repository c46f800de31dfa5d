#!/usr/bin/env python3
"""Benchmark the training data path's memory: peak RSS of a CPU training run (tiny preset, audio-heavy data)
at global batch 8 x micro-batch and at 256 x micro-batch, same sequence length. Streaming reads one
micro-batch at a time, so the ratio should stay within 1.1x; reading a whole step up front grows with the
number of micro-batches.

    .venv/bin/python tools/benchmarks/bench_train_memory.py [--seq-length 1024] [--baseline-commit REV]

Each run is a fresh process (its own peak RSS, ``ru_maxrss``), one optimizer step, data loaded in-process
(no loader workers, so every batch byte is in the measured process). ``--baseline-commit REV`` repeats the
two runs with the training code of another commit (checked out with ``git worktree add`` into a temporary
directory, removed afterwards; ``--baseline-tree DIR`` takes a tree already extracted) and prints its ratio
too; each tree builds the same corpus with its own code. With ``--cuda`` the runs train on the GPU and
also report the peak GPU memory allocated (``torch.cuda.max_memory_allocated``) and the step time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Runs inside the measured process, with the code of the tree it runs in.
CHILD = r'''
import json, os, random, resource, sys
import numpy as np

workdir, seq, gbs, workers, iters = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
from megatron_inserter.data.indexed.preprocess import write_dataset
from megatron_inserter.data.indexed.sources import Document, Segment
from megatron_inserter.data.tokenizers import build_tokenizer, train_sentencepiece

WORDS = "the cat sat on a warm mat while speech and text models learn to read and listen".split()
tok_path, prefix = os.path.join(workdir, "tok.model"), os.path.join(workdir, "data", "speech")
if not os.path.exists(prefix + ".idx"):
    rng = random.Random(0)
    docs = []
    for d in range(48):  # about 90% of the positions are audio placeholders: a few words between clips
        segments = []
        for s in range(8):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))) + " "
            n = rng.randint(2 * 16000, 6 * 16000) if s % 2 else 0
            wave = (0.3 * np.sin(2 * np.pi * (150 + d + s) * np.arange(n) / 16000) * 32767).astype(np.int16)
            segments.append(Segment(text, wave if n else None))
        docs.append(Document(f"doc-{d}", segments))
    train_sentencepiece(("".join(s.text for s in d.segments) for d in docs), tok_path, vocab_size=320)
    write_dataset(prefix, docs, build_tokenizer("sentencepiece", tok_path), with_audio=True)

from megatron_inserter.training.arguments import parse_args
from megatron_inserter.training.trainer import train

argv = ["--model-type", "inserter", "--model-preset", "tiny", "--micro-batch-size", "1",
        "--global-batch-size", str(gbs), "--seq-length", str(seq), "--lr", "1e-4", "--train-iters", iters,
        "--tokenizer-model", tok_path, "--split", "100,0,0", "--eval-iters", "0", "--log-interval", "1",
        "--num-workers", workers, "--seed", "1234", "--data-path", prefix]
result = train(parse_args(argv))
out = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "samples": result.consumed_samples}
import torch
if torch.cuda.is_available():
    out["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    out["step_ms"] = result.history[-1].get("ms_per_iter")
print(json.dumps(out))
'''


def measure(tree: str, workdir: str, seq: int, gbs: int, cuda: bool = False, workers: int | None = None,
            iters: int = 1) -> dict:
    # The fixed glibc mmap threshold the trainer applies on CUDA; on CPU it is opted into by this variable.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", OMP_NUM_THREADS="2", RANK="0", WORLD_SIZE="1",
               LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (tree, os.environ.get("PYTHONPATH")) if p)
    if not cuda:
        env["CUDA_VISIBLE_DEVICES"] = ""
    # On the GPU, loader workers overlap reading with compute (pinned memory, non-blocking copies).
    workers = (2 if cuda else 0) if workers is None else workers
    proc = subprocess.run([sys.executable, "-c", CHILD, workdir, str(seq), str(gbs), str(workers), str(iters)],
                          cwd=tree, env=env,
                          check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"training run in {tree} failed:\n{proc.stderr[-4000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if out["samples"] != gbs * iters:
        raise SystemExit(f"expected {iters} steps of {gbs} samples, got {out['samples']}")
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pair(tree: str, workdir: str, seq: int, small: int, large: int, cuda: bool, workers: int | None = None,
         iters: int = 1) -> dict:
    a = measure(tree, workdir, seq, small, cuda, workers, iters)
    b = measure(tree, workdir, seq, large, cuda, workers, iters)
    out = {f"gbs {small} peak RSS MiB": round(a["peak_rss_mib"], 1),
           f"gbs {large} peak RSS MiB": round(b["peak_rss_mib"], 1),
           "RSS ratio": round(b["peak_rss_mib"] / a["peak_rss_mib"], 3)}
    if cuda:
        out.update({f"gbs {small} peak GPU MiB": round(a["cuda_peak_mib"], 1),
                    f"gbs {large} peak GPU MiB": round(b["cuda_peak_mib"], 1),
                    "GPU ratio": round(b["cuda_peak_mib"] / a["cuda_peak_mib"], 3),
                    f"gbs {small} step ms": a["step_ms"], f"gbs {large} step ms": b["step_ms"]})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seq-length", type=int, default=1024)
    p.add_argument("--small", type=int, default=8, help="global batch (micro-batches) of the first run")
    p.add_argument("--large", type=int, default=256, help="global batch (micro-batches) of the second run")
    p.add_argument("--baseline-commit", default=None, help="also measure this commit's training code")
    p.add_argument("--baseline-tree", default=None, help="also measure the training code in this directory")
    p.add_argument("--cuda", action="store_true", help="train on the GPU (and report its peak memory)")
    p.add_argument("--workers", type=int, default=None, help="loader workers (default: 2 on the GPU, 0 on CPU)")
    p.add_argument("--train-iters", type=int, default=1, help="steps per run (step time: the last one's)")
    p.add_argument("--workdir", default=None)
    args = p.parse_args()
    opts = (args.cuda, args.workers, args.train_iters)
    root = args.workdir or tempfile.mkdtemp(prefix="bench_train_memory_")
    report = {"seq_length": args.seq_length,
              "streaming": pair(REPO, os.path.join(root, "current"), args.seq_length, args.small, args.large,
                                *opts)}
    if args.baseline_tree:
        report[f"baseline {args.baseline_tree}"] = pair(os.path.abspath(args.baseline_tree),
                                                        os.path.join(root, "baseline"), args.seq_length,
                                                        args.small, args.large, *opts)
    if args.baseline_commit:
        tree = os.path.join(root, "baseline-tree")
        subprocess.run(["git", "-C", REPO, "worktree", "add", "--detach", tree, args.baseline_commit], check=True,
                       capture_output=True)
        try:
            report[f"baseline {args.baseline_commit}"] = pair(tree, os.path.join(root, "baseline"),
                                                              args.seq_length, args.small, args.large, *opts)
        finally:
            subprocess.run(["git", "-C", REPO, "worktree", "remove", "--force", tree], check=False)
    print(json.dumps(report, indent=2))
    if not args.workdir:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
