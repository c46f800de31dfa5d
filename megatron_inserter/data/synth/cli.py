"""``inserter synth``: synthesize an interleaved speech-text corpus into webdataset shards.

    inserter synth --input 'corpus/*.jsonl.zst' --output-dir shards/ --workers 16
    inserter synth --input corpus/ --output-dir shards/ --tts nemo --tts-model fastpitch.nemo \\
        --vocoder-model hifigan.nemo --span-mode sentence
    inserter synth --input corpus/ --output-dir shards/ --tts openai --tts-url http://gpu01:8000/v1 \\
        --tts-url http://gpu02:8000/v1 --tts-model kokoro --tts-voices voices.tsv --tts-concurrency 16 \\
        --asr-url http://gpu03:8001/v1 --asr-model whisper-large-v3 --max-span-wer 0.2

Nodes split the input by --rank/--world-size, or by a slurm job array (SLURM_ARRAY_TASK_ID /
SLURM_ARRAY_TASK_COUNT) when those flags are not given. Running the same command again resumes.
"""

from __future__ import annotations

import sys

from megatron_inserter.data.synth.config import SynthConfig, resolve_rank
from megatron_inserter.flags import run_command

__all__ = ["main", "resolve_rank", "run"]


def run(cfg: SynthConfig) -> int:
    from megatron_inserter.data.synth.pipeline import run_synthesis

    result = run_synthesis(cfg)
    s = result.rank_stats.summary()
    if s["tts_servers"]:
        ok = sum(v["ok"] or 0 for v in s["tts_servers"].values())
        speed = (f"{ok} requests to {len(s['tts_servers'])} TTS servers, failures {s['tts_failures'] or 'none'} "
                 "(latencies and real-time factors in stats.json)")
    else:
        speed = f"{(s['x_real_time_per_core'] or 0):.0f}x real time per core"
    if cfg.asr_enabled:
        mean = f"{s['asr_wer_mean']:.3f}" if s["asr_wer_mean"] is not None else "-"
        speed += (f"; ASR checks {s['asr_checked']} (mean error rate {mean}), {s['asr_resynthesized']} spoken "
                  f"again, {s['spans_asr_rejected']} kept as text")
    print(
        f"[synth] rank {cfg.rank}/{cfg.world_size}: {s['docs_written']} documents written, "
        f"{s['docs_skipped']} skipped {s['skipped']}, {s['spans']} spans, {s['speech_hours']:.3f} h of speech, "
        f"speech ratio {s['speech_ratio']:.3f} (target {cfg.speech_ratio}), {speed}; "
        f"{result.units_done} shards made, {result.units_resumed} already done -> {cfg.output_dir}",
        file=sys.stderr,
    )
    if not result.ok:
        print(f"inserter synth: error: {len(result.failed_units)} shards failed: {result.failed_units}; "
              "run the same command again to retry them", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command("inserter synth", SynthConfig, run, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
