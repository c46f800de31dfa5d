"""Open-ended and adjustment scoring with an LLM judge.

Open-ended: the judge answers YES/NO for each of the row's ``decomposed_questions``, as a list. Every row gets
``samples`` (4) valid answers at temperature 0.5; each question's vote is YES when more than half of the
answers say YES (a 2-2 tie is NO). P.Acc = share of prompts with every question YES; I.Acc = YES votes / all
questions (pooled over prompts).

Adjustment: the judge returns JSON with ``follow_after_adjust``, ``follow_before_adjust`` and
``after_adjust_content_correct`` (YES/NO), voted per field the same way. IAR (higher is better) = share of
rows with follow_after_adjust and after_adjust_content_correct both YES; ECR (lower is better) = share of
rows with follow_before_adjust YES.

A row the judge could not answer after retries is a judge error: written with ``judge_error``, counted in
the results, and left out of the accuracies.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from megatron_inserter.eval.judge import MalformedAnswer
from megatron_inserter.eval.speechinstructbench.judge_prompts import (
    ADJUSTMENT_TEMPLATE,
    OPEN_ENDED_TEMPLATE,
    fill,
)

YES, NO = "YES", "NO"
ADJUST_FIELDS = ("follow_after_adjust", "follow_before_adjust", "after_adjust_content_correct")
_FENCE_RE = re.compile(r"^\s*```[a-zA-Z]*\s*|\s*```\s*$")
_NUMBERED_RE = re.compile(r"^\s*\d+\s*[.)、:]")


def _yes_no(value: Any) -> str:
    if isinstance(value, str):
        word = value.strip().strip(".'\"").upper()
        if word in (YES, NO):
            return word
    raise MalformedAnswer(f"expected YES or NO, got {value!r}")


def _unfence(text: str) -> str:
    return _FENCE_RE.sub("", text.strip())


# ---- open-ended ---------------------------------------------------------------------------------------


def decomposed_questions(row: dict) -> tuple[str, int]:
    """(text for the judge prompt, number of questions)."""
    questions = row.get("decomposed_questions")
    if isinstance(questions, list) and questions and all(isinstance(q, str) for q in questions):
        return "\n".join(f"{i}. {q.strip()}" for i, q in enumerate(questions, start=1)), len(questions)
    if isinstance(questions, str) and questions.strip():
        lines = [line for line in questions.splitlines() if line.strip()]
        numbered = [line for line in lines if _NUMBERED_RE.match(line)]
        return questions, len(numbered) if numbered else len(lines)
    raise ValueError("row has no decomposed_questions (a list of questions or a newline-separated string)")


def open_prompt(row: dict) -> str:
    questions, _ = decomposed_questions(row)
    return fill(
        OPEN_ENDED_TEMPLATE,
        prompt=_require_text(row, "prompt"),
        decompose_question=questions,
        response=row["response"],
    )


def parse_open_answer(text: str, expected: int) -> list[str]:
    """The judge's YES/NO list, e.g. ``['YES', 'NO']``; MalformedAnswer unless it has ``expected`` entries."""
    body = _unfence(text)
    candidates = [body] + re.findall(r"\[[^\[\]]*\]", body)
    for candidate in candidates:
        try:
            value = ast.literal_eval(candidate)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(value, (list, tuple)):
            votes = [_yes_no(v) for v in value]
            if len(votes) != expected:
                raise MalformedAnswer(f"{len(votes)} answers for {expected} questions")
            return votes
    raise MalformedAnswer("no list of YES/NO found")


def majority(votes: list[str]) -> str:
    return YES if sum(v == YES for v in votes) * 2 > len(votes) else NO


def open_majority(samples: list[list[str]]) -> list[str]:
    return [majority(list(position)) for position in zip(*samples)]


# ---- adjustment ---------------------------------------------------------------------------------------


def adjustment_prompt(row: dict) -> str:
    return fill(ADJUSTMENT_TEMPLATE, prompt=_require_text(row, "prompt"), response=row["response"])


def parse_adjustment_answer(text: str) -> dict[str, str]:
    body = _unfence(text)
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        raise MalformedAnswer("no JSON object found")
    snippet = body[start : end + 1]
    try:
        value = json.loads(snippet)
    except json.JSONDecodeError:
        try:
            value = ast.literal_eval(snippet)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise MalformedAnswer("the JSON object does not parse") from None
    if not isinstance(value, dict):
        raise MalformedAnswer("expected a JSON object")
    missing = [f for f in ADJUST_FIELDS if f not in value]
    if missing:
        raise MalformedAnswer(f"missing fields {missing}")
    return {f: _yes_no(value[f]) for f in ADJUST_FIELDS}


def adjustment_majority(samples: list[dict[str, str]]) -> dict[str, str]:
    return {f: majority([s[f] for s in samples]) for f in ADJUST_FIELDS}


# ---- per-task plumbing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgedTask:
    name: str
    build_prompt: Callable[[dict], str]
    make_parser: Callable[[dict], Callable[[str], Any]]
    vote: Callable[[list[Any]], Any]


def open_parser(row: dict) -> Callable[[str], list[str]]:
    expected = decomposed_questions(row)[1]
    return lambda text: parse_open_answer(text, expected)


OPEN_TASK = JudgedTask(name="open", build_prompt=open_prompt, make_parser=open_parser, vote=open_majority)
ADJUSTMENT_TASK = JudgedTask(
    name="adjustment",
    build_prompt=adjustment_prompt,
    make_parser=lambda row: parse_adjustment_answer,
    vote=adjustment_majority,
)
JUDGED_TASKS = {t.name: t for t in (OPEN_TASK, ADJUSTMENT_TASK)}


@dataclass
class JudgedTally:
    task: str
    prompts: int = 0
    votes: list[Any] = field(default_factory=list)
    judge_errors: int = 0
    unanswered: int = 0
    first_errors: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        out: dict[str, Any] = {
            "prompts": self.prompts,
            "judge_errors": self.judge_errors,
            "unanswered": self.unanswered,
            "first_errors": self.first_errors,
        }
        if self.task == "open":
            questions = sum(len(v) for v in self.votes)
            out["p_acc"] = (
                100.0 * sum(all(x == YES for x in v) for v in self.votes) / self.prompts
                if self.prompts
                else None
            )
            out["i_acc"] = (
                100.0 * sum(x == YES for v in self.votes for x in v) / questions if questions else None
            )
            out["questions"] = questions
        else:
            n = self.prompts
            out["iar"] = (
                100.0
                * sum(
                    v["follow_after_adjust"] == YES and v["after_adjust_content_correct"] == YES
                    for v in self.votes
                )
                / n
                if n
                else None
            )
            out["ecr"] = 100.0 * sum(v["follow_before_adjust"] == YES for v in self.votes) / n if n else None
        return out


def tally_judged(task: str, rows: list[dict]) -> JudgedTally:
    """Tally rows that already carry ``judge_votes`` (or ``judge_error``)."""
    tally = JudgedTally(task=task)
    for row in rows:
        if not isinstance(row.get("response"), str):
            tally.unanswered += 1
        elif row.get("judge_votes") is not None:
            tally.prompts += 1
            tally.votes.append(row["judge_votes"])
        else:
            tally.judge_errors += 1
            if len(tally.first_errors) < 20:
                tally.first_errors.append(f"{row.get('id', '?')}: {row.get('judge_error', 'not judged')}")
    return tally


def _require_text(row: dict, name: str) -> str:
    value = row.get(name)
    if not isinstance(value, str):
        raise ValueError(f"row has no {name!r} text")
    return value
