#!/usr/bin/env python3
"""Benchmark the InSerter model's training step against a plain GPTModel of the same LLM.

Both train (forward, backward, Megatron Adam step) on the same token batches; for the InSerter model
``--speech-share`` of the tokens are audio placeholders filled by the encoder + adapter from real PCM clips.
The two are measured alternately in one run, so the ratio is against a baseline of this run:

    .venv/bin/python tools/benchmarks/bench_model.py --preset tiny --seq-length 512   # CPU
    python tools/benchmarks/bench_model.py --preset qwen2.5-1.5b-whisper-small --precision bf16   # GPU
    python tools/benchmarks/bench_model.py --preset qwen2.5-1.5b-whisper-small --precision fp8    # GPU+TE

Printed: step times and their ratio, the encoder's FLOPs relative to the LLM's (the overhead the encoder
should cost), and the check "overhead <= encoder FLOP share + 10%". On a GPU also tokens/s, TFLOP/s and MFU.
FP8 applies to the LLM decoder only; the encoder and the adapter stay in bf16.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from megatron_inserter.data.frames import num_audio_frames
from megatron_inserter.models.config import InserterModelConfig
from megatron_inserter.models.flops import training_flops
from megatron_inserter.models.presets import resolve

PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "B200": 2250.0}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--vocab-size", type=int, default=None, help="override the preset's vocabulary")
    p.add_argument("--seq-length", type=int, default=512)
    p.add_argument("--micro-batch-size", type=int, default=4)
    p.add_argument("--speech-share", type=float, default=0.3, help="share of tokens that are speech frames")
    p.add_argument("--clip-seconds", type=float, default=2.0, help="length of each speech clip")
    p.add_argument("--steps", type=int, default=8, help="measured steps per model")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--precision", choices=("fp32", "bf16", "fp8"), default=None,
                   help="default: fp32 on CPU, bf16 on GPU")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU only: intra-op threads (1 keeps CPU-time measurements stable on a shared machine)")
    p.add_argument("--peak-tflops", type=float, default=None, help="bf16 dense peak for MFU (auto for H100/H200)")
    return p.parse_args(argv)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_batch(cfg: InserterModelConfig, seq: int, mbs: int, share: float, clip_seconds: float, seed: int = 0):
    """Counting tokens with placeholder runs covering ``share`` of each row; clips sized to fill them."""
    spec = cfg.frame_spec()
    g = torch.Generator().manual_seed(seed)
    vocab = cfg.llm.vocab_size
    text_vocab = min(vocab, cfg.audio_placeholder_id) if cfg.audio_placeholder_id < vocab else vocab
    per_clip = max(1, num_audio_frames(int(clip_seconds * spec.sample_rate), spec))
    samples_per_frame = spec.hop_length * spec.conv_stride * spec.adapter_downsample
    rows, clips = [], []
    for _ in range(mbs):
        tokens = torch.randint(0, text_vocab, (seq + 1,), generator=g)
        budget, pos = round(share * seq), 1
        while budget > 0:
            f = min(per_clip, budget)
            tokens[pos:pos + f] = cfg.audio_placeholder_id
            n = f * samples_per_frame
            assert num_audio_frames(n, spec) == f
            clips.append(0.1 * torch.randn(n, generator=g))
            budget -= f
            pos += f + 3
        rows.append(tokens)
    tokens = torch.stack(rows)
    audio = torch.zeros(len(clips), max(len(c) for c in clips)) if clips else torch.zeros(0, 0)
    for i, c in enumerate(clips):
        audio[i, :len(c)] = c
    inputs, labels = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    return {
        "tokens": inputs, "labels": labels, "loss_mask": (labels != cfg.audio_placeholder_id).float(),
        "position_ids": torch.arange(seq).expand(mbs, seq).contiguous(),
        "audio": audio, "audio_lengths": torch.tensor([len(c) for c in clips], dtype=torch.long),
    }


def _to_device(batch, device):
    return {k: v.to(device) for k, v in batch.items()}


def _step_fn(with_audio: bool):
    def forward_step(data_iterator, model):
        b = next(data_iterator)
        extra = {"audio": b["audio"], "audio_lengths": b["audio_lengths"]} if with_audio else {}
        out = model(b["tokens"], b["position_ids"], None, labels=b["labels"], **extra)

        def loss_func(per_token):
            total = (per_token.float() * b["loss_mask"]).sum()
            count = b["loss_mask"].sum()
            return total, count.int(), {"lm loss": torch.stack([total.detach(), count])}

        return out, loss_func

    return forward_step


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from megatron.core.distributed import DistributedDataParallelConfig
    from megatron.core.optimizer import OptimizerConfig

    from megatron_inserter.models.builder import build_model_chunks
    from megatron_inserter.models.llm import build_gpt
    from megatron_inserter.runtime import ParallelConfig, device, initialize_parallel
    from megatron_inserter.training.engine import (
        build_optimizer,
        configure_model_config,
        train_step,
        wrap_ddp,
    )

    cuda = torch.cuda.is_available()
    precision = args.precision or ("bf16" if cuda else "fp32")
    if precision == "fp8":
        from megatron_inserter.models.specs import use_transformer_engine

        if not use_transformer_engine():
            raise SystemExit("--precision fp8 needs CUDA and Transformer Engine")
    if not cuda:
        torch.set_num_threads(args.threads)
        # Subnormal floats make CPU arithmetic several times slower and appear in one model but not the
        # other depending on the data; flushing them keeps the comparison about the models.
        torch.set_flush_denormal(True)
    os.environ.setdefault("MASTER_PORT", str(_free_port()))
    initialize_parallel(ParallelConfig())

    cfg = resolve(args.preset).replace(vocab_size=args.vocab_size)
    if cfg.audio_placeholder_id >= cfg.llm.vocab_size:
        cfg = cfg.replace(audio_placeholder_id=cfg.llm.vocab_size - 1)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp8": torch.bfloat16}[precision]
    overrides = dict(params_dtype=dtype, bf16=dtype == torch.bfloat16, pipeline_dtype=dtype)
    if precision == "fp8":
        overrides.update(fp8="hybrid", fp8_recipe="delayed", fp8_amax_history_len=16,
                         fp8_amax_compute_algo="max")
    opt_cfg = OptimizerConfig(optimizer="adam", lr=1e-4, weight_decay=0.0, clip_grad=1.0,
                              bf16=dtype == torch.bfloat16, fp16=False)
    ddp_cfg = DistributedDataParallelConfig(grad_reduce_in_fp32=True)

    inserter = build_model_chunks(cfg, **overrides)
    gpt = [build_gpt(cfg.llm, inserter[0].config, tensor_model_parallel_size=1)]
    if cuda:
        inserter, gpt = [m.cuda() for m in inserter], [m.cuda() for m in gpt]
    runs = {}
    for name, chunks, with_audio in (("inserter", inserter, True), ("gpt", gpt, False)):
        chunks = wrap_ddp(chunks, ddp_cfg)
        configure_model_config(chunks, ddp=True)
        runs[name] = (chunks, build_optimizer(chunks, opt_cfg), _step_fn(with_audio))

    batch = _to_device(make_batch(cfg, args.seq_length, args.micro_batch_size, args.speech_share,
                                  args.clip_seconds), device())
    times = {name: [] for name in runs}
    cpu_times = {name: [] for name in runs}  # this process's CPU time: robust to other jobs on a shared CPU
    order = list(runs)
    for i in range(args.warmup + args.steps):
        # Alternate the two (ABBA), so changes in machine load and cache state hit both alike.
        for name in (order if i % 2 == 0 else order[::-1]):
            chunks, optimizer, step = runs[name]
            configure_model_config(chunks, ddp=True)
            _sync()
            t0, c0 = time.perf_counter(), time.process_time()
            train_step(step, iter([batch]), chunks, optimizer, None, 1, args.seq_length,
                       args.micro_batch_size, increment=args.micro_batch_size)
            _sync()
            if i >= args.warmup:
                times[name].append(time.perf_counter() - t0)
                cpu_times[name].append(time.process_time() - c0)

    t_ins, t_gpt = statistics.median(times["inserter"]), statistics.median(times["gpt"])
    clip_samples = batch["audio_lengths"].tolist()
    flops = training_flops(cfg, args.seq_length, args.micro_batch_size, clip_samples,
                           vocab_size=cfg.llm.padded_vocab_size(1))
    enc_vs_llm = flops["encoder"] / flops["llm"]
    # On a (shared) CPU this process's CPU time is the steadier measure; on a GPU the wall time.
    if cuda:
        ratio, basis = t_ins / t_gpt, "wall time"
    else:
        ratio, basis = statistics.median(cpu_times["inserter"]) / statistics.median(cpu_times["gpt"]), "CPU time"
    overhead = ratio - 1.0
    tokens = args.seq_length * args.micro_batch_size
    speech = int((batch["tokens"] == cfg.audio_placeholder_id).sum())
    print(f"preset {cfg.name}  precision {precision}  device {'cuda' if cuda else 'cpu'}  "
          f"threads {torch.get_num_threads()}{'' if cuda else '  (subnormals flushed)'}")
    print(f"batch {args.micro_batch_size} x {args.seq_length} tokens, {speech} speech frames "
          f"({speech / tokens:.1%}) from {len(clip_samples)} clips of {args.clip_seconds:g} s")
    print(f"step time  inserter {t_ins * 1e3:.1f} ms   gpt {t_gpt * 1e3:.1f} ms   "
          f"ratio inserter/gpt {t_ins / t_gpt:.3f}  (median of {args.steps})")
    if not cuda:
        for label, pick in (("median", statistics.median), ("min", min)):
            c_ins, c_gpt = pick(cpu_times["inserter"]), pick(cpu_times["gpt"])
            print(f"CPU time ({label})  inserter {c_ins * 1e3:.1f} ms   gpt {c_gpt * 1e3:.1f} ms   "
                  f"ratio inserter/gpt {c_ins / c_gpt:.3f}")
    print(f"encoder+adapter FLOPs = {enc_vs_llm:.1%} of the LLM's ({flops['encoder'] / 1e9:.2f} vs "
          f"{flops['llm'] / 1e9:.2f} GFLOP per step; {flops['encoder'] / sum(flops.values()):.1%} of the total)")
    ok = overhead <= enc_vs_llm + 0.10
    print(f"overhead ({basis}) {overhead:+.1%}  <=  encoder share {enc_vs_llm:.1%} + 10%:  "
          f"{'yes' if ok else 'NO'}")
    if cuda:
        peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items()
                                         if k in torch.cuda.get_device_name()), None)
        if peak and precision == "fp8":
            peak *= 2
        for name, t, f in (("inserter", t_ins, sum(flops.values())), ("gpt", t_gpt, flops["llm"])):
            tflops = f / t / 1e12
            mfu = f"  MFU {tflops / peak:.1%} of {peak:g}" if peak else ""
            print(f"{name:9s} {tokens / t:,.0f} tokens/s  {tflops:.1f} TFLOP/s{mfu}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
