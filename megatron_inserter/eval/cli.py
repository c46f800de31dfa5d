"""``inserter eval``: benchmark a checkpoint or score existing responses.

  inserter eval speechinstructbench --bench-dir DIR --load CKPT --output DIR
        [--tasks closed,open,adjustment] [--variants standard,...] [--languages en,zh]
  inserter eval speechinstructbench --score-only ROWS.jsonl --output DIR
  inserter eval asr --manifest MANIFEST.jsonl --load CKPT --output DIR
  inserter eval audio-qa --manifest MANIFEST.jsonl --load CKPT --output DIR
  inserter eval attributes --seeds HELD_OUT_SEEDS.jsonl --load CKPT --output DIR   (or --dataset DIR)
  inserter eval compare RESULTS.json RESULTS.json ... [--output TABLE.md]

Open-ended and adjustment tasks need a judge: an OpenAI-compatible endpoint configured by
INSERTER_JUDGE_URL / INSERTER_JUDGE_MODEL / INSERTER_JUDGE_API_KEY (``--judge http``, the default when the
URL is set), a local checkpoint (``--judge local --judge-load DIR``), or ``--judge none`` to leave them
unscored. Data parallel: start one process per rank with ``--dp-rank R --dp-size N``; rank 0 scores.
Rows that cannot be used are listed with their reason on stderr and in the results; they never stop a run.

Every task's flags are one dataclass here; the flags shared by the tasks that generate are declared once
(:class:`GenerationFlags`). This module imports only the standard library and the flag pattern, so
``--help`` loads no model code.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from megatron_inserter.errors import UsageError
from megatron_inserter.eval.judge import JudgeConfig
from megatron_inserter.eval.responder import TEMPLATE_CHOICES
from megatron_inserter.eval.speechinstructbench.choices import (
    LANGUAGE_ALIASES,
    LANGUAGES,
    MODALITIES,
    RULE_SETS,
    SPLITTER_CHOICES,
    TASK_ALIASES,
    TASKS,
    VARIANTS,
    parse_list,
)
from megatron_inserter.flags import arg, run_subcommands

PROG = "inserter eval"
GEN, DP, JUDGE = "generation", "data parallel", "judge"
J = JudgeConfig()


@dataclass
class OutputFlags:
    output: str = arg(None, "output folder (resumable: a rerun answers only what is missing)", required=True,
                      metavar="DIR")
    name: str | None = arg(None, "name in result tables (default: the checkpoint's or input's folder)")
    progress: bool = arg(True, "progress bars on stderr")


@dataclass
class GenerationFlags(OutputFlags):
    load: str | None = arg(None, "checkpoint folder to evaluate", metavar="DIR", group=GEN)
    prompt_template: str = arg("auto", "prompt layout: auto = chatml when the checkpoint's tokenizer has "
                               "<|im_start|>/<|im_end|> tokens, else plain (said on stderr)",
                               choices=TEMPLATE_CHOICES, group=GEN)
    responder_arg: list = arg([], "extra keyword for build_responder (repeatable; VALUE parsed as JSON when "  # noqa: RUF009
                              "possible)", repeat=True, metavar="KEY=VALUE", group=GEN)
    system_prompt: str | None = arg(None, "system prompt of every request (chatml)", group=GEN)
    temperature: float = arg(0.0, "sampling temperature; 0 = greedy", group=GEN)
    top_p: float = arg(1.0, "nucleus sampling mass", group=GEN)
    top_k: int = arg(0, "top-k sampling; 0 = off", group=GEN)
    max_new_tokens: int = arg(1024, "longest answer, in tokens", group=GEN)
    seed: int | None = arg(None, "seed of sampled decoding", group=GEN)
    batch_size: int = arg(8, "requests per respond() call", group=GEN)
    dp_rank: int = arg(0, "this process's data-parallel rank", group=DP)
    dp_size: int = arg(1, "number of data-parallel processes", group=DP)
    gather_timeout: float = arg(1800.0, "seconds rank 0 waits for the other ranks before scoring (then: rerun "
                                "to score)", group=DP)


@dataclass
class JudgeFlags(GenerationFlags):
    judge: str = arg("auto", "auto = http when INSERTER_JUDGE_URL is set", choices=("auto", "http", "local",
                                                                                     "none"), group=JUDGE)
    judge_load: str | None = arg(None, "checkpoint for --judge local (default: --load)", metavar="DIR",
                                 group=JUDGE)
    judge_samples: int = arg(J.samples, "judge answers per row (majority vote)", group=JUDGE)
    judge_temperature: float = arg(J.temperature, "judge sampling temperature", group=JUDGE)
    judge_top_p: float = arg(J.top_p, "judge nucleus sampling mass", group=JUDGE)
    judge_max_tokens: int = arg(J.max_tokens, "longest judge answer, in tokens", group=JUDGE)
    judge_max_attempts: int = arg(J.max_attempts, "judge calls per row before it counts as a judge error",
                                  group=JUDGE)
    judge_backoff: float = arg(J.backoff_s, "first retry delay, seconds (doubles each retry)", group=JUDGE)
    judge_timeout: float = arg(J.timeout_s, "deadline in seconds for a whole judge request, reply included",
                               group=JUDGE)
    judge_workers: int = arg(4, "concurrent HTTP judge requests", group=JUDGE)


@dataclass
class SpeechInstructBenchFlags(JudgeFlags):
    bench_dir: str | None = arg(None, "local copy of ddwang2000/SpeechInstructBench", metavar="DIR")
    score_only: str | None = arg(None, "score rows that already carry `response` (no generation)",
                                 metavar="ROWS.jsonl")
    tasks: str = arg(",".join(TASKS), "comma-separated tasks")
    variants: str = arg(",".join(VARIANTS), "comma-separated closed-ended variants")
    languages: str = arg(",".join(LANGUAGES), "comma-separated languages (cn = zh)")
    modality: str = arg("speech", "speech: the spoken instruction; text: the written instruction (text-only "
                        "upper bound)", choices=MODALITIES)
    text_prompt: str = arg("", "text after the audio (default: none)")
    checker_rules: str = arg("speechinstructbench", "closed-ended checker rules", choices=RULE_SETS)
    sentence_splitter: str = arg("auto", "English sentence splitter of the checkers", choices=SPLITTER_CHOICES)


@dataclass
class AsrFlags(GenerationFlags):
    manifest: str = arg(None, "jsonl: audio_filepath, text[, lang, id]", required=True, metavar="PATH")
    language: str = arg("auto", "language of rows without lang (auto: zh when the text has CJK)",
                        choices=("auto", "en", "zh"))
    prompt_en: str | None = arg(None, "instruction for English clips (default: ask for a transcription)")
    prompt_zh: str | None = arg(None, "instruction for Chinese clips (default: ask for a transcription)")
    nemo_cross_check: bool = arg(True, "recompute WER/CER with NeMo when it is installed and compare")
    max_new_tokens: int = arg(448, "longest answer, in tokens", group=GEN)


@dataclass
class AudioQaFlags(GenerationFlags):
    manifest: str = arg(None, "jsonl: audio_filepath, instruction, label[, task, candidates, id]", required=True,
                        metavar="PATH")
    max_new_tokens: int = arg(64, "longest answer, in tokens", group=GEN)


@dataclass
class AttributesFlags(JudgeFlags):
    seeds: str | None = arg(None, "seeds file of held-out clips (`inserter desta build`)", metavar="FILE")
    dataset: str | None = arg(None, "folder of Dynamic-SUPERB rows (audio, instruction, label; *.jsonl / *.json); "
                              "rows with a reference answer instead of a label are judged", metavar="DIR")
    tasks: str = arg("gender,accent,language,pitch,speed,volume,noise", "comma-separated tasks (--seeds)")
    max_per_task: int = arg(0, "at most this many rows per task (0: all)")
    max_new_tokens: int = arg(64, "longest answer, in tokens", group=GEN)


@dataclass
class CompareFlags:
    results: list = arg([], "results JSON files of `inserter eval`", positional=True, required=True)  # noqa: RUF009
    output: str | None = arg(None, "also write the table to this file", metavar="PATH")


def _sampling(flags: GenerationFlags):
    from megatron_inserter.eval.responder import SamplingParams

    return SamplingParams(temperature=flags.temperature, top_p=flags.top_p, top_k=flags.top_k,
                          max_new_tokens=flags.max_new_tokens, seed=flags.seed)


def _common(flags: GenerationFlags) -> dict:
    """The EvalConfig fields every task shares."""
    source = flags.load or getattr(flags, "score_only", None) or flags.output
    return {"output_dir": Path(flags.output), "name": flags.name or Path(str(source)).resolve().name or "model",
            "sampling": _sampling(flags), "batch_size": flags.batch_size, "dp_rank": flags.dp_rank,
            "dp_size": flags.dp_size, "gather_timeout_s": flags.gather_timeout, "progress": flags.progress}


def _check_generation(flags: GenerationFlags) -> None:
    from megatron_inserter.eval.slices import check_rank

    try:
        check_rank(flags.dp_rank, flags.dp_size)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if flags.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {flags.batch_size}")


def _responder(flags: GenerationFlags, prog: str, load: str | None = None):
    from megatron_inserter.eval.responder import load_responder, parse_responder_args

    load = load or flags.load
    if not load:
        raise UsageError("--load CKPT is required to generate responses")
    return load_responder(load, flags.prompt_template, prog, **parse_responder_args(flags.responder_arg))


def _judge_config(flags: JudgeFlags) -> JudgeConfig:
    config = JudgeConfig(
        samples=flags.judge_samples, temperature=flags.judge_temperature, top_p=flags.judge_top_p,
        max_tokens=flags.judge_max_tokens, max_attempts=flags.judge_max_attempts, backoff_s=flags.judge_backoff,
        timeout_s=flags.judge_timeout,
    )
    if config.samples < 1 or config.max_attempts < 1 or config.timeout_s <= 0:
        raise UsageError("--judge-samples and --judge-max-attempts must be >= 1 and --judge-timeout > 0")
    return config


def _judge(flags: JudgeFlags, needs_judge: bool, command: str = "speechinstructbench",
           needs: str = "open-ended and adjustment scoring", otherwise: str = "or --tasks closed"):
    """The judge, or for ``--judge local`` a function building it from the evaluated responder (so a bad
    judge configuration fails before any model is loaded)."""
    from megatron_inserter.eval.judge import HttpChatJudge, JudgeFatalError, ResponderJudge

    kind = flags.judge
    if kind == "auto":
        if not needs_judge:
            return None
        if not os.environ.get("INSERTER_JUDGE_URL"):
            raise UsageError(
                f"{needs} needs a judge: set INSERTER_JUDGE_URL and "
                "INSERTER_JUDGE_MODEL (and INSERTER_JUDGE_API_KEY), or pass --judge local [--judge-load DIR], "
                f"or --judge none to leave them unscored, {otherwise}"
            )
        kind = "http"
    if kind == "none":
        return None
    if kind == "http":
        try:
            return HttpChatJudge.from_env()
        except JudgeFatalError as err:
            raise UsageError(str(err)) from None
    load = flags.judge_load or flags.load
    if not load:
        raise UsageError("--judge local needs --judge-load DIR (or --load)")

    def build_local(responder=None):
        if responder is not None and load == flags.load:
            return ResponderJudge(responder, load)
        return ResponderJudge(_responder(flags, f"{PROG} {command}", load), load)

    return build_local


def run_speechinstructbench(flags: SpeechInstructBenchFlags) -> int:
    from megatron_inserter.eval.speechinstructbench import runner

    if (flags.score_only is None) == (flags.bench_dir is None):
        raise UsageError("give either --bench-dir DIR (with --load CKPT) or --score-only ROWS.jsonl")
    _check_generation(flags)
    judge_config = _judge_config(flags)
    try:
        tasks = parse_list(flags.tasks, TASKS, "--tasks", TASK_ALIASES)
        variants = parse_list(flags.variants, VARIANTS, "--variants")
        languages = parse_list(flags.languages, LANGUAGES, "--languages", LANGUAGE_ALIASES)
    except ValueError as err:
        raise UsageError(str(err)) from None
    config = runner.RunConfig(
        **_common(flags), tasks=tasks, variants=variants, languages=languages, modality=flags.modality,
        system_prompt=runner.DEFAULT_SYSTEM_PROMPT if flags.system_prompt is None else flags.system_prompt,
        text_prompt=flags.text_prompt, rules=flags.checker_rules, sentence_splitter=flags.sentence_splitter,
        judge=judge_config, judge_workers=flags.judge_workers,
    )
    if flags.score_only is not None:
        rows, stats = runner.load_scored_rows(Path(flags.score_only), config)
        judge = _judge(flags, runner.needs_judge(rows))
        results = runner.score(rows, judge() if callable(judge) else judge, config, stats)
    else:
        loaded = runner.load_benchmark(Path(flags.bench_dir), config)  # a bad folder fails before the model
        judge = _judge(flags, runner.needs_judge(loaded[0])) if flags.dp_rank == 0 else None
        responder = _responder(flags, f"{PROG} speechinstructbench")
        if callable(judge):
            judge = judge(responder)
        results = runner.run(Path(flags.bench_dir), responder, judge, config, loaded=loaded)
    if results is not None:
        print((config.output_dir / runner.SpeechInstructBenchTask.table).read_text(encoding="utf-8"))
    return 0


def _manifest(flags) -> Path:
    manifest = Path(flags.manifest)
    if not manifest.is_file():
        raise UsageError(f"--manifest {manifest} does not exist (a jsonl file, one row per clip)")
    return manifest


def _generate_and_score(flags: GenerationFlags, task, responder=None) -> int:
    """Run a task of the evaluation path with the checkpoint's responder; rank 0 prints the table."""
    from megatron_inserter.eval.task import run

    results = run(task, responder or _responder(flags, task.prog))
    if results is not None:
        print((task.config.output_dir / task.table).read_text(encoding="utf-8"))
    return 0


def run_asr(flags: AsrFlags) -> int:
    from megatron_inserter.eval import asr

    _check_generation(flags)
    prompts = dict(asr.DEFAULT_PROMPTS)
    prompts.update({k: v for k, v in (("en", flags.prompt_en), ("zh", flags.prompt_zh)) if v is not None})
    config = asr.AsrConfig(**_common(flags), language=flags.language, prompts=prompts,
                           system_prompt=flags.system_prompt, nemo_cross_check=flags.nemo_cross_check)
    return _generate_and_score(flags, asr.AsrTask(_manifest(flags), config))


def run_audio_qa(flags: AudioQaFlags) -> int:
    from megatron_inserter.eval import audio_qa

    _check_generation(flags)
    config = audio_qa.AudioQaConfig(**_common(flags), system_prompt=flags.system_prompt)
    return _generate_and_score(flags, audio_qa.AudioQaTask(_manifest(flags), config))


def run_attributes(flags: AttributesFlags) -> int:
    from megatron_inserter.eval import attributes

    _check_generation(flags)
    if (flags.seeds is None) == (flags.dataset is None):
        raise UsageError("give either --seeds FILE (held-out clips of `inserter desta build`) or --dataset DIR")
    if flags.max_per_task < 0:
        raise UsageError(f"--max-per-task must be >= 0, got {flags.max_per_task}")
    config = attributes.AttributesConfig(**_common(flags), system_prompt=flags.system_prompt,
                                         tasks=tuple(t.strip() for t in flags.tasks.split(",") if t.strip()),
                                         max_per_task=flags.max_per_task, judge=_judge_config(flags),
                                         judge_workers=flags.judge_workers)
    task = attributes.AttributesTask(config, seeds=Path(flags.seeds) if flags.seeds else None,
                                     dataset=Path(flags.dataset) if flags.dataset else None)
    rows = task.load() if flags.dp_rank == 0 else []  # a bad input or judge setup fails before the model
    judge = _judge(flags, task.needs_judge(rows), "attributes", "scoring open-ended rows",
                   "or give only labelled rows") if flags.dp_rank == 0 else None
    responder = _responder(flags, task.prog)
    task.judge = judge(responder) if callable(judge) else judge
    return _generate_and_score(flags, task, responder)


def run_compare(flags: CompareFlags) -> int:
    from megatron_inserter.eval.compare import compare_markdown
    from megatron_inserter.files import write_text_atomic

    table = compare_markdown([Path(p) for p in flags.results])
    if flags.output is not None:
        write_text_atomic(flags.output, table)
    print(table)
    return 0


COMMANDS = {
    "speechinstructbench": (SpeechInstructBenchFlags, run_speechinstructbench,
                            "SpeechInstructBench (closed, open-ended, adjustment)"),
    "asr": (AsrFlags, run_asr, "WER (English) / CER (Chinese) on a manifest"),
    "audio-qa": (AudioQaFlags, run_audio_qa, "instruction + audio -> label accuracy (Dynamic-SUPERB style)"),
    "attributes": (AttributesFlags, run_attributes,
                   "who speaks and how (gender, accent, pitch, speed, noise): label accuracy vs chance"),
    "compare": (CompareFlags, run_compare, "several results JSON files side by side (Markdown)"),
}


def main(argv: list[str] | None = None) -> int:
    return run_subcommands(PROG, COMMANDS, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
