#!/usr/bin/env python3
"""Benchmark the training data path: InterleavedDataset samples/s through a DataLoader with 2 workers
(baseline: megatron-core's GPTDataset on the same text, same loader), packing efficiency (non-padding
share of tokens; goal >= 98% at sequence length 2048 on a demo-like corpus), and sample-index build time
as the document count grows 10x (should grow about 10x: linear).

    .venv/bin/python tools/benchmarks/bench_loader.py [--docs 800] [--seq-length 2048] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_preprocess import train_tokenizer, write_shards


def loader_rate(ds, batch: int, workers: int, collate, max_batches: int) -> float:
    from torch.utils.data import DataLoader

    loader = DataLoader(ds, batch_size=batch, shuffle=False, num_workers=workers, collate_fn=collate,
                        persistent_workers=False, prefetch_factor=4 if workers else None)
    it = iter(loader)
    next(it)  # worker start-up is not throughput
    t, n = time.perf_counter(), 0
    for i, b in enumerate(it):
        n += b["tokens"].shape[0]
        if i + 1 >= max_batches:
            break
    return n / (time.perf_counter() - t)


def gpt_collate(samples):
    import torch

    return {k: torch.stack([s[k] for s in samples]) for k in ("tokens", "labels", "loss_mask", "position_ids")}


def index_build_seconds(n_docs: int, seq: int, seed: int = 0) -> float:
    """build_indices on a synthetic corpus: ~500-token documents, ~5 spans of ~70 tokens each."""
    from megatron_inserter.data.indexed.sample_index import build_indices

    rng = np.random.default_rng(seed)
    spans_per_doc = rng.integers(0, 10, n_docs)
    ptr = np.concatenate([[0], np.cumsum(spans_per_doc)])
    n = int(ptr[-1])
    gaps = rng.integers(5, 60, n)
    lens = rng.integers(40, 110, n)
    # positions within each document: cumulative (gap + span) restarted per document
    step = gaps + lens
    cs = np.cumsum(step)
    base = np.repeat(np.concatenate([[0], cs])[ptr[:-1]], spans_per_doc)
    q = cs - base - 1
    p = q - lens + 1
    last_q = np.where(spans_per_doc > 0, np.concatenate([[0], q])[ptr[1:]] + 1, 0)
    doc_len = last_q + rng.integers(20, 200, n_docs)
    t = time.perf_counter()
    build_indices(np.arange(n_docs), doc_len, ptr, p, q, seq, None, 1234)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=800)
    ap.add_argument("--seq-length", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--max-batches", type=int, default=60)
    ap.add_argument("--index-docs", type=int, default=100_000, help="documents of the index-build timing (and 10x)")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = args.workdir or tempfile.mkdtemp(prefix="bench_loader_")
    os.makedirs(work, exist_ok=True)

    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    from megatron_inserter.data.indexed import build_datasets, collate_batch, dataset_config
    from megatron_inserter.data.indexed.preprocess import PreprocessConfig, preprocess
    from megatron_inserter.data.indexed.tokenizer_cli import corpus_texts
    from megatron_inserter.data.tokenizers import build_tokenizer

    shards = os.path.join(work, "shards")
    if not os.path.isdir(shards):
        write_shards(shards, args.docs, seed=7)
    jsonl = os.path.join(work, "text.jsonl")
    with open(jsonl, "w", encoding="utf-8") as f:  # the same documents as plain text, for the GPT baseline
        f.writelines(json.dumps({"text": text}, ensure_ascii=False) + "\n" for text in corpus_texts([shards]))
    tok_path = os.path.join(work, "tok.model")
    if not os.path.exists(tok_path):
        train_tokenizer(jsonl, tok_path)
    tok = build_tokenizer("sentencepiece", tok_path)
    inter, text = os.path.join(work, "inter"), os.path.join(work, "text")
    preprocess(PreprocessConfig([shards], inter, "sentencepiece", tok_path, workers=2, progress=False))
    preprocess(PreprocessConfig([jsonl], text, "sentencepiece", tok_path, workers=1, progress=False))

    seq = args.seq_length
    cfg = dataset_config([inter], "1,0,0", seq, 1234, tok, path_to_cache=os.path.join(work, "cache"))
    ds = build_datasets(cfg)[0]
    starts = ds.sample_index
    total = len(ds) * seq
    padding = sum(ds[i]["num_padding"] for i in range(len(ds)))
    efficiency = 1 - padding / total
    speech_tokens = sum(int((ds[i]["tokens"] == tok.audio_placeholder_id).sum()) for i in range(min(len(ds), 50)))

    gcfg = GPTDatasetConfig(random_seed=1234, sequence_length=seq, blend=([text], None), split="1,0,0",
                            tokenizer=tok, reset_position_ids=False, reset_attention_mask=False,
                            eod_mask_loss=False, create_attention_mask=False,
                            path_to_cache=os.path.join(work, "cache"))
    wanted = args.batch * (args.max_batches + 2)  # both loaders read the same number of samples
    gpt = BlendedMegatronDatasetBuilder(GPTDataset, [wanted, None, None], lambda: True, gcfg).build()[0]
    ds_many = build_datasets(cfg, num_samples=(wanted, None, None))[0]

    rate = loader_rate(ds_many, args.batch, 2, collate_batch, args.max_batches)
    base = loader_rate(gpt, args.batch, 2, gpt_collate, args.max_batches)
    t_small = index_build_seconds(args.index_docs, seq)
    t_big = index_build_seconds(10 * args.index_docs, seq)

    print(f"corpus: {args.docs} documents, {len(ds)} samples of {seq} tokens "
          f"({len(starts) - 1} in the index), placeholders {speech_tokens / (min(len(ds), 50) * seq):.1%} of tokens")
    print(f"packing efficiency (non-padding share)  {efficiency:8.2%}  goal >= 98%")
    audio_seconds = sum(sum(len(c) for c in ds[i]["audio"]) for i in range(min(len(ds), 50))) / 16000
    audio_per_sample = audio_seconds / min(len(ds), 50)
    print(f"InterleavedDataset samples/s (2 workers) {rate:8.1f}  "
          f"({audio_per_sample:.0f} s of audio per sample: {rate * audio_per_sample:.0f}x real time)")
    print(f"GPTDataset samples/s (2 workers, text)   {base:8.1f}  ratio {rate / base:.2f}")
    print(f"sample index build, {args.index_docs} docs      {t_small:8.2f}s")
    print(f"sample index build, {10 * args.index_docs} docs     {t_big:8.2f}s  ratio {t_big / t_small:.1f} (10x docs)")


if __name__ == "__main__":
    main()
