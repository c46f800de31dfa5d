"""The one path of every evaluation: rows -> requests -> answers -> gather -> score -> write.

A task (:class:`EvalTask`) supplies only its own parts:

* ``load()``: its input rows, each with a unique id (rows it cannot use go to ``self.skips``);
* ``request(row)``: the :class:`EvalRequest` for a row, or the reason the row has no input;
* ``score(rows)``: ``{"metrics", "details", "config", ...}`` from rows carrying ``response`` (or not);
* ``write(rows, results)``: its output files.

:func:`run` does the rest: this rank answers its slice of the requests (resumably, in
``<stem>.jsonl``); rank 0 waits for the other ranks, merges their answers, scores, writes and reports the
skipped rows on stderr and in the results (``skipped``). :func:`finish` is the scoring half alone, for
rows that already carry responses.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from megatron_inserter.eval.answers import PendingItem, answer_slice, gather_answers, is_answered
from megatron_inserter.eval.responder import EvalRequest, Responder, SamplingParams
from megatron_inserter.eval.skips import Skips, printable
from megatron_inserter.eval.slices import check_rank


@dataclass
class EvalConfig:
    """Settings every evaluation shares; each task's config adds its own fields."""

    output_dir: Path
    name: str = "model"
    system_prompt: str | None = None
    sampling: SamplingParams = field(default_factory=SamplingParams)
    batch_size: int = 8
    dp_rank: int = 0
    dp_size: int = 1
    gather_timeout_s: float = 0.0
    progress: bool = True


class EvalTask:
    """One evaluation's own parts (see the module docstring)."""

    command = "eval"  # the `inserter eval` subcommand, for messages
    kind = "eval"  # results.json "kind"
    stem = "responses"  # answers log: <output>/<stem>.jsonl
    table = "results.md"  # the Markdown table the command prints

    def __init__(self, config: EvalConfig):
        self.config = config
        self.skips = Skips()
        self.load_stats: dict = {}

    @property
    def prog(self) -> str:
        return f"inserter eval {self.command}"

    def uid(self, row: dict) -> str:
        return row["uid"]

    def load(self) -> list[dict]:
        raise NotImplementedError

    def request(self, row: dict) -> EvalRequest | str:
        raise NotImplementedError

    def audio_request(self, row: dict, text_prompt: str) -> EvalRequest:
        """The request for a row's ``audio`` clip with ``text_prompt``, under the shared system prompt and
        sampling."""
        return EvalRequest(text_prompt=text_prompt, audio_path=row["audio"], system_prompt=self.config.system_prompt,
                           sampling=self.config.sampling, request_id=self.uid(row))

    def score(self, rows: list[dict]) -> dict:
        raise NotImplementedError

    def write(self, rows: list[dict], results: dict) -> None:
        raise NotImplementedError


def run(task: EvalTask, responder: Responder) -> dict | None:
    """Answer this rank's slice; on rank 0 gather, score and write. None while ranks are missing."""
    config = task.config
    check_rank(config.dp_rank, config.dp_size)
    rows = task.load()
    items = pending_items(task, rows)
    answered = answer_slice(items, responder, Path(config.output_dir), task.stem, config.dp_rank,
                            config.dp_size, config.batch_size, config.progress)
    if config.dp_rank != 0:
        if answered["failed"]:
            print(f"{task.prog}: rank {config.dp_rank}: {answered['failed']} of {answered['requested']} "
                  f"requests failed (first: {printable(answered['first_errors'][0])}); rank 0 lists them",
                  file=sys.stderr)
        return None
    records = gather_answers(Path(config.output_dir), task.stem, config.dp_size, config.gather_timeout_s,
                             prog=task.prog)
    if records is None:
        return None
    merged = merge_answers(task, rows, records)
    return finish(task, merged, {"load": task.load_stats, "generation_rank0": answered})


def pending_items(task: EvalTask, rows: list[dict]) -> list[PendingItem]:
    items = []
    for row in rows:
        request = task.request(row)
        if isinstance(request, str):
            task.skips.add("input", task.uid(row), request)
        else:
            items.append(PendingItem(task.uid(row), request))
    return items


def merge_answers(task: EvalTask, rows: list[dict], records: dict[str, dict]) -> list[dict]:
    """Rows with their answer (``response``) or the generation error (``generation_error``), in row order."""
    merged = []
    for row in rows:
        row = {k: v for k, v in row.items() if k not in ("response", "generation_error")}
        record = records.get(task.uid(row))
        if is_answered(record):
            row["response"] = record["response"]
        elif record is not None:
            row["generation_error"] = str(record.get("error", "unknown"))
            task.skips.add("generation", task.uid(row), row["generation_error"])
        merged.append(row)
    return merged


def finish(task: EvalTask, rows: list[dict], stats: dict | None = None) -> dict:
    """Score rows (with or without ``response``), write the outputs, report skipped rows; the results."""
    Path(task.config.output_dir).mkdir(parents=True, exist_ok=True)
    scored = task.score(rows)
    for row in rows:
        if not isinstance(row.get("response"), str):
            task.skips.add("generation", task.uid(row), "no response")
    results = {"kind": task.kind, "name": task.config.name, **scored}
    results["stats"] = {**(stats or {}), **scored.get("stats", {})}
    results["skipped"] = task.skips.as_dict()
    task.write(rows, results)
    uids = {task.uid(row) for row in rows}
    never_loaded = sum(1 for skip in task.skips if skip.row not in uids)
    task.skips.report(task.prog, total_rows=len(rows) + never_loaded)
    return results
