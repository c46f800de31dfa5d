"""``inserter synth``: synthesize an interleaved speech-text corpus into webdataset shards.

    inserter synth --input 'corpus/*.jsonl.zst' --output-dir shards/ --workers 16
    inserter synth --input corpus/ --output-dir shards/ --tts nemo --tts-model fastpitch.nemo \\
        --vocoder-model hifigan.nemo --span-mode sentence

Nodes split the input by --rank/--world-size, or by a slurm job array (SLURM_ARRAY_TASK_ID /
SLURM_ARRAY_TASK_COUNT) when those flags are not given. Running the same command again resumes.
"""

from __future__ import annotations

import argparse
import os
import sys

from megatron_inserter.data.synth.config import DEFAULT_SPEECH_RATIO, SynthConfig, parse_shard_size


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="inserter synth", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("input and output")
    g.add_argument("--input", nargs="+", required=True, metavar="PATH",
                   help="jsonl files (.jsonl, .jsonl.gz, .jsonl.zst), globs or directories")
    g.add_argument("--output-dir", required=True, help="where shards, manifests and stats.json go")
    g.add_argument("--json-keys", default="text", help="the record field holding the document text")
    g.add_argument("--name", default="interleaved", help="shard name prefix: NAME-RANK-INDEX.tar")
    g.add_argument("--shard-size", default="1GB",
                   help="target shard size (e.g. 500MB, 1GB) or documents per shard (e.g. 1000)")
    g = p.add_argument_group("span selection")
    g.add_argument("--span-mode", choices=("word", "sentence"), default="word")
    g.add_argument("--speech-ratio", type=float, default=None,
                   help="share of words read aloud (default: 0.3 for word mode, 0.4 for sentence mode)")
    g.add_argument("--min-span-words", type=int, default=5)
    g.add_argument("--max-span-words", type=int, default=15)
    g.add_argument("--seed", type=int, default=1234)
    g = p.add_argument_group("speech")
    g.add_argument("--tts", choices=("espeak", "nemo"), default="espeak")
    g.add_argument("--speaker-policy", choices=("span", "document"), default="span",
                   help="draw a speaker per span or one per document")
    g.add_argument("--max-speech-seconds-per-doc", type=float, default=600.0,
                   help="spans past this much speech in one document stay text")
    g.add_argument("--espeak-engine", choices=("auto", "library", "command"), default="auto",
                   help="espeak-ng in-process (library) or one process per span (command)")
    g.add_argument("--tts-model", default=None, help="FastPitch .nemo file (--tts nemo)")
    g.add_argument("--vocoder-model", default=None, help="HiFi-GAN .nemo file (--tts nemo)")
    g.add_argument("--tts-batch-size", type=int, default=16, help="spans per NeMo batch")
    g.add_argument("--no-text-normalization", action="store_true",
                   help="do not normalize text with nemo_text_processing before NeMo TTS")
    g.add_argument("--text-norm-cache-dir", default=None,
                   help="cache for the built text normalizers (default ~/.cache/megatron_inserter/text_norm)")
    g = p.add_argument_group("scale")
    g.add_argument("--workers", type=int, default=1, help="worker processes on this node")
    g.add_argument("--rank", type=int, default=None, help="this node's rank (default: slurm array task, else 0)")
    g.add_argument("--world-size", type=int, default=None,
                   help="number of nodes (default: slurm array task count, else 1)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def resolve_rank(rank: int | None, world_size: int | None, environ=None) -> tuple[int, int]:
    env = os.environ if environ is None else environ
    if rank is None and world_size is None and "SLURM_ARRAY_TASK_ID" in env:
        task, first = int(env["SLURM_ARRAY_TASK_ID"]), int(env.get("SLURM_ARRAY_TASK_MIN", 0))
        count = int(env.get("SLURM_ARRAY_TASK_COUNT", 0))
        if count <= 0:
            raise ValueError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; pass --rank/--world-size")
        return task - first, count
    if (rank is None) != (world_size is None):
        raise ValueError("give both --rank and --world-size, or neither")
    return (rank or 0), (world_size or 1)


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    rank, world_size = resolve_rank(args.rank, args.world_size)
    ratio = args.speech_ratio if args.speech_ratio is not None else DEFAULT_SPEECH_RATIO[args.span_mode]
    return SynthConfig(
        inputs=tuple(args.input), output_dir=args.output_dir, tts=args.tts, span_mode=args.span_mode,
        speech_ratio=ratio, workers=args.workers, seed=args.seed, json_key=args.json_keys,
        min_span_words=args.min_span_words, max_span_words=args.max_span_words,
        speaker_policy=args.speaker_policy, shard_size=parse_shard_size(args.shard_size), rank=rank,
        world_size=world_size, max_speech_seconds_per_doc=args.max_speech_seconds_per_doc,
        tts_model=os.path.abspath(args.tts_model) if args.tts_model else None,
        vocoder_model=os.path.abspath(args.vocoder_model) if args.vocoder_model else None,
        name=args.name, espeak_engine=args.espeak_engine, tts_batch_size=args.tts_batch_size,
        text_normalization=not args.no_text_normalization, text_norm_cache_dir=args.text_norm_cache_dir,
        progress=not args.no_progress,
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ValueError as e:
        parser.error(str(e))
    from megatron_inserter.data.synth.corpus import InputError
    from megatron_inserter.data.synth.pipeline import run_synthesis
    from megatron_inserter.data.synth.shards import RunArgumentsMismatch
    from megatron_inserter.data.synth.tts import TTSUnavailableError

    try:
        result = run_synthesis(cfg)
    except (InputError, RunArgumentsMismatch, TTSUnavailableError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    s = result.rank_stats.summary()
    print(
        f"[synth] rank {cfg.rank}/{cfg.world_size}: {s['docs_written']} documents written, "
        f"{s['docs_skipped']} skipped {s['skipped']}, {s['spans']} spans, {s['speech_hours']:.3f} h of speech, "
        f"speech ratio {s['speech_ratio']:.3f} (target {cfg.speech_ratio}), "
        f"{(s['x_real_time_per_core'] or 0):.0f}x real time per core; "
        f"{result.units_done} shards made, {result.units_resumed} already done -> {cfg.output_dir}",
        file=sys.stderr,
    )
    if not result.ok:
        print(f"error: {len(result.failed_units)} shards failed: {result.failed_units}; "
              "run the same command again to retry them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
