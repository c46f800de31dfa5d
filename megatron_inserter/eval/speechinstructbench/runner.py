"""SpeechInstructBench as a task of the evaluation path (``eval.task``): load rows, generate answers, judge, score, report.

Output folder:
  responses.jsonl              answers as they are generated ({uid, response} or {uid, error}); with
                               data parallelism one ``responses.rankRRRRR-of-NNNNN.jsonl`` per rank and a
                               ``.done`` marker when a rank has finished its slice
  judgements.jsonl             judge verdicts (resumable; see ``judging``)
  scored.jsonl                 every row with ``response`` and ``pred_score`` (the benchmark's format), plus
                               ``eval_meta`` and, when not scored, ``score_error`` / ``judge_error``
  results.json, results.md     metrics, per-group details, configuration, run statistics, skipped rows

Re-running the same command resumes: answered rows are not generated again and complete verdicts are not
judged again. Rank 0 gathers the ranks' answers (waiting up to ``gather_timeout_s`` for their markers)
and scores; other ranks stop after their slice. Rows that cannot be used (bad lines, missing audio,
malformed instruction lists, no valid judge verdict) are listed with their reason on stderr and in
``results.json`` (``skipped``); they never stop the run.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from megatron_inserter.errors import DataError, UsageError
from megatron_inserter.eval.judge import Judge, JudgeConfig
from megatron_inserter.eval.records import (
    read_jsonl,
    write_json_atomic,
    write_jsonl_atomic,
    write_text_atomic,
)
from megatron_inserter.eval.responder import EvalRequest, Responder
from megatron_inserter.eval.speechinstructbench import bench_files, leaderboard, text_units
from megatron_inserter.eval.speechinstructbench.bench_files import META
from megatron_inserter.eval.speechinstructbench.choices import MODALITIES  # noqa: F401 (re-exported)
from megatron_inserter.eval.speechinstructbench.closed import score_closed_rows
from megatron_inserter.eval.speechinstructbench.judged import tally_judged
from megatron_inserter.eval.speechinstructbench.judging import NO_JUDGE, judge_rows
from megatron_inserter.eval.task import EvalConfig, EvalTask, finish
from megatron_inserter.eval.task import run as run_task

_BAD_LINE_RE = re.compile(r"(.*?:\d+): (.*)", re.DOTALL)
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful AI assistant. Please answer the question based on the provided audio."
)


@dataclass
class RunConfig(EvalConfig):
    tasks: tuple[str, ...] = bench_files.TASKS
    variants: tuple[str, ...] = bench_files.VARIANTS
    languages: tuple[str, ...] = bench_files.LANGUAGES
    modality: str = "speech"  # speech: audio + text_prompt; text: the row's written prompt, no audio
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    text_prompt: str = ""
    rules: str = "speechinstructbench"
    sentence_splitter: str = "auto"
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    judge_workers: int = 4


def build_request(row: dict, config: RunConfig) -> EvalRequest | str:
    """The request for a row, or the reason it has none."""
    meta = row[META]
    if config.modality == "text":
        text = row.get("prompt")
        if not isinstance(text, str):
            return "no written prompt (text modality)"
        prompt = text if not config.text_prompt else f"{text}\n{config.text_prompt}"
        return EvalRequest(
            text_prompt=prompt,
            system_prompt=config.system_prompt,
            sampling=config.sampling,
            request_id=meta["uid"],
        )
    if "audio" not in meta:
        return f"audio not found ({bench_files.audio_reference(row) or 'no audio field'})"
    return EvalRequest(
        text_prompt=config.text_prompt,
        audio_path=meta["audio"],
        system_prompt=config.system_prompt,
        sampling=config.sampling,
        request_id=meta["uid"],
    )


class SpeechInstructBenchTask(EvalTask):
    command, kind, stem = "speechinstructbench", "speechinstructbench", "responses"
    table = "results.md"

    def __init__(
        self,
        config: RunConfig,
        judge: Judge | None = None,
        bench_dir: Path | None = None,
        loaded: tuple[list[dict], bench_files.LoadReport] | None = None,
    ):
        super().__init__(config)
        self.judge = judge
        self.bench_dir = bench_dir
        self.loaded = loaded

    def uid(self, row: dict) -> str:
        return row[META]["uid"]

    def load(self) -> list[dict]:
        rows, found = self.loaded if self.loaded is not None else load_benchmark(self.bench_dir, self.config)
        self.load_stats = found.as_dict()
        for bad in found.bad_lines:
            self.skips.add("input", f"{bad.path}:{bad.line}", bad.reason)
        return rows

    def request(self, row: dict) -> EvalRequest | str:
        return build_request(row, self.config)

    def score(self, rows: list[dict]) -> dict:
        config, judge = self.config, self.judge
        http = judge is not None and judge.describe()["kind"] == "http"
        judge_stats = judge_rows(
            rows,
            judge,
            config.judge,
            Path(config.output_dir) / "judgements.jsonl",
            workers=config.judge_workers if http else 1,
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
            details[leaderboard.group_name(task, variant, language)] = summary
        for row in rows:
            if isinstance(row.get("score_error"), str):
                self.skips.add("scoring", self.uid(row), row["score_error"])
            elif isinstance(row.get("judge_error"), str):
                self.skips.add("judge", self.uid(row), row["judge_error"])
        splitter_source = text_units.english_sentence_splitter(config.sentence_splitter)[1]
        return {
            "metrics": leaderboard.flat_metrics(details),
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
            "stats": {"judge": judge_stats},
        }

    def write(self, rows: list[dict], results: dict) -> None:
        out = Path(self.config.output_dir)
        write_jsonl_atomic(out / "scored.jsonl", rows)
        write_json_atomic(out / "results.json", results)
        write_text_atomic(out / self.table, leaderboard.leaderboard_markdown(results["details"], self.config.name))


def load_benchmark(bench_dir: Path, config: RunConfig) -> tuple[list[dict], bench_files.LoadReport]:
    bench_dir = Path(bench_dir)
    if not bench_dir.is_dir():
        raise UsageError(f"--bench-dir {bench_dir} is not a folder (a copy of ddwang2000/SpeechInstructBench)")
    found = bench_files.discover(bench_dir, exclude=Path(config.output_dir))
    if not found.files:
        raise DataError(
            f"no SpeechInstructBench jsonl files under {bench_dir} (expected closed-ended/, open-ended/ and "
            f"adjustment/ from ddwang2000/SpeechInstructBench); skipped: {found.skipped_files[:5]}"
        )
    rows = bench_files.load_rows(bench_dir, found, config.tasks, config.variants, config.languages)
    if not rows:
        raise DataError(
            f"no rows under {bench_dir} match tasks={config.tasks} variants={config.variants} "
            f"languages={config.languages}"
        )
    return rows, found


def run(
    bench_dir: Path,
    responder: Responder,
    judge: Judge | None,
    config: RunConfig,
    loaded: tuple[list[dict], bench_files.LoadReport] | None = None,
) -> dict | None:
    """Generate (this rank's slice), then on rank 0 gather and score.

    ``loaded``: the result of :func:`load_benchmark`, when the caller has it already."""
    return run_task(SpeechInstructBenchTask(config, judge, bench_dir, loaded), responder)


def score(rows: list[dict], judge: Judge | None, config: RunConfig, stats: dict | None = None) -> dict:
    """Judge and score ``rows`` (each with ``eval_meta``), write the outputs, return the results dict."""
    task = SpeechInstructBenchTask(config, judge)
    for bad in (stats or {}).get("bad_lines", []):  # "file:line: reason" from load_scored_rows
        match = _BAD_LINE_RE.match(bad)
        task.skips.add("input", *(match.groups() if match else (bad, "bad line")))
    return finish(task, rows, stats)


def load_scored_rows(rows_path: Path, config: RunConfig) -> tuple[list[dict], dict]:
    """Rows of another run or tool (each with ``response``), tagged with ``eval_meta`` and filtered by the
    configured tasks, variants and languages."""
    rows_path = Path(rows_path)
    if not rows_path.is_file():
        raise UsageError(f"--score-only {rows_path} does not exist (a jsonl of rows with 'response')")
    read = read_jsonl(rows_path)
    if not read.rows:
        reasons = "; ".join(str(b) for b in read.bad_lines[:3])
        raise DataError(f"--score-only {rows_path} has no rows{f' ({reasons})' if reasons else ''}")
    rows, seen, filtered = [], set(), 0
    for line, row in read.numbered_rows():
        meta = bench_files.infer_meta(row, line - 1)
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
            meta["uid"] = f"{meta['uid']}#line{line}"
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


__all__ = ["DEFAULT_SYSTEM_PROMPT", "NO_JUDGE", "RunConfig", "SpeechInstructBenchTask", "build_request",
           "load_benchmark", "load_scored_rows", "needs_judge", "run", "score"]
