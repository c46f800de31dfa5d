"""Closed-ended scoring: IFEval strict and loose checks, prompt- and instruction-level accuracy.

For one row (``instruction_id_list``, ``kwargs``, ``response``):
  * strict: each instruction is checked on the response as is;
  * loose: an instruction counts as followed when any of 8 variants passes (the response with its first
    line, last line or both removed, each with and without ``*``);
  * an empty (whitespace-only) response follows nothing.

A file's score: P.Acc = mean over prompts of "all instructions followed", I.Acc = followed / all
instructions (pooled over prompts), each computed strict and loose; the reported P.Acc and I.Acc are the
means of the strict and loose values, in percent.

As the benchmark does, a response starting with a turn marker ``<1>``, ``<2>`` or ``<3>`` is scored without
it. A row whose checks raise (unknown instruction id, malformed kwargs) is not scored: it is counted in
``errors`` and left out of both accuracies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from megatron_inserter.eval.speechinstructbench.checkers import build_registry

TURN_MARKERS = ("<1>", "<2>", "<3>")


class ClosedScoringError(ValueError):
    pass


def clean_kwargs(kwargs: dict | None) -> dict:
    """Drop unset arguments (None, "", empty containers); keep numbers, including 0."""
    return {
        k: v
        for k, v in (kwargs or {}).items()
        if v is not None and not (isinstance(v, (str, list, dict)) and not v)
    }


def _excerpt(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def strip_turn_marker(response: str) -> str:
    return response[3:].strip() if response.startswith(TURN_MARKERS) else response


def loose_variants(response: str) -> list[str]:
    lines = response.split("\n")
    trimmed = [
        response,
        "\n".join(lines[1:]).strip(),
        "\n".join(lines[:-1]).strip(),
        "\n".join(lines[1:-1]).strip(),
    ]
    return trimmed + [t.replace("*", "") for t in trimmed]


def score_row(row: dict, registry: dict[str, type]) -> dict[str, list[bool]]:
    """{"strict": [...], "loose": [...]}, one bool per instruction of the row."""
    ids = row.get("instruction_id_list")
    kwargs_list = row.get("kwargs")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise ClosedScoringError(f"instruction_id_list must be a non-empty list of strings, got {_excerpt(ids)}")
    if (
        not isinstance(kwargs_list, list)
        or len(kwargs_list) != len(ids)
        or not all(k is None or isinstance(k, dict) for k in kwargs_list)
    ):
        raise ClosedScoringError(
            f"kwargs must be a list with one dict per instruction ({len(ids)}), got {_excerpt(kwargs_list)}"
        )
    response = strip_turn_marker(row.get("response") or "")
    variants = [v for v in loose_variants(response) if v.strip()]
    strict, loose = [], []
    for instruction_id, kwargs in zip(ids, kwargs_list):
        cls = registry.get(instruction_id)
        if cls is None:
            raise ClosedScoringError(f"unknown instruction id {instruction_id!r}")
        try:
            checker = cls(instruction_id)
            checker.build_description(**clean_kwargs(kwargs))
            strict.append(bool(response.strip()) and bool(checker.check_following(response)))
            loose.append(any(checker.check_following(v) for v in variants))
        except Exception as err:
            raise ClosedScoringError(f"{instruction_id}: {type(err).__name__}: {err}") from err
    return {"strict": strict, "loose": loose}


@dataclass
class ClosedTally:
    prompts: int = 0
    instructions: int = 0
    strict_prompt: int = 0
    loose_prompt: int = 0
    strict_instruction: int = 0
    loose_instruction: int = 0
    errors: int = 0
    unanswered: int = 0
    first_errors: list[str] = field(default_factory=list)

    def add(self, scores: dict[str, list[bool]]) -> None:
        self.prompts += 1
        self.instructions += len(scores["strict"])
        self.strict_prompt += all(scores["strict"])
        self.loose_prompt += all(scores["loose"])
        self.strict_instruction += sum(scores["strict"])
        self.loose_instruction += sum(scores["loose"])

    def summary(self) -> dict:
        def pct(num: int, den: int) -> float | None:
            return 100.0 * num / den if den else None

        strict_p, loose_p = pct(self.strict_prompt, self.prompts), pct(self.loose_prompt, self.prompts)
        strict_i = pct(self.strict_instruction, self.instructions)
        loose_i = pct(self.loose_instruction, self.instructions)
        return {
            "p_acc": None if strict_p is None else (strict_p + loose_p) / 2,
            "i_acc": None if strict_i is None else (strict_i + loose_i) / 2,
            "strict_prompt_acc": strict_p,
            "loose_prompt_acc": loose_p,
            "strict_instruction_acc": strict_i,
            "loose_instruction_acc": loose_i,
            "prompts": self.prompts,
            "instructions": self.instructions,
            "errors": self.errors,
            "unanswered": self.unanswered,
            "first_errors": self.first_errors,
        }


def score_closed_rows(
    rows: list[dict], rules: str = "speechinstructbench", sentence_splitter: str = "auto"
) -> ClosedTally:
    """Score rows in place (``pred_score`` or ``score_error``) and tally them."""
    registry = build_registry(rules, sentence_splitter)
    tally = ClosedTally()
    for row in rows:
        if not isinstance(row.get("response"), str):
            tally.unanswered += 1
            continue
        try:
            scores = score_row(row, registry)
        except Exception as err:  # noqa: BLE001 - one bad row is counted, never the end of the run
            if not isinstance(err, ClosedScoringError):
                err = ClosedScoringError(f"{type(err).__name__}: {err}")
            row["score_error"] = str(err)
            row.pop("pred_score", None)
            tally.errors += 1
            if len(tally.first_errors) < 20:
                tally.first_errors.append(f"{row.get('key', row.get('uid', '?'))}: {err}")
            continue
        row.pop("score_error", None)
        row["pred_score"] = scores
        tally.add(scores)
    return tally
