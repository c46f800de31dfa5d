"""``inserter eval``: benchmark a checkpoint or score existing responses.

  inserter eval speechinstructbench --bench-dir DIR --load CKPT --output DIR
        [--tasks closed,open,adjustment] [--variants standard,...] [--languages en,zh]
  inserter eval speechinstructbench --score-only ROWS.jsonl --output DIR
  inserter eval asr --manifest MANIFEST.jsonl --load CKPT --output DIR
  inserter eval audio-qa --manifest MANIFEST.jsonl --load CKPT --output DIR
  inserter eval compare RESULTS.json RESULTS.json ... [--output TABLE.md]

Open-ended and adjustment tasks need a judge: an OpenAI-compatible endpoint configured by
INSERTER_JUDGE_URL / INSERTER_JUDGE_MODEL / INSERTER_JUDGE_API_KEY (``--judge http``, the default when the
URL is set), a local checkpoint (``--judge local --judge-load DIR``), or ``--judge none`` to leave them
unscored. Data parallel: start one process per rank with ``--dp-rank R --dp-size N``; rank 0 scores.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from megatron_inserter.eval.responder import ResponderUnavailableError, SamplingParams, parse_responder_args


class UsageError(ValueError):
    pass


def _csv(choices: tuple[str, ...], aliases: dict[str, str] | None = None):
    def parse(text: str) -> tuple[str, ...]:
        items = [
            aliases.get(t, t) if aliases else t for t in (s.strip().lower() for s in text.split(",")) if t
        ]
        bad = [t for t in items if t not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated subset of {','.join(choices)}, got {text!r}"
            )
        return tuple(dict.fromkeys(items))

    return parse


def _add_generation(p: argparse.ArgumentParser, max_new_tokens: int) -> None:
    g = p.add_argument_group("generation")
    g.add_argument("--load", type=str, default=None, help="checkpoint folder to evaluate")
    g.add_argument(
        "--responder-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra keyword for build_responder (repeatable; VALUE parsed as JSON when possible)",
    )
    g.add_argument("--system-prompt", type=str, default=None)
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--batch-size", type=int, default=8, help="requests per respond() call")
    g.add_argument("--dp-rank", type=int, default=0)
    g.add_argument("--dp-size", type=int, default=1)
    g.add_argument(
        "--gather-timeout",
        type=float,
        default=1800.0,
        help="seconds rank 0 waits for the other ranks before scoring (then: rerun to score)",
    )
    p.add_argument("--output", type=Path, required=True, help="output folder (resumable)")
    p.add_argument(
        "--name", type=str, default=None, help="name in result tables (default: checkpoint folder)"
    )
    p.add_argument("--no-progress", action="store_true")


def _sampling(args) -> SamplingParams:
    return SamplingParams(
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )


def _name(args) -> str:
    if args.name:
        return args.name
    source = args.load or getattr(args, "score_only", None) or args.output
    return Path(str(source)).resolve().name or "model"


def _responder(args, load: str | None = None):
    from megatron_inserter.eval.responder import load_responder

    load = load or args.load
    if not load:
        raise UsageError("--load CKPT is required to generate responses")
    return load_responder(load, **parse_responder_args(args.responder_arg))


def build_parser() -> argparse.ArgumentParser:
    from megatron_inserter.eval.judge import JudgeConfig
    from megatron_inserter.eval.speechinstructbench import layout, text_units
    from megatron_inserter.eval.speechinstructbench.checkers import RULE_SETS

    parser = argparse.ArgumentParser(
        prog="inserter eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sib = sub.add_parser("speechinstructbench", help="SpeechInstructBench (closed, open-ended, adjustment)")
    sib.add_argument(
        "--bench-dir", type=Path, default=None, help="local copy of ddwang2000/SpeechInstructBench"
    )
    sib.add_argument(
        "--score-only",
        type=Path,
        default=None,
        metavar="ROWS.jsonl",
        help="score rows that already carry `response` (no generation)",
    )
    sib.add_argument("--tasks", type=_csv(layout.TASKS, {"adjust": "adjustment"}), default=layout.TASKS)
    sib.add_argument("--variants", type=_csv(layout.VARIANTS), default=layout.VARIANTS)
    sib.add_argument(
        "--languages", type=_csv(layout.LANGUAGES, layout.LANGUAGE_ALIASES), default=layout.LANGUAGES
    )
    sib.add_argument(
        "--modality",
        choices=("speech", "text"),
        default="speech",
        help="speech: the spoken instruction; text: the written instruction (text-only upper bound)",
    )
    sib.add_argument("--text-prompt", type=str, default="", help="text after the audio (default: none)")
    sib.add_argument("--checker-rules", choices=RULE_SETS, default="speechinstructbench")
    sib.add_argument("--sentence-splitter", choices=text_units.SPLITTER_CHOICES, default="auto")
    j = sib.add_argument_group("judge")
    defaults = JudgeConfig()
    j.add_argument("--judge", choices=("auto", "http", "local", "none"), default="auto")
    j.add_argument(
        "--judge-load", type=str, default=None, help="checkpoint for --judge local (default: --load)"
    )
    j.add_argument("--judge-samples", type=int, default=defaults.samples)
    j.add_argument("--judge-temperature", type=float, default=defaults.temperature)
    j.add_argument("--judge-top-p", type=float, default=defaults.top_p)
    j.add_argument("--judge-max-tokens", type=int, default=defaults.max_tokens)
    j.add_argument("--judge-max-attempts", type=int, default=defaults.max_attempts)
    j.add_argument(
        "--judge-backoff", type=float, default=defaults.backoff_s, help="first retry delay, seconds"
    )
    j.add_argument("--judge-timeout", type=float, default=defaults.timeout_s, help="seconds per HTTP request")
    j.add_argument("--judge-workers", type=int, default=4, help="concurrent HTTP judge requests")
    _add_generation(sib, max_new_tokens=1024)

    asr = sub.add_parser("asr", help="WER (English) / CER (Chinese) on a manifest")
    asr.add_argument("--manifest", type=Path, required=True)
    asr.add_argument("--language", choices=("auto", "en", "zh"), default="auto")
    asr.add_argument("--prompt-en", type=str, default=None)
    asr.add_argument("--prompt-zh", type=str, default=None)
    asr.add_argument("--no-nemo-cross-check", action="store_true")
    _add_generation(asr, max_new_tokens=448)

    qa = sub.add_parser("audio-qa", help="instruction + audio -> label accuracy (Dynamic-SUPERB style)")
    qa.add_argument("--manifest", type=Path, required=True)
    _add_generation(qa, max_new_tokens=64)

    cmp_ = sub.add_parser("compare", help="several results JSON files side by side (Markdown)")
    cmp_.add_argument("results", type=Path, nargs="+")
    cmp_.add_argument("--output", type=Path, default=None, help="also write the table to this file")
    return parser


def _judge(args, needs_judge: bool):
    """The judge, or for ``--judge local`` a function building it from the evaluated responder (so a bad
    judge configuration fails before any model is loaded)."""
    from megatron_inserter.eval.judge import HttpChatJudge, JudgeFatalError, ResponderJudge

    kind = args.judge
    if kind == "auto":
        if not needs_judge:
            return None
        if not os.environ.get("INSERTER_JUDGE_URL"):
            raise UsageError(
                "open-ended and adjustment scoring needs a judge: set INSERTER_JUDGE_URL and "
                "INSERTER_JUDGE_MODEL (and INSERTER_JUDGE_API_KEY), or pass --judge local [--judge-load DIR], "
                "or --judge none to leave them unscored, or --tasks closed"
            )
        kind = "http"
    if kind == "none":
        return None
    if kind == "http":
        try:
            return HttpChatJudge.from_env()
        except JudgeFatalError as err:
            raise UsageError(str(err)) from None
    load = args.judge_load or args.load
    if not load:
        raise UsageError("--judge local needs --judge-load DIR (or --load)")

    def build_local(responder=None):
        if responder is not None and load == args.load:
            return ResponderJudge(responder, load)
        return ResponderJudge(_responder(args, load), load)

    return build_local


def run_speechinstructbench(args) -> int:
    from megatron_inserter.eval.judge import JudgeConfig
    from megatron_inserter.eval.speechinstructbench import runner

    if (args.score_only is None) == (args.bench_dir is None):
        raise UsageError("give either --bench-dir DIR (with --load CKPT) or --score-only ROWS.jsonl")
    judge_config = JudgeConfig(
        samples=args.judge_samples,
        temperature=args.judge_temperature,
        top_p=args.judge_top_p,
        max_tokens=args.judge_max_tokens,
        max_attempts=args.judge_max_attempts,
        backoff_s=args.judge_backoff,
        timeout_s=args.judge_timeout,
    )
    config = runner.RunConfig(
        output_dir=args.output,
        name=_name(args),
        tasks=args.tasks,
        variants=args.variants,
        languages=args.languages,
        modality=args.modality,
        system_prompt=runner.DEFAULT_SYSTEM_PROMPT if args.system_prompt is None else args.system_prompt,
        text_prompt=args.text_prompt,
        sampling=_sampling(args),
        batch_size=args.batch_size,
        dp_rank=args.dp_rank,
        dp_size=args.dp_size,
        gather_timeout_s=args.gather_timeout,
        rules=args.checker_rules,
        sentence_splitter=args.sentence_splitter,
        judge=judge_config,
        judge_workers=args.judge_workers,
        progress=not args.no_progress,
    )
    if args.score_only is not None:
        rows, stats = runner.load_scored_rows(args.score_only, config)
        judge = _judge(args, runner.needs_judge(rows))
        results = runner.score(rows, judge() if callable(judge) else judge, config, stats)
    else:
        loaded = runner.load_benchmark(args.bench_dir, config)  # fail on a bad folder before loading a model
        judge = _judge(args, runner.needs_judge(loaded[0])) if args.dp_rank == 0 else None
        responder = _responder(args)
        if callable(judge):
            judge = judge(responder)
        results = runner.run(args.bench_dir, responder, judge, config, loaded=loaded)
    if results is not None:
        print((config.output_dir / "results.md").read_text(encoding="utf-8"))
    return 0


def run_asr(args) -> int:
    from megatron_inserter.eval import asr

    prompts = dict(asr.DEFAULT_PROMPTS)
    prompts.update({k: v for k, v in (("en", args.prompt_en), ("zh", args.prompt_zh)) if v is not None})
    config = asr.AsrConfig(
        output_dir=args.output,
        name=_name(args),
        language=args.language,
        prompts=prompts,
        system_prompt=args.system_prompt,
        sampling=_sampling(args),
        batch_size=args.batch_size,
        dp_rank=args.dp_rank,
        dp_size=args.dp_size,
        gather_timeout_s=args.gather_timeout,
        nemo_cross_check=not args.no_nemo_cross_check,
        progress=not args.no_progress,
    )
    results = asr.run_asr(args.manifest, _responder(args), config)
    if results is not None:
        print((args.output / "asr_results.md").read_text(encoding="utf-8"))
    return 0


def run_audio_qa(args) -> int:
    from megatron_inserter.eval import audio_qa

    config = audio_qa.AudioQaConfig(
        output_dir=args.output,
        name=_name(args),
        system_prompt=args.system_prompt,
        sampling=_sampling(args),
        batch_size=args.batch_size,
        dp_rank=args.dp_rank,
        dp_size=args.dp_size,
        gather_timeout_s=args.gather_timeout,
        progress=not args.no_progress,
    )
    results = audio_qa.run_audio_qa(args.manifest, _responder(args), config)
    if results is not None:
        print((args.output / "audio_qa_results.md").read_text(encoding="utf-8"))
    return 0


def run_compare(args) -> int:
    from megatron_inserter.eval.compare import compare_markdown
    from megatron_inserter.eval.records import write_text_atomic

    table = compare_markdown(args.results)
    if args.output is not None:
        write_text_atomic(args.output, table)
    print(table)
    return 0


COMMANDS = {
    "speechinstructbench": run_speechinstructbench,
    "asr": run_asr,
    "audio-qa": run_audio_qa,
    "compare": run_compare,
}


def main(argv: list[str] | None = None) -> int:
    from megatron_inserter.eval.judge import JudgeFatalError

    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (UsageError, ResponderUnavailableError, JudgeFatalError, FileNotFoundError, ValueError) as err:
        print(f"inserter eval {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
