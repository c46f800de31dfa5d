#!/usr/bin/env python3
"""What the speech encoder costs per training sample in each input mode (window, masked, packed).

One sample of ``--seq-length`` tokens holds ``--audio-share`` of placeholders, filled by clips drawn from a
gamma distribution with mean ``--mean-seconds`` (the demo's synthesized spans: 3.5 s on average, about 67
clips per 8192-token sample). For that sample:

* FLOPs at the ``--preset`` shape (default qwen2-audio-7b), as each mode runs them: window pads every clip
  to 30 s; masked pads the clips of one encoder call to the longest; packed costs each clip's own positions
  (THD with Transformer Engine; ``packed, CPU windows`` adds the padding and cross-clip attention of the
  windows the CPU path uses, as long as the longest clip). Printed as a share of the LLM's forward FLOPs on
  the sample. The target: packed at most 15%.
* Wall time per sample on this machine, with the real encoder code (``SpeechEncoder`` + adapter, random
  weights), at the reduced ``--wall-preset`` shape (CPU), clips encoded in calls of ``--clips-per-call``.
  Printed as a ratio against window mode measured in the same run.

    .venv/bin/python tools/benchmarks/bench_encoder_modes.py
    .venv/bin/python tools/benchmarks/bench_encoder_modes.py --preset qwen2.5-1.5b-whisper-small --no-wall
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from megatron_inserter.data.frames import num_audio_frames, split_windows
from megatron_inserter.models.config import InserterModelConfig
from megatron_inserter.models.presets import resolve

MODES = ("window", "masked", "packed")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="qwen2-audio-7b", help="shape of the FLOP accounting")
    p.add_argument("--seq-length", type=int, default=8192)
    p.add_argument("--audio-share", type=float, default=0.72, help="share of the sample's tokens that are speech")
    p.add_argument("--mean-seconds", type=float, default=3.5, help="mean clip length")
    p.add_argument("--shape", type=float, default=4.0, help="gamma shape of the clip lengths (4: sd = mean / 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--wall-preset", default="tiny", help="encoder shape of the wall-time measurement")
    p.add_argument("--clips-per-call", type=int, default=16, help="clips per encoder call in the wall-time runs")
    p.add_argument("--repeats", type=int, default=2, help="timed passes per mode (the best is kept)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (1 keeps a shared machine stable)")
    p.add_argument("--no-wall", action="store_true", help="FLOPs only")
    return p.parse_args(argv)


def sample_clips(cfg: InserterModelConfig, args) -> list[int]:
    """Clip lengths (samples, whole 10 ms hops, at most one window) filling the sample's speech budget."""
    import numpy as np

    spec = cfg.frame_spec()
    rng = np.random.default_rng(args.seed)
    budget = int(args.audio_share * args.seq_length)
    clips: list[int] = []
    while True:
        seconds = float(np.clip(rng.gamma(args.shape, args.mean_seconds / args.shape), 0.3, spec.max_window_seconds))
        n = int(seconds * 100) * spec.hop_length
        need = num_audio_frames(n, spec) + 2  # placeholders and the two audio markers
        if need > budget:
            return clips
        clips.append(n)
        budget -= need


def _layer_flops(d: int, ffn: int, positions: int, keys: int) -> float:
    """One bidirectional pre-LN layer on ``positions`` queries against ``keys`` keys (matrix products)."""
    return positions * (2 * 4 * d * d + 2 * 2 * d * ffn) + 2 * 2 * d * positions * keys


def executed_encoder_flops(cfg: InserterModelConfig, clips: list[int], mode: str, clips_per_call: int,
                           windows: bool = False) -> float:
    """Forward FLOPs of encoder + adapter as ``mode`` runs them (padding included)."""
    from megatron_inserter.models.clip_packing import WindowPlan

    enc = cfg.encoder
    d, ffn, layers = enc.hidden_size, enc.ffn_hidden_size, enc.num_layers
    hop, stride = enc.hop_length, enc.conv_stride
    spec = cfg.frame_spec()
    pieces = [w for n in clips for w in split_windows(n, spec)]
    mel = [n // hop for n in pieces]
    positions = [(m - 1) // stride + 1 if m else 0 for m in mel]

    def conv(mel_frames: int, out_positions: int) -> float:
        return 2 * 3 * enc.num_mel_bins * d * mel_frames + 2 * 3 * d * d * out_positions

    total = 0.0
    if mode == "window":
        window_mel = spec.max_window_samples // hop
        full = (window_mel - 1) // stride + 1
        total += len(pieces) * (conv(window_mel, full) + layers * _layer_flops(d, ffn, full, full))
    elif mode == "masked":
        for i in range(0, len(pieces), clips_per_call):
            group_mel, group_pos = mel[i:i + clips_per_call], positions[i:i + clips_per_call]
            t = max(group_pos)
            total += len(group_pos) * (conv(max(group_mel), t) + layers * _layer_flops(d, ffn, t, t))
    elif not windows:  # packed, THD: each clip attends over itself
        total += sum(conv(m + 4, t) + layers * _layer_flops(d, ffn, t, t) for m, t in zip(mel, positions))
    else:  # packed, CPU windows: padded windows of up to max_source_positions, attention over the window
        total += sum(conv(m + 4, t) for m, t in zip(mel, positions))
        for i in range(0, len(pieces), clips_per_call):
            group = positions[i:i + clips_per_call]
            plan = WindowPlan.first_fit(group, max(group))
            L = plan.window_length
            total += plan.num_windows * layers * _layer_flops(d, ffn, L, L)
    frames = sum(num_audio_frames(n, spec) for n in pieces)
    hidden = cfg.adapter.ffn_hidden_size or cfg.llm.hidden_size
    k = cfg.adapter.downsample
    adapter = (2 * d * cfg.llm.hidden_size if cfg.adapter.kind == "pool-linear"
               else 2 * (k * d * hidden + hidden * cfg.llm.hidden_size)) * frames
    return float(total + adapter)


def flop_table(cfg: InserterModelConfig, clips: list[int], args) -> list[tuple[str, float]]:
    from megatron_inserter.models.flops import llm_forward_flops

    llm = llm_forward_flops(cfg.llm, args.seq_length, 1)
    rows = [("llm forward", llm)]
    for mode in MODES:
        rows.append((mode, executed_encoder_flops(cfg, clips, mode, len(clips))))
    rows.append(("packed, CPU windows", executed_encoder_flops(cfg, clips, "packed", len(clips), windows=True)))
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wall_times(args, clips: list[int]) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds per sample of ``encode_audio`` in each mode at the wall-time shape, best of the
    repeats. With one thread the process's CPU time is the stable measure on a shared machine."""
    import torch

    from megatron_inserter.models.builder import build_model_chunks
    from megatron_inserter.runtime import ParallelConfig, initialize_parallel

    torch.set_num_threads(args.threads)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(_free_port()))
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    initialize_parallel(ParallelConfig(seed=args.seed))
    base = resolve(args.wall_preset)
    g = torch.Generator().manual_seed(args.seed)
    audio_clips = [0.1 * torch.randn(n, generator=g) for n in clips]
    calls = []
    for i in range(0, len(audio_clips), args.clips_per_call):
        group = audio_clips[i:i + args.clips_per_call]
        audio = torch.zeros(len(group), max(len(c) for c in group))
        for j, c in enumerate(group):
            audio[j, :len(c)] = c
        calls.append((audio, torch.tensor([len(c) for c in group])))
    out = {}
    for mode in MODES:
        cfg = base.replace(encoder=dataclasses.replace(base.encoder, input_mode=mode))
        [model] = build_model_chunks(cfg)
        model.eval()
        best = (float("inf"), float("inf"))
        with torch.no_grad():
            model.encode_audio(*calls[0])  # warm-up
            for _ in range(args.repeats):
                t0, c0 = time.perf_counter(), time.process_time()
                for audio, lengths in calls:
                    model.encode_audio(audio, lengths)
                best = min(best, (time.perf_counter() - t0, time.process_time() - c0), key=lambda t: t[1])
        out[mode] = best
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = resolve(args.preset)
    clips = sample_clips(cfg, args)
    seconds = [n / cfg.frame_spec().sample_rate for n in clips]
    speech = sum(num_audio_frames(n, cfg.frame_spec()) for n in clips)
    print(f"sample: {args.seq_length} tokens, {len(clips)} clips, mean {sum(seconds) / len(seconds):.2f} s "
          f"(max {max(seconds):.1f} s), {speech} speech placeholders ({speech / args.seq_length:.0%})")
    rows = flop_table(cfg, clips, args)
    llm = rows[0][1]
    print(f"\nforward FLOPs per sample at the {args.preset} shape (encoder + adapter; one encoder call per sample)")
    print(f"  {'':<22}{'TFLOP':>10}{'share of LLM':>14}")
    for name, value in rows:
        print(f"  {name:<22}{value / 1e12:>10.2f}{value / llm:>14.3f}")
    from megatron_inserter.models.flops import encoder_forward_flops

    plan = encoder_forward_flops(cfg.replace(encoder=dataclasses.replace(cfg.encoder, input_mode="packed")), clips)
    print(f"  (models/flops.py, which inserter plan uses, counts packed as {plan / 1e12:.2f} TFLOP)")
    packed = dict(rows)["packed"] / llm
    print(f"  goal: packed encoder FLOPs <= 0.15 x LLM: {'met' if packed <= 0.15 else 'NOT met'} ({packed:.3f})")
    if args.no_wall:
        return 0
    times = wall_times(args, clips)
    print(f"\ntime per sample on this machine (CPU, {args.threads} thread(s)), real encoder code at the reduced "
          f"{args.wall_preset!r} shape, {args.clips_per_call} clips per call; ratios against window mode")
    print(f"  {'':<22}{'CPU s':>10}{'ratio':>8}{'wall s':>10}{'ratio':>8}")
    window_wall, window_cpu = times["window"]
    for mode in MODES:
        wall, cpu = times[mode]
        print(f"  {mode:<22}{cpu:>10.2f}{cpu / window_cpu:>8.3f}{wall:>10.2f}{wall / window_wall:>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
