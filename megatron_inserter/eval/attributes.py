"""``inserter eval attributes``: does the model hear who speaks and how? Instruction + audio -> answer.

Rows (``eval.attribute_rows``) come from a seeds file of held-out synthesized clips (gender, accent,
language, pitch, speed, volume, noise) or from a folder in Dynamic-SUPERB's row format. Label rows are
scored by label match: the answer and the labels are normalized (NFKC, lower case, punctuation to spaces)
and the answer is right when it is the label, or when exactly one label of the task's label set occurs in
it as a whole phrase and that label is the row's (``eval.audio_qa.match_label``). Each task reports its
accuracy with the chance level beside it (one over the size of its label set) and the share of its most
frequent label (what always giving one answer would score).

Open-ended rows (AIR-Bench chat style: a question and a reference answer) go to the judge, which rates the
answer against the reference from 1 to 10; the score of a row is the mean of ``samples`` valid ratings and
each category reports its mean. Verdicts are kept in ``attributes_judgements.jsonl`` and reused while the
judge, its settings and the prompt are unchanged. Without a judge the open rows are listed as skipped.
"""

from __future__ import annotations

import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from megatron_inserter.errors import DataError, UsageError
from megatron_inserter.eval.attribute_rows import TASKS, dataset_rows, seed_rows
from megatron_inserter.eval.audio_qa import accuracy, score_row
from megatron_inserter.eval.judge import Judge, JudgeConfig, MalformedAnswer, collect_votes
from megatron_inserter.eval.records import RecordLog, write_json_atomic, write_jsonl_atomic, write_text_atomic
from megatron_inserter.eval.responder import EvalRequest, SamplingParams
from megatron_inserter.eval.speechinstructbench.judging import fingerprint
from megatron_inserter.eval.task import EvalConfig, EvalTask

MATCHING_RULE = ("normalized exact match with the label; otherwise exactly one label of the task's label set found "
                 "as a whole phrase in the normalized answer, and it must be the row's label; normalization = "
                 "NFKC, lower case, punctuation to spaces, whitespace collapsed")
JUDGE_PROMPT = """You are grading an AI assistant's answer to a question about an audio clip. A person who heard \
the clip wrote the reference answer.

Question: {question}

Reference answer: {reference}

Assistant's answer: {response}

Rate how well the assistant's answer agrees with the reference answer and answers the question, from 1 (wrong \
or unhelpful) to 10 (fully correct and helpful). Reply with the number only."""
NO_JUDGE = "open-ended row and no judge (pass --judge http or --judge local)"
_SCORE_RE = re.compile(r"^\W*(?:(?:score|rating)\W*)?(10|[1-9])(\s*/\s*10)?\W*$", re.IGNORECASE)


@dataclass
class AttributesConfig(EvalConfig):
    sampling: SamplingParams = field(default_factory=lambda: SamplingParams(max_new_tokens=64))
    tasks: tuple[str, ...] = tuple(TASKS)
    max_per_task: int = 0
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    judge_workers: int = 1  # concurrent judge requests (HTTP judges)


def parse_score(text: str) -> int:
    match = _SCORE_RE.match(text.strip())
    if match is None:
        raise MalformedAnswer(f"expected a number from 1 to 10, got {text[:80]!r}")
    return int(match.group(1))


def judge_prompt(row: dict) -> str:
    return JUDGE_PROMPT.format(question=row["instruction"], reference=row["reference"], response=row["response"])


def score_labels(rows: list[dict]) -> dict[str, dict]:
    per_task: dict[str, dict] = {}
    for row in rows:
        if row["kind"] != "label":
            continue
        entry = per_task.setdefault(row["task"], {"correct": 0, "scored": 0, "unmatched": 0, "unanswered": 0,
                                                  "labels": list(row["candidate_labels"]), "label_counts": Counter()})
        entry["label_counts"][row["label"]] += 1
        score_row(row, entry)
    for entry in per_task.values():
        total = sum(entry["label_counts"].values())
        entry["accuracy"] = accuracy(entry)
        entry["chance"] = 100.0 / len(entry["labels"])
        entry["majority"] = 100.0 * max(entry["label_counts"].values()) / total
        entry["label_counts"] = dict(entry["label_counts"])
    return per_task


def judge_open(rows: list[dict], judge: Judge | None, config: JudgeConfig, log_path: Path,
               workers: int = 1) -> dict[str, dict]:
    """Rate the answered open rows (resumably; ``workers`` ratings at a time); per category: mean score,
    rated, judge errors, unanswered."""
    per_category: dict[str, dict] = {}
    with RecordLog(log_path) as log:
        todo = []
        for row in rows:
            if row["kind"] != "open":
                continue
            per_category.setdefault(row["task"], {"scores": [], "judge_errors": 0, "unanswered": 0})
            if not isinstance(row.get("response"), str):
                per_category[row["task"]]["unanswered"] += 1
            elif judge is None:
                row["judge_error"] = NO_JUDGE
            else:
                prompt = judge_prompt(row)
                fp = fingerprint(judge, config, prompt)
                cached = log.get(row["uid"])
                if cached is None or cached.get("fingerprint") != fp or cached.get("score") is None:
                    todo.append((row, prompt, fp))

        def rate(item):
            row, prompt, fp = item
            verdict = collect_votes(judge, prompt, parse_score, config)
            return {"uid": row["uid"], "fingerprint": fp, "ratings": verdict.parsed,
                    "score": sum(verdict.parsed) / len(verdict.parsed) if verdict.ok else None,
                    **({} if verdict.ok else {"judge_error": verdict.failure()})}

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for record in pool.map(rate, todo):
                log.append(record)
        for row in rows:
            if row["kind"] != "open" or not isinstance(row.get("response"), str) or judge is None:
                if row.get("judge_error") == NO_JUDGE:
                    per_category[row["task"]]["judge_errors"] += 1
                continue
            record = log.get(row["uid"]) or {}
            if record.get("score") is None:
                row["judge_error"] = record.get("judge_error", "no verdict")
                per_category[row["task"]]["judge_errors"] += 1
            else:
                row["judge_score"] = record["score"]
                per_category[row["task"]]["scores"].append(record["score"])
    for entry in per_category.values():
        scores = entry.pop("scores")
        entry["rated"] = len(scores)
        entry["mean_score"] = sum(scores) / len(scores) if scores else None
    return per_category


def markdown(results: dict, name: str) -> str:
    lines = [f"### Attributes: {name}", "",
             "| Task | Accuracy (%) | Chance (%) | Majority (%) | Scored | Unmatched | Unanswered |",
             "|---|---|---|---|---|---|---|"]
    for task, e in sorted(results["details"]["labels"].items()):
        acc = "–" if e["accuracy"] is None else f"{e['accuracy']:.2f}"
        lines.append(f"| {task} | {acc} | {e['chance']:.2f} | {e['majority']:.2f} | {e['scored']} | {e['unmatched']} | "
                     f"{e['unanswered']} |")
    if "overall/macro_accuracy" in results["metrics"]:
        lines.append(f"| macro average | {results['metrics']['overall/macro_accuracy']:.2f} | "
                     f"{results['metrics']['overall/macro_chance']:.2f} | | | | |")
    if results["details"]["open"]:
        lines += ["", "| Open-ended category | Mean judge score (1-10) | Rated | Judge errors | Unanswered |",
                  "|---|---|---|---|---|"]
        for category, e in sorted(results["details"]["open"].items()):
            score = "–" if e["mean_score"] is None else f"{e['mean_score']:.2f}"
            lines.append(f"| {category} | {score} | {e['rated']} | {e['judge_errors']} | {e['unanswered']} |")
    lines += ["", f"Matching rule: {MATCHING_RULE}.", ""]
    return "\n".join(lines)


class AttributesTask(EvalTask):
    command, kind, stem = "attributes", "attributes", "attributes_responses"
    table = "attributes_results.md"

    def __init__(self, config: AttributesConfig, seeds: Path | None = None, dataset: Path | None = None,
                 judge: Judge | None = None):
        super().__init__(config)
        if (seeds is None) == (dataset is None):
            raise UsageError("give either --seeds FILE or --dataset DIR")
        unknown = [t for t in config.tasks if t not in TASKS]
        if unknown:
            raise UsageError(f"--tasks: unknown {unknown}; choose from {', '.join(TASKS)}")
        self.seeds, self.dataset, self.judge = seeds, dataset, judge
        self._rows: list[dict] | None = None

    def load(self) -> list[dict]:
        """The rows (read once: a second call returns the same rows)."""
        if self._rows is None:
            self._rows = self._read()
        return [dict(r) for r in self._rows]

    def _read(self) -> list[dict]:
        config = self.config
        if self.seeds is not None:
            rows = seed_rows(Path(self.seeds), tuple(config.tasks), self.skips, config.max_per_task)
        else:
            rows = dataset_rows(Path(self.dataset), self.skips, config.max_per_task)
        source = self.seeds or self.dataset
        if not rows:
            first = "; ".join(f"{s.row}: {s.reason}" for s in list(self.skips)[:3])
            raise DataError(f"{source}: no usable rows ({first or 'empty'})")
        self.load_stats = {"rows": len(rows), "skipped": len(self.skips),
                           "tasks": dict(Counter(r["task"] for r in rows))}
        return rows

    def needs_judge(self, rows: list[dict]) -> bool:
        return any(r["kind"] == "open" for r in rows)

    def request(self, row: dict) -> EvalRequest:
        return self.audio_request(row, row["instruction"])

    def score(self, rows: list[dict]) -> dict:
        config = self.config
        labels = score_labels(rows)
        http = self.judge is not None and self.judge.describe().get("kind") == "http"
        opened = judge_open(rows, self.judge, config.judge, Path(config.output_dir) / "attributes_judgements.jsonl",
                            workers=config.judge_workers if http else 1)
        for row in rows:
            if isinstance(row.get("judge_error"), str):
                self.skips.add("judge", self.uid(row), row["judge_error"])
        metrics = {}
        for task, e in labels.items():
            if e["accuracy"] is not None:
                metrics[f"{task}/accuracy"] = e["accuracy"]
                metrics[f"{task}/chance"] = e["chance"]
        scored = [e for e in labels.values() if e["accuracy"] is not None]
        if scored:
            metrics["overall/macro_accuracy"] = sum(e["accuracy"] for e in scored) / len(scored)
            metrics["overall/macro_chance"] = sum(e["chance"] for e in scored) / len(scored)
        for category, e in opened.items():
            if e["mean_score"] is not None:
                metrics[f"open/{category}/mean_score"] = e["mean_score"]
        return {"metrics": metrics, "details": {"labels": labels, "open": opened}, "matching_rule": MATCHING_RULE,
                "config": {"seeds": str(self.seeds) if self.seeds else None,
                           "dataset": str(self.dataset) if self.dataset else None, "tasks": list(config.tasks),
                           "sampling": asdict(config.sampling), "instructions": {t: s.instruction
                                                                                 for t, s in TASKS.items()},
                           "judge": None if self.judge is None else {**self.judge.describe(),
                                                                      **asdict(config.judge)}}}

    def write(self, rows: list[dict], results: dict) -> None:
        out = Path(self.config.output_dir)
        write_jsonl_atomic(out / "attributes_scored.jsonl", rows)
        write_json_atomic(out / "attributes_results.json", results)
        write_text_atomic(out / self.table, markdown(results, self.config.name))

