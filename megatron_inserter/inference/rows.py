"""The rows of ``inserter generate --input-jsonl``: read, checked, and a bad one set aside with its reason.

    rows, skips = read_rows("prompts.jsonl")    # skips: [Skip("prompts.jsonl:3", "not valid JSON ...")]

One JSON object per line: ``audio`` (a path, as given or relative to the jsonl's folder) and/or
``prompt`` (text), optionally ``system``; other keys are kept and copied to the output row. A line that is
not UTF-8 or JSON, a row of the wrong shape or one whose audio file is missing is skipped with its
``file:line`` and reason; the other rows go on.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass


@dataclass
class Row:
    where: str  # file:line
    data: dict  # the row as read (written back with its "response")
    prompt: str
    audio_path: str | None
    system: str | None


@dataclass
class Skip:
    where: str  # file:line
    reason: str  # the details, for the line reported on stderr
    kind: str = "bad row"  # the class of problem, for the counts


def _audio_path(value: str, folder: str) -> str | None:
    """The file a row's ``audio`` names: as given (relative to the working directory), else next to the jsonl."""
    if os.path.isfile(value):
        return value
    beside = os.path.join(folder, value)
    return beside if not os.path.isabs(value) and os.path.isfile(beside) else None


def check_row(data, where: str, folder: str, system: str | None) -> Row | Skip:
    if not isinstance(data, dict):
        return Skip(where, f"a row must be a JSON object, got {type(data).__name__}")
    try:  # the row is written back as UTF-8: a lone surrogate escape (\ud800) cannot be
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return Skip(where, "the row holds a lone surrogate escape (not a character)")
    prompt, audio, row_system = data.get("prompt", ""), data.get("audio"), data.get("system", system)
    if not isinstance(prompt, str):
        return Skip(where, f"'prompt' must be a string, got {type(prompt).__name__}")
    if row_system is not None and not isinstance(row_system, str):
        return Skip(where, f"'system' must be a string, got {type(row_system).__name__}")
    if audio is not None and (not isinstance(audio, str) or not audio):
        return Skip(where, f"'audio' must be a file path, got {audio!r}")
    if audio is None and not prompt:
        return Skip(where, "the row has neither 'audio' nor 'prompt'")
    path = _audio_path(audio, folder) if audio is not None else None
    if audio is not None and path is None:
        return Skip(where, f"audio file {audio!r} does not exist", "missing audio")
    return Row(where, data, prompt, path, row_system)


def read_rows(path: str, system: str | None = None) -> tuple[list[Row], list[Skip]]:
    """Every usable row of a jsonl file and the lines set aside (blank lines are neither)."""
    rows: list[Row] = []
    skips: list[Skip] = []
    folder = os.path.dirname(os.path.abspath(path))
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                skips.append(Skip(where, f"not UTF-8 ({e.reason} at byte {e.start})", "not UTF-8"))
                continue
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except (ValueError, RecursionError) as e:
                skips.append(Skip(where, f"not valid JSON ({str(e).splitlines()[0][:120]})", "not JSON"))
                continue
            checked = check_row(data, where, folder, system)
            (rows if isinstance(checked, Row) else skips).append(checked)
    return rows, skips


def skip_counts(skips: list[Skip]) -> str:
    """``"2 missing audio, 1 not JSON"``: the skips by kind."""
    return ", ".join(f"{n} {kind}" for kind, n in Counter(s.kind for s in skips).most_common())
