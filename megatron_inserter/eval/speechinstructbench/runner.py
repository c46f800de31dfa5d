"""SpeechInstructBench end to end: load rows, generate answers, judge, score, report.

Output folder:
  responses.jsonl              answers as they are generated ({uid, response} or {uid, error}); with
                               data parallelism one ``responses.rankRRRRR-of-NNNNN.jsonl`` per rank and a
                               ``.done`` marker when a rank has finished its slice
  judgements.jsonl             judge verdicts (resumable; see ``judging``)
  scored.jsonl                 every row with ``response`` and ``pred_score`` (the benchmark's format), plus
                               ``eval_meta`` and, when not scored, ``score_error`` / ``judge_error``
  results.json, results.md     metrics, per-group details, configuration and run statistics

Re-running the same command resumes: answered rows are not generated again and complete verdicts are not
judged again. Rank 0 gathers the ranks' answers (waiting up to ``gather_timeout_s`` for their markers)
and scores; other ranks stop after their slice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from megatron_inserter.eval.generate import PendingItem, gather_sharded, generate_sharded, is_answered
from megatron_inserter.eval.judge import Judge, JudgeConfig
from megatron_inserter.eval.parallel import check_rank
from megatron_inserter.eval.records import (
    read_jsonl,
    write_json_atomic,
    write_jsonl_atomic,
    write_text_atomic,
)
from megatron_inserter.eval.responder import EvalRequest, Responder, SamplingParams
from megatron_inserter.eval.speechinstructbench import layout, report, text_units
from megatron_inserter.eval.speechinstructbench.closed import score_closed_rows
from megatron_inserter.eval.speechinstructbench.judged import tally_judged
from megatron_inserter.eval.speechinstructbench.judging import judge_rows
from megatron_inserter.eval.speechinstructbench.layout import META

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful AI assistant. Please answer the question based on the provided audio."
)
MODALITIES = ("speech", "text")


@dataclass
class RunConfig:
    output_dir: Path
    name: str = "model"
    tasks: tuple[str, ...] = layout.TASKS
    variants: tuple[str, ...] = layout.VARIANTS
    languages: tuple[str, ...] = layout.LANGUAGES
    modality: str = "speech"  # speech: audio + text_prompt; text: the row's written prompt, no audio
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    text_prompt: str = ""
    sampling: SamplingParams = field(default_factory=SamplingParams)
    batch_size: int = 8
    dp_rank: int = 0
    dp_size: int = 1
    gather_timeout_s: float = 0.0
    rules: str = "speechinstructbench"
    sentence_splitter: str = "auto"
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    judge_workers: int = 4
    progress: bool = True


def build_request(row: dict, config: RunConfig) -> EvalRequest | None:
    meta = row[META]
    if config.modality == "text":
        text = row.get("prompt")
        if not isinstance(text, str):
            return None
        prompt = text if not config.text_prompt else f"{text}\n{config.text_prompt}"
        return EvalRequest(
            text_prompt=prompt,
            system_prompt=config.system_prompt,
            sampling=config.sampling,
            request_id=meta["uid"],
        )
    if "audio" not in meta:
        return None
    return EvalRequest(
        text_prompt=config.text_prompt,
        audio_path=meta["audio"],
        system_prompt=config.system_prompt,
        sampling=config.sampling,
        request_id=meta["uid"],
    )


def generate(rows: list[dict], responder: Responder, config: RunConfig) -> dict:
    """Answer this rank's slice of ``rows``; returns generation statistics."""
    check_rank(config.dp_rank, config.dp_size)
    items, no_input = [], []
    for row in rows:
        request = build_request(row, config)
        if request is None:
            no_input.append(row[META]["uid"])
        else:
            items.append(PendingItem(row[META]["uid"], request))
    stats = generate_sharded(
        items,
        responder,
        config.output_dir,
        "responses",
        config.dp_rank,
        config.dp_size,
        config.batch_size,
        config.progress,
    )
    return {**stats, "skipped_no_input": len(no_input), "first_skipped_no_input": no_input[:20]}


def gather(rows: list[dict], config: RunConfig) -> list[dict] | None:
    """Rows with every rank's answers merged in (``response`` or ``generation_error``), in row order; None
    when some rank has not finished."""
    records = gather_sharded(config.output_dir, "responses", config.dp_size, config.gather_timeout_s)
    if records is None:
        return None
    merged = []
    for row in rows:
        row = {k: v for k, v in row.items() if k not in ("response", "generation_error")}
        record = records.get(row[META]["uid"])
        if is_answered(record):
            row["response"] = record["response"]
        elif record is not None:
            row["generation_error"] = record.get("error", "unknown")
        merged.append(row)
    return merged


def score(rows: list[dict], judge: Judge | None, config: RunConfig, stats: dict | None = None) -> dict:
    """Judge and score ``rows`` (each with ``eval_meta``), write the outputs, return the results dict."""
    config.output_dir.mkdir(parents=True, exist_ok=True)
    judge_stats = judge_rows(
        rows,
        judge,
        config.judge,
        config.output_dir / "judgements.jsonl",
        workers=config.judge_workers if judge is not None and judge.describe()["kind"] == "http" else 1,
        progress=config.progress,
    )
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for row in rows:
        meta = row[META]
        groups.setdefault((meta["task"], meta["variant"], meta["language"]), []).append(row)
    details = {}
    for (task, variant, language), group_rows in sorted(groups.items()):
        if task == "closed":
            summary = score_closed_rows(group_rows, config.rules, config.sentence_splitter).summary()
        else:
            summary = tally_judged(task, group_rows).summary()
        details[report.group_name(task, variant, language)] = summary
    write_jsonl_atomic(config.output_dir / "scored.jsonl", rows)
    splitter_source = text_units.english_sentence_splitter(config.sentence_splitter)[1]
    results = {
        "kind": "speechinstructbench",
        "name": config.name,
        "metrics": report.flat_metrics(details),
        "details": details,
        "config": {
            "tasks": list(config.tasks),
            "variants": list(config.variants),
            "languages": list(config.languages),
            "modality": config.modality,
            "system_prompt": config.system_prompt,
            "text_prompt": config.text_prompt,
            "sampling": asdict(config.sampling),
            "checker_rules": config.rules,
            "sentence_splitter": splitter_source,
            "judge": None if judge is None else {**judge.describe(), **asdict(config.judge)},
        },
        "stats": {**(stats or {}), "judge": judge_stats},
    }
    write_json_atomic(config.output_dir / "results.json", results)
    write_text_atomic(config.output_dir / "results.md", report.leaderboard_markdown(details, config.name))
    return results


def load_benchmark(bench_dir: Path, config: RunConfig) -> tuple[list[dict], layout.LoadReport]:
    if not bench_dir.is_dir():
        raise FileNotFoundError(f"--bench-dir {bench_dir} is not a folder")
    found = layout.discover(bench_dir, exclude=config.output_dir)
    if not found.files:
        raise FileNotFoundError(
            f"no SpeechInstructBench jsonl files under {bench_dir} (expected closed-ended/, open-ended/ and "
            f"adjustment/ from ddwang2000/SpeechInstructBench); skipped: {found.skipped_files[:5]}"
        )
    rows = layout.load_rows(bench_dir, found, config.tasks, config.variants, config.languages)
    if not rows:
        raise ValueError(
            f"no rows under {bench_dir} match tasks={config.tasks} variants={config.variants} "
            f"languages={config.languages}"
        )
    return rows, found


def run(
    bench_dir: Path,
    responder: Responder,
    judge: Judge | None,
    config: RunConfig,
    loaded: tuple[list[dict], layout.LoadReport] | None = None,
) -> dict | None:
    """Generate (this rank's slice), then on rank 0 gather and score.

    ``loaded``: the result of :func:`load_benchmark`, when the caller has it already."""
    rows, found = loaded if loaded is not None else load_benchmark(bench_dir, config)
    generation = generate(rows, responder, config)
    if config.dp_rank != 0:
        return None
    merged = gather(rows, config)
    if merged is None:
        return None
    return score(merged, judge, config, stats={"load": found.as_dict(), "generation_rank0": generation})


def load_scored_rows(rows_path: Path, config: RunConfig) -> tuple[list[dict], dict]:
    """Rows of another run or tool (each with ``response``), tagged with ``eval_meta`` and filtered by the
    configured tasks, variants and languages."""
    read = read_jsonl(rows_path)
    if not read.rows:
        raise ValueError(f"{rows_path} has no rows")
    rows, seen, filtered = [], set(), 0
    for i, row in enumerate(read.rows):
        meta = layout.infer_meta(row, i)
        selected = (
            meta["task"] in config.tasks
            and meta["language"] in config.languages
            and (
                meta["task"] != "closed" or meta["variant"] in config.variants or meta["variant"] == "unknown"
            )
        )
        if not selected:
            filtered += 1
            continue
        if meta["uid"] in seen:
            meta["uid"] = f"{meta['uid']}#line{i}"
        seen.add(meta["uid"])
        rows.append({**row, META: meta})
    stats = {
        "input": str(rows_path),
        "rows": len(rows),
        "filtered_out": filtered,
        "bad_lines": [str(b) for b in read.bad_lines],
        "rows_without_response": sum(not isinstance(r.get("response"), str) for r in rows),
    }
    return rows, stats


def needs_judge(rows: list[dict]) -> bool:
    return any(row[META]["task"] in ("open", "adjustment") for row in rows)
