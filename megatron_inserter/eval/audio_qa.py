"""Audio question answering / classification in the Dynamic-SUPERB style: instruction + audio -> label.

Manifest rows (jsonl): ``audio_filepath`` (or ``audio``/``file``; relative to the manifest), ``instruction``,
``label`` (or ``target``/``answer``), optional ``task`` (scores are also given per task) and ``candidates``
(the allowed labels; default: every label of the row's task in the manifest). Rows missing a field or
their audio are skipped and listed (file:line and reason) on stderr and in the results.

Matching rule (also written into the results as ``matching_rule``): texts are normalized (NFKC, lower case,
punctuation to spaces, whitespace collapsed). The response is correct when it equals the label, or when
exactly one candidate label occurs in it as a whole phrase (a candidate inside a longer matching candidate,
such as ``sad`` inside ``very sad``, does not count) and that candidate is the label. Otherwise the response
is wrong; it is ``unmatched`` when no single candidate could be read from it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path

from megatron_inserter.eval.manifest import (
    ManifestTask,
    load_stats,
    read_manifest,
    resolve_audio,
    unique_uids,
)
from megatron_inserter.eval.records import write_json_atomic, write_jsonl_atomic, write_text_atomic
from megatron_inserter.eval.responder import EvalRequest, Responder, SamplingParams
from megatron_inserter.eval.skips import Skips
from megatron_inserter.eval.task import EvalConfig, run

MATCHING_RULE = (
    "normalized exact match with the label; otherwise the unique candidate label found as a whole phrase "
    "in the "
    "normalized response (candidates inside a longer matching candidate ignored) must equal the label; "
    "normalization = NFKC, lower case, punctuation to spaces, whitespace collapsed"
)


@dataclass
class AudioQaConfig(EvalConfig):
    sampling: SamplingParams = field(default_factory=lambda: SamplingParams(max_new_tokens=64))


def normalize_label(text: str) -> str:
    s = unicodedata.normalize("NFKC", text).lower()
    s = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in s)
    return " ".join(s.split())


def _occurs(phrase: str, text: str) -> bool:
    if not phrase:
        return False
    return re.search(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)", text) is not None


def match_label(response: str, candidates: list[str]) -> str | None:
    """The candidate the response names, or None when it names none or several."""
    norm = normalize_label(response)
    by_norm = {normalize_label(c): c for c in candidates}
    if norm in by_norm:
        return by_norm[norm]
    found = [n for n in by_norm if _occurs(n, norm)]
    found = [n for n in found if not any(o != n and _occurs(n, o) for o in found)]
    return by_norm[found[0]] if len(found) == 1 else None


def _field(row: dict, names: tuple[str, ...]):
    return next((row[n] for n in names if isinstance(row.get(n), str) and row[n] != ""), None)


def load_manifest(path: Path, skips: Skips | None = None) -> tuple[list[dict], dict]:
    """Rows with ``uid``, ``task``, resolved ``audio``, ``label`` and ``candidate_labels``; bad rows are
    counted skips, not fatal."""
    skips = Skips() if skips is None else skips
    rows, skipped = [], 0
    for where, row in read_manifest(path):
        reason = row if isinstance(row, str) else None
        if reason is None:
            audio = _field(row, ("audio_filepath", "audio", "file"))
            instruction, label = _field(row, ("instruction",)), _field(row, ("label", "target", "answer"))
            given = row.get("candidates")
            if audio is None or instruction is None or label is None:
                reason = "needs audio_filepath, instruction and label"
            elif not resolve_audio(audio, path).is_file():
                reason = f"audio file {resolve_audio(audio, path)} not found"
            elif given is not None and not (isinstance(given, list) and all(isinstance(c, str) for c in given)):
                reason = "candidates must be a list of label strings"
        if reason is not None:
            skips.add("input", where, reason)
            skipped += 1
            continue
        line = where.rsplit(":", 1)[1]
        rows.append(
            {
                **row,
                "uid": f"{row.get('task', 'task')}/{row.get('id', f'line{line}')}",
                "task": str(row.get("task", "default")),
                "audio": str(resolve_audio(audio, path)),
                "label": label,
            }
        )
    unique_uids(rows)
    labels_by_task: dict[str, list[str]] = {}
    for row in rows:
        labels = labels_by_task.setdefault(row["task"], [])
        if row["label"] not in labels:
            labels.append(row["label"])
    for row in rows:
        given = row.get("candidates")
        row["candidate_labels"] = list(given) if given else labels_by_task[row["task"]]
    return rows, load_stats(rows, skipped, skips)


def score_row(row: dict, entry: dict) -> None:
    """Match one row's response against its ``candidate_labels``: sets the row's ``predicted_label`` and
    ``correct`` and counts it in ``entry`` (``scored``, ``correct``, ``unmatched``; ``unanswered`` for a row
    without a response)."""
    if not isinstance(row.get("response"), str):
        entry["unanswered"] += 1
        return
    predicted = match_label(row["response"], row["candidate_labels"])
    row["predicted_label"] = predicted
    row["correct"] = predicted is not None and normalize_label(predicted) == normalize_label(row["label"])
    entry["scored"] += 1
    entry["correct"] += row["correct"]
    entry["unmatched"] += predicted is None


def accuracy(entry: dict) -> float | None:
    """Percent of the scored rows counted in ``entry`` that are correct (None when none was scored)."""
    return 100.0 * entry["correct"] / entry["scored"] if entry["scored"] else None


def score_audio_qa(rows: list[dict]) -> tuple[dict, dict]:
    per_task: dict[str, dict] = {}
    for row in rows:
        score_row(row, per_task.setdefault(row["task"], {"correct": 0, "scored": 0, "unmatched": 0,
                                                         "unanswered": 0}))
    metrics = {}
    for task, entry in per_task.items():
        entry["accuracy"] = accuracy(entry)
        if entry["accuracy"] is not None:
            metrics[f"{task}/accuracy"] = entry["accuracy"]
    scored = sum(e["scored"] for e in per_task.values())
    if scored:
        metrics["overall/accuracy"] = 100.0 * sum(e["correct"] for e in per_task.values()) / scored
        task_accs = [e["accuracy"] for e in per_task.values() if e["accuracy"] is not None]
        metrics["overall/macro_accuracy"] = sum(task_accs) / len(task_accs)
    return metrics, per_task


def markdown(metrics: dict, per_task: dict, name: str) -> str:
    lines = [
        f"### Audio QA: {name}",
        "",
        "| Task | Accuracy (%) | Scored | Unmatched | Unanswered |",
        "|---|---|---|---|---|",
    ]
    for task, e in sorted(per_task.items()):
        acc = "–" if e["accuracy"] is None else f"{e['accuracy']:.2f}"
        lines.append(f"| {task} | {acc} | {e['scored']} | {e['unmatched']} | {e['unanswered']} |")
    for key in ("overall/accuracy", "overall/macro_accuracy"):
        if key in metrics:
            lines.append(f"| {key} | {metrics[key]:.2f} | | | |")
    lines += ["", f"Matching rule: {MATCHING_RULE}.", ""]
    return "\n".join(lines)


class AudioQaTask(ManifestTask):
    command, kind, stem = "audio-qa", "audio_qa", "audio_qa_responses"
    table = "audio_qa_results.md"

    def read(self) -> tuple[list[dict], dict]:
        return load_manifest(self.manifest, self.skips)

    def request(self, row: dict) -> EvalRequest:
        return self.audio_request(row, row["instruction"])

    def score(self, rows: list[dict]) -> dict:
        metrics, per_task = score_audio_qa(rows)
        return {"metrics": metrics, "details": per_task, "matching_rule": MATCHING_RULE,
                "config": {"manifest": str(self.manifest), "sampling": asdict(self.config.sampling)}}

    def write(self, rows: list[dict], results: dict) -> None:
        out = Path(self.config.output_dir)
        write_jsonl_atomic(out / "audio_qa_scored.jsonl", rows)
        write_json_atomic(out / "audio_qa_results.json", results)
        write_text_atomic(out / self.table, markdown(results["metrics"], results["details"],
                                                                self.config.name))


def run_audio_qa(manifest: Path, responder: Responder, config: AudioQaConfig) -> dict | None:
    """Answer (this rank's slice of) the manifest; on rank 0 score and write. None on other ranks."""
    return run(AudioQaTask(manifest, config), responder)
