"""SpeechInstructBench results: flat metrics, per-group details, and the leaderboard table in Markdown.

Groups are ``{language}/closed/{variant}``, ``{language}/open`` and ``{language}/adjustment``. Metric keys
are ``{group}/{p_acc|i_acc|iar|ecr}`` in percent; ``inserter eval compare`` reads ``metrics``.
"""

from __future__ import annotations

from megatron_inserter.eval.speechinstructbench.bench_files import LANGUAGES, VARIANTS

LANGUAGE_NAMES = {"en": "English", "zh": "Chinese"}
METRIC_NAMES = ("p_acc", "i_acc", "iar", "ecr")


def group_name(task: str, variant: str, language: str) -> str:
    return f"{language}/closed/{variant}" if task == "closed" else f"{language}/{task}"


def flat_metrics(details: dict[str, dict]) -> dict[str, float]:
    metrics = {}
    for group, summary in details.items():
        for name in METRIC_NAMES:
            if summary.get(name) is not None:
                metrics[f"{group}/{name}"] = summary[name]
    return metrics


def _pair(a, b) -> str:
    if a is None or b is None:
        return "–"
    return f"{a:.2f} / {b:.2f}"


def leaderboard_markdown(details: dict[str, dict], name: str) -> str:
    header = (
        ["Language"]
        + [f"{v.capitalize()} (P./I. Acc)↑" for v in VARIANTS]
        + ["Open-Ended (P./I. Acc)↑", "Adjustment (IAR↑ / ECR↓)"]
    )
    lines = [
        f"### SpeechInstructBench: {name}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    languages = [lang for lang in LANGUAGES if any(g.startswith(lang + "/") for g in details)]
    languages += sorted({g.split("/")[0] for g in details} - set(languages))
    for lang in languages:
        cells = [LANGUAGE_NAMES.get(lang, lang)]
        for variant in VARIANTS:
            s = details.get(f"{lang}/closed/{variant}", {})
            cells.append(_pair(s.get("p_acc"), s.get("i_acc")))
        s = details.get(f"{lang}/open", {})
        cells.append(_pair(s.get("p_acc"), s.get("i_acc")))
        s = details.get(f"{lang}/adjustment", {})
        cells.append(_pair(s.get("iar"), s.get("ecr")))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "| Group | Scored | Strict P. / I. | Loose P. / I. | Errors | Judge errors | Unanswered |",
        "|---|---|---|---|---|---|---|",
    ]
    for group in sorted(details):
        s = details[group]
        strict = _pair(s.get("strict_prompt_acc"), s.get("strict_instruction_acc"))
        loose = _pair(s.get("loose_prompt_acc"), s.get("loose_instruction_acc"))
        lines.append(
            f"| {group} | {s.get('prompts', 0)} | {strict} | {loose} | {s.get('errors', 0)} "
            f"| {s.get('judge_errors', 0)} | {s.get('unanswered', 0)} |"
        )
    lines += [
        "",
        (
            "Closed-ended: IFEval checks; P./I. Acc are the means of the strict and loose accuracies. "
            "Open-ended and adjustment: majority of the judge's samples (ties count as NO). "
            "Rows with checker or judge errors and unanswered rows are not scored; their counts are above."
        ),
        "",
    ]
    return "\n".join(lines)
