"""The rows of ``inserter eval attributes``: questions about clips whose answer is known.

From a seeds file (``inserter desta build`` on held-out shards): one row per clip and task whose attribute
the seed knows. Tasks and their label sets:

  gender    male / female                 pitch   low / normal / high
  speed     slow / normal / fast          volume  quiet / normal / loud
  noise     clean / noisy (a recorded SNR under ``CLEAN_AT_DB`` is noisy; "Clean" seeds are clean)
  accent    the accents found in the file  language  the languages found in the file

A task whose rows all carry one label measures nothing and is left out (listed as skipped).

From a folder in Dynamic-SUPERB's row format: every ``*.jsonl`` or ``*.json`` file under it holds rows
with ``audio`` (a path relative to the file, or ``{"path": ...}``), ``instruction`` and ``label``; the task
is the row's ``task`` field or the file's path without its suffix; the label set is the task's labels. A
``.json`` file may hold a list of rows, ``{"data": [...]}``, ``{"rows": [{"row": {...}}, ...]}`` (the
Hugging Face datasets server) or columns (``{"audio": [...], "instruction": [...], ...}``, as
``Dataset.to_dict()`` writes). Rows with ``question`` (or ``instruction``) and a reference answer
(``answer_gt``, ``reference`` or ``answer``) but no ``label`` are open-ended (AIR-Bench chat style): the
judge scores them, per ``task_name`` / ``category``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from megatron_inserter.desta.seeds import CLEAN_AT_DB, read_seeds
from megatron_inserter.errors import UsageError
from megatron_inserter.eval.manifest import read_manifest
from megatron_inserter.eval.skips import Skips


@dataclass(frozen=True)
class AttributeTask:
    labels: tuple[str, ...] | None  # None: the labels found in the data
    instruction: str  # {labels}: the label set, "a, b or c"


TASKS = {
    "gender": AttributeTask(("male", "female"), "Is the speaker male or female? Answer with one word: {labels}."),
    "accent": AttributeTask(None, "Which accent does the speaker have? Answer with one of: {labels}."),
    "language": AttributeTask(None, "Which language is spoken in the audio? Answer with one of: {labels}."),
    "pitch": AttributeTask(("low", "normal", "high"),
                           "Is the speaker's voice low, normal or high in pitch? Answer with one word: {labels}."),
    "speed": AttributeTask(("slow", "normal", "fast"),
                           "Does the speaker talk slowly, at a normal pace, or fast? Answer with one word: {labels}."),
    "volume": AttributeTask(("quiet", "normal", "loud"),
                            "Is the speech quiet, normal or loud? Answer with one word: {labels}."),
    "noise": AttributeTask(("clean", "noisy"),
                           "Is the recording clean, or is there background noise? Answer with one word: {labels}."),
}
REFERENCE_FIELDS = ("answer_gt", "reference", "answer")


def spoken_list(labels) -> str:
    labels = list(labels)
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " or " + labels[-1]


def seed_label(task: str, attributes: dict) -> str | None:
    if task == "noise":
        noise = attributes.get("noise")
        if noise == "Clean":
            return "clean"
        snr = attributes.get("snr_db")
        if isinstance(snr, (int, float)) and not isinstance(snr, bool):
            return "noisy" if snr < CLEAN_AT_DB else "clean"
        return None
    value = attributes.get(task)
    return value.strip().lower() if isinstance(value, str) and value.strip() else None


def seed_rows(path: Path, tasks: tuple[str, ...], skips: Skips, max_per_task: int = 0) -> list[dict]:
    seeds = read_seeds(path)
    for where, reason in seeds.bad:
        skips.add("input", where, reason)
    by_task: dict[str, list[dict]] = {t: [] for t in tasks}
    for seed in seeds.rows:
        if not Path(seed["audio"]).is_file():
            skips.add("input", f"{path}:{seed['line']}", f"audio file {seed['audio']} not found")
            continue
        for task in tasks:
            label = seed_label(task, seed["attributes"])
            if label is not None and (not max_per_task or len(by_task[task]) < max_per_task):
                by_task[task].append({"uid": f"{task}/{seed['id']}", "task": task, "audio": seed["audio"],
                                      "label": label, "kind": "label", "seed_id": seed["id"]})
    rows = []
    for task, task_rows in by_task.items():
        spec = TASKS[task]
        found = sorted({r["label"] for r in task_rows})
        labels = list(spec.labels) if spec.labels else found
        if len(found) < 2:
            for r in task_rows:
                skips.add("input", r["uid"], f"every {task} row of {path} is {found[0]!r}: the task needs two labels")
            continue
        for r in task_rows:
            r.update(candidate_labels=labels, instruction=spec.instruction.format(labels=spoken_list(labels)))
        rows += task_rows
    return rows


# --- Dynamic-SUPERB / AIR-Bench folders ---------------------------------------------------------------------

def _json_rows(path: Path) -> list[tuple[str, dict | str]]:
    """(where, row or reason) of a .json file in one of the accepted layouts."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        return [(str(path), f"not UTF-8 JSON ({type(err).__name__}: {err})")]
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    elif isinstance(data, dict) and isinstance(data.get("rows"), list):
        data = [r["row"] if isinstance(r, dict) and isinstance(r.get("row"), dict) else r for r in data["rows"]]
    elif isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
        lengths = {len(v) for v in data.values()}
        if len(lengths) != 1:
            return [(str(path), f"columns of different lengths {sorted(lengths)}")]
        data = [dict(zip(data, values)) for values in zip(*data.values())]
    if not isinstance(data, list):
        return [(str(path), "expected a list of rows, {'data': [...]}, {'rows': [...]} or columns")]
    return [(f"{path}#{i}", row if isinstance(row, dict) else f"row is {type(row).__name__}, not an object")
            for i, row in enumerate(data)]


def _text(row: dict, names) -> str | None:
    return next((row[n] for n in names if isinstance(row.get(n), str) and row[n].strip()), None)


def dataset_rows(root: Path, skips: Skips, max_per_task: int = 0) -> list[dict]:
    if not root.is_dir():
        raise UsageError(f"--dataset {root} is not a folder (Dynamic-SUPERB rows: *.jsonl or *.json files)")
    files = sorted(p for p in root.rglob("*") if p.suffix in (".jsonl", ".json") and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    rows: list[dict] = []
    counts: dict[str, int] = {}
    for file in files:
        items = read_manifest(file, "--dataset") if file.suffix == ".jsonl" else _json_rows(file)
        default_task = str(file.relative_to(root).with_suffix("")).replace(os.sep, "/")
        for where, row in items:
            if isinstance(row, str):
                skips.add("input", where, row)
                continue
            audio = row.get("audio") if not isinstance(row.get("audio"), dict) else row["audio"].get("path")
            audio = audio if isinstance(audio, str) and audio else _text(row, ("audio_filepath", "file", "path"))
            task = str(row.get("task") or default_task)
            label = _text(row, ("label",))
            question = _text(row, ("instruction", "question"))
            reference = _text(row, REFERENCE_FIELDS)
            reason = None
            if audio is None or question is None or (label is None and reference is None):
                reason = "needs audio, instruction (or question) and label (or a reference answer: answer_gt)"
            elif not (Path(audio) if Path(audio).is_absolute() else file.parent / audio).is_file():
                reason = f"audio file {audio} not found (paths are relative to {file})"
            if reason is not None:
                skips.add("input", where, reason)
                continue
            if max_per_task and counts.get(task, 0) >= max_per_task:
                continue
            counts[task] = counts.get(task, 0) + 1
            resolved = str(Path(audio) if Path(audio).is_absolute() else file.parent / audio)
            position = f"row{where.rsplit('#', 1)[1]}" if "#" in where else f"line{where.rsplit(':', 1)[1]}"
            name = row.get("id", row.get("file", position))
            if label is not None:
                rows.append({"uid": f"{task}/{name}", "task": task, "audio": resolved, "instruction": question,
                             "label": label, "kind": "label"})
            else:
                category = str(row.get("task_name") or row.get("category") or task)
                rows.append({"uid": f"{category}/{name}", "task": category, "audio": resolved,
                             "instruction": question, "reference": reference, "kind": "open"})
    if len({r["uid"] for r in rows}) != len(rows):
        for i, row in enumerate(rows):
            row["uid"] = f"{row['uid']}#{i}"
    labels: dict[str, list[str]] = {}
    for row in rows:
        if row["kind"] == "label" and row["label"] not in labels.setdefault(row["task"], []):
            labels[row["task"]].append(row["label"])
    for row in rows:
        if row["kind"] == "label":
            row["candidate_labels"] = labels[row["task"]]
    return rows
