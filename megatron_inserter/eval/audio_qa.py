"""Audio question answering / classification in the Dynamic-SUPERB style: instruction + audio -> label.

Manifest rows (jsonl): ``audio_filepath`` (or ``audio``/``file``; relative to the manifest), ``instruction``,
``label`` (or ``target``/``answer``), optional ``task`` (scores are also given per task) and ``candidates``
(the allowed labels; default: every label of the row's task in the manifest).

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

from megatron_inserter.eval.generate import PendingItem, gather_sharded, generate_sharded, is_answered
from megatron_inserter.eval.records import (
    read_jsonl,
    write_json_atomic,
    write_jsonl_atomic,
    write_text_atomic,
)
from megatron_inserter.eval.responder import EvalRequest, Responder, SamplingParams

MATCHING_RULE = (
    "normalized exact match with the label; otherwise the unique candidate label found as a whole phrase "
    "in the "
    "normalized response (candidates inside a longer matching candidate ignored) must equal the label; "
    "normalization = NFKC, lower case, punctuation to spaces, whitespace collapsed"
)


@dataclass
class AudioQaConfig:
    output_dir: Path
    name: str = "model"
    system_prompt: str | None = None
    sampling: SamplingParams = field(default_factory=lambda: SamplingParams(max_new_tokens=64))
    batch_size: int = 8
    dp_rank: int = 0
    dp_size: int = 1
    gather_timeout_s: float = 0.0
    progress: bool = True


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


def load_manifest(path: Path) -> tuple[list[dict], dict]:
    read = read_jsonl(path)
    rows, skipped = [], [str(b) for b in read.bad_lines]
    for i, row in enumerate(read.rows):
        audio = _field(row, ("audio_filepath", "audio", "file"))
        instruction, label = _field(row, ("instruction",)), _field(row, ("label", "target", "answer"))
        if audio is None or instruction is None or label is None:
            skipped.append(f"{path}:{i + 1}: needs audio_filepath, instruction and label")
            continue
        audio_path = Path(audio) if Path(audio).is_absolute() else path.parent / audio
        if not audio_path.is_file():
            skipped.append(f"{path}:{i + 1}: audio file {audio_path} not found")
            continue
        rows.append(
            {
                **row,
                "uid": f"{row.get('task', 'task')}/{row.get('id', f'line{i + 1}')}",
                "task": str(row.get("task", "default")),
                "audio": str(audio_path),
                "label": label,
            }
        )
    if len({r["uid"] for r in rows}) != len(rows):
        for i, row in enumerate(rows):
            row["uid"] = f"{row['uid']}#{i}"
    labels_by_task: dict[str, list[str]] = {}
    for row in rows:
        labels = labels_by_task.setdefault(row["task"], [])
        if row["label"] not in labels:
            labels.append(row["label"])
    for row in rows:
        given = row.get("candidates")
        row["candidate_labels"] = (
            list(given) if isinstance(given, list) and given else labels_by_task[row["task"]]
        )
    return rows, {"rows": len(rows), "skipped": len(skipped), "first_skipped": skipped[:20]}


def score_audio_qa(rows: list[dict]) -> tuple[dict, dict]:
    per_task: dict[str, dict] = {}
    for row in rows:
        entry = per_task.setdefault(row["task"], {"correct": 0, "scored": 0, "unmatched": 0, "unanswered": 0})
        if not isinstance(row.get("response"), str):
            entry["unanswered"] += 1
            continue
        predicted = match_label(row["response"], row["candidate_labels"])
        row["predicted_label"] = predicted
        row["correct"] = predicted is not None and normalize_label(predicted) == normalize_label(row["label"])
        entry["scored"] += 1
        entry["correct"] += row["correct"]
        entry["unmatched"] += predicted is None
    metrics = {}
    for task, entry in per_task.items():
        entry["accuracy"] = 100.0 * entry["correct"] / entry["scored"] if entry["scored"] else None
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


def run_audio_qa(manifest: Path, responder: Responder, config: AudioQaConfig) -> dict | None:
    rows, load_stats = load_manifest(manifest)
    if not rows:
        raise ValueError(f"{manifest}: no usable rows ({load_stats['first_skipped'][:3]})")
    items = [
        PendingItem(
            r["uid"],
            EvalRequest(
                text_prompt=r["instruction"],
                audio_path=r["audio"],
                system_prompt=config.system_prompt,
                sampling=config.sampling,
                request_id=r["uid"],
            ),
        )
        for r in rows
    ]
    generation = generate_sharded(
        items,
        responder,
        config.output_dir,
        "audio_qa_responses",
        config.dp_rank,
        config.dp_size,
        config.batch_size,
        config.progress,
    )
    if config.dp_rank != 0:
        return None
    records = gather_sharded(config.output_dir, "audio_qa_responses", config.dp_size, config.gather_timeout_s)
    if records is None:
        return None
    for row in rows:
        if is_answered(records.get(row["uid"])):
            row["response"] = records[row["uid"]]["response"]
    metrics, per_task = score_audio_qa(rows)
    results = {
        "kind": "audio_qa",
        "name": config.name,
        "metrics": metrics,
        "details": per_task,
        "matching_rule": MATCHING_RULE,
        "config": {"manifest": str(manifest), "sampling": asdict(config.sampling)},
        "stats": {"load": load_stats, "generation_rank0": generation},
    }
    write_jsonl_atomic(config.output_dir / "audio_qa_scored.jsonl", rows)
    write_json_atomic(config.output_dir / "audio_qa_results.json", results)
    write_text_atomic(config.output_dir / "audio_qa_results.md", markdown(metrics, per_task, config.name))
    return results
