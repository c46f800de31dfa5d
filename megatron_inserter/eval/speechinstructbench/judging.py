"""Run the judge over open-ended and adjustment rows, resumably.

Each verdict is appended to ``judgements.jsonl`` (flush + fsync) with a fingerprint of the judge and of the
exact prompt it saw; a later run reuses a verdict only when the fingerprint matches and the verdict was
complete, so changed responses or a different judge are judged again and earlier judge errors are retried.
HTTP judges run ``workers`` requests at a time; a local judge runs one at a time.
"""

from __future__ import annotations

import hashlib
import json
import sys
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

from megatron_inserter.eval.judge import Judge, JudgeConfig, collect_votes
from megatron_inserter.eval.records import RecordLog
from megatron_inserter.eval.speechinstructbench.bench_files import META
from megatron_inserter.eval.speechinstructbench.judged import JUDGED_TASKS

NO_JUDGE = "no judge configured (pass --judge http or --judge local)"


def fingerprint(judge: Judge, config: JudgeConfig, prompt: str) -> str:
    setup = json.dumps(
        [judge.describe(), config.samples, config.temperature, config.top_p, config.system_prompt],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256((setup + "\n" + prompt).encode("utf-8")).hexdigest()[:32]


def _apply(row: dict, record: dict) -> None:
    row["pred_score"] = record.get("pred_score", [])
    row["judge_votes"] = record.get("votes")
    if record.get("votes") is None:
        row["judge_error"] = record.get("judge_error", "not judged")


def judge_rows(
    rows: list[dict],
    judge: Judge | None,
    config: JudgeConfig,
    log_path: Path,
    workers: int = 1,
    progress: bool = True,
) -> dict:
    """Fill ``pred_score`` (the judge's raw answers) and ``judge_votes`` / ``judge_error`` of answered
    open-ended and adjustment rows. Returns counts."""
    stats = {"reused": 0, "judged": 0, "judge_errors": 0, "bad_rows": 0}
    todo = []
    with RecordLog(log_path) as log:
        for row in rows:
            for name in ("pred_score", "judge_votes", "judge_error"):
                row.pop(name, None)
            task = JUDGED_TASKS.get(row[META]["task"])
            if task is None or not isinstance(row.get("response"), str):
                continue
            if judge is None:
                row["judge_error"] = NO_JUDGE
                continue
            try:
                prompt = task.build_prompt(row)
                parse = task.make_parser(row)
            except (ValueError, TypeError, KeyError, AttributeError) as err:
                row["judge_error"] = f"bad row: {err}"
                stats["bad_rows"] += 1
                continue
            fp = fingerprint(judge, config, prompt)
            cached = log.get(row[META]["uid"])
            if cached is not None and cached.get("fingerprint") == fp and cached.get("votes") is not None:
                _apply(row, cached)
                stats["reused"] += 1
                continue
            todo.append((row, task, prompt, parse, fp))
        if todo:
            _run(todo, judge, config, log, workers, progress, stats)
    return stats


def _run(todo, judge, config, log, workers, progress, stats) -> None:
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="judge", file=sys.stderr, dynamic_ncols=True)

    def finish(item, verdict) -> None:
        row, task, _, _, fp = item
        record = {
            "uid": row[META]["uid"],
            "fingerprint": fp,
            "pred_score": verdict.answers,
            "votes": task.vote(verdict.parsed) if verdict.ok else None,
        }
        if not verdict.ok:
            record["judge_error"] = verdict.failure()
            stats["judge_errors"] += 1
        else:
            stats["judged"] += 1
        log.append(record)
        _apply(row, record)
        if bar is not None:
            bar.update(1)

    try:
        if workers <= 1:
            for item in todo:
                finish(item, collect_votes(judge, item[2], item[3], config))
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(collect_votes, judge, item[2], item[3], config): item for item in todo}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                failed = [f for f in done if f.exception() is not None]
                for future in done:
                    if future.exception() is None:
                        finish(futures[future], future.result())
                if failed:  # a configuration error: stop, keeping every verdict already logged
                    for other in pending:
                        other.cancel()
                    raise failed[0].exception()
    finally:
        if bar is not None:
            bar.close()
