"""``inserter synth-filter``: check synthesized shards by ASR round trip and write the checked copies.

    inserter synth-filter --shards shards/ --output-dir shards-checked/ \\
        --asr-url http://gpu07:8000/v1 --asr-model whisper-large-v3 --max-span-wer 0.2
    inserter synth-filter --shards shards/ --output-dir shards-checked/ --asr-model models/whisper-small/

A speech segment above --max-span-wer (WER for English, CER for Chinese, a fraction) becomes text; the
kept ones record their error rate. Running the same command again resumes.
"""

from __future__ import annotations

import sys

from megatron_inserter.data.synth.config import FilterConfig
from megatron_inserter.flags import run_command


def run(cfg: FilterConfig) -> int:
    from megatron_inserter.data.synth.filter import run_filter

    s = run_filter(cfg).summary()
    print(f"[synth-filter] {s['docs_written']}/{s['docs_read']} documents kept; {s['spans']} speech segments kept, "
          f"{s['spans_asr_rejected']} turned into text; mean error rate "
          f"{s['asr_wer_mean'] if s['asr_wer_mean'] is not None else float('nan'):.3f} -> {cfg.output_dir}",
          file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command("inserter synth-filter", FilterConfig, run, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
