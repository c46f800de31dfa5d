"""Ask a responder for every request that has no answer yet, appending each answer to a :class:`RecordLog`.

A record is ``{"uid": ..., "response": str}`` (plus the caller's extra fields). A batch that raises is
retried one request at a time; a request that still fails is logged as ``{"uid": ..., "error": str}``,
counted, and asked again on the next run. Rows that already have a response are never sent again.

:func:`answer_slice` and :func:`gather_answers` add data parallelism: each rank answers a contiguous
slice into its own file, and rank 0 merges all files by uid.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from megatron_inserter.eval.records import RecordLog, read_jsonl, write_json_atomic
from megatron_inserter.eval.responder import EvalRequest, Responder
from megatron_inserter.eval.slices import done_marker, rank_file, split_rows, wait_for_files


@dataclass
class PendingItem:
    uid: str
    request: EvalRequest
    extra: dict = field(default_factory=dict)  # copied into the logged record


@dataclass
class AnswerStats:
    requested: int = 0
    already_answered: int = 0
    generated: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)  # the first few failures, "uid: message"

    def as_dict(self) -> dict:
        return {
            "requested": self.requested,
            "already_answered": self.already_answered,
            "generated": self.generated,
            "failed": self.failed,
            "first_errors": self.errors,
        }


MAX_REPORTED_ERRORS = 20


def is_answered(record: dict | None) -> bool:
    return record is not None and isinstance(record.get("response"), str)


def answer_missing(
    items: Sequence[PendingItem],
    responder: Responder,
    log: RecordLog,
    batch_size: int = 8,
    progress: bool = True,
    desc: str = "generate",
) -> AnswerStats:
    stats = AnswerStats(requested=len(items))
    pending = [it for it in items if not is_answered(log.get(it.uid))]
    stats.already_answered = len(items) - len(pending)
    bar = _progress(len(pending), desc) if progress and pending else None
    for start in range(0, len(pending), max(1, batch_size)):
        batch = pending[start : start + batch_size]
        try:
            answers = _respond_checked(responder, [it.request for it in batch])
        except Exception:  # noqa: BLE001 - a failing batch is retried request by request below
            answers = None
        if answers is None:
            answers = []
            for it in batch:
                try:
                    answers.append(_respond_checked(responder, [it.request])[0])
                except Exception as err:  # noqa: BLE001 - counted and logged, never scored as an answer
                    answers.append(err)
        for it, answer in zip(batch, answers):
            if isinstance(answer, Exception):
                message = " ".join(f"{type(answer).__name__}: {answer}".split())
                log.append({"uid": it.uid, **it.extra, "error": message})
                stats.failed += 1
                if len(stats.errors) < MAX_REPORTED_ERRORS:
                    stats.errors.append(f"{it.uid}: {message}")
            else:
                log.append({"uid": it.uid, **it.extra, "response": answer})
                stats.generated += 1
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    return stats


def _respond_checked(responder: Responder, requests: list[EvalRequest]) -> list[str]:
    answers = responder.respond(requests)
    if not isinstance(answers, (list, tuple)) or len(answers) != len(requests):
        got = len(answers) if isinstance(answers, (list, tuple)) else type(answers).__name__
        raise RuntimeError(f"responder returned {got} answers for {len(requests)} requests")
    for answer in answers:
        if not isinstance(answer, str):
            raise TypeError(f"responder returned {type(answer).__name__}, expected str")
    return list(answers)


def _progress(total: int, desc: str):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, desc=desc, file=sys.stderr, dynamic_ncols=True)


def answer_slice(
    items: Sequence[PendingItem],
    responder: Responder,
    output_dir: Path,
    stem: str,
    dp_rank: int = 0,
    dp_size: int = 1,
    batch_size: int = 8,
    progress: bool = True,
) -> dict:
    """Answer rank ``dp_rank``'s contiguous slice of ``items`` into ``{stem}[.rankR-of-N].jsonl``; a
    data-parallel rank then writes its ``.done`` marker (with these statistics)."""
    mine = split_rows(items, dp_rank, dp_size)
    path = rank_file(output_dir, stem, dp_rank, dp_size)
    with RecordLog(path) as log:
        stats = answer_missing(mine, responder, log, batch_size, progress, desc=f"{stem} rank {dp_rank}")
    out = stats.as_dict()
    if dp_size > 1:
        write_json_atomic(done_marker(path), out)
    return out


def gather_answers(
    output_dir: Path, stem: str, dp_size: int = 1, timeout_s: float = 0.0, prog: str = "inserter eval"
) -> dict[str, dict] | None:
    """uid -> record over all ranks' files; None (with a message) while some rank has not finished."""
    paths = [rank_file(output_dir, stem, r, dp_size) for r in range(dp_size)]
    if dp_size > 1:
        missing = wait_for_files([done_marker(p) for p in paths], timeout_s)
        if missing:
            print(
                f"{prog}: {len(missing)} of {dp_size} ranks have not finished ({missing[0]} missing); run the "
                "same command on rank 0 again once they finish to gather and score",
                file=sys.stderr,
            )
            return None
    records: dict[str, dict] = {}
    for path in paths:
        if path.exists():
            for record in read_jsonl(path).rows:
                if isinstance(record.get("uid"), str):
                    records[record["uid"]] = record
    return records
