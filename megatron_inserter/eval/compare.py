"""Several result files side by side: one Markdown table, metrics as rows, result files as columns.

Any results JSON of this package works (``kind`` + ``name`` + flat ``metrics``); SpeechInstructBench P./I.
pairs are shown as they are stored, one metric per row. Metrics missing from a file show as ``–``.
"""

from __future__ import annotations

import json
from pathlib import Path

from megatron_inserter.errors import DataError


def load_result(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: cannot read a results JSON ({err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise DataError(f"{path}: not a results file of `inserter eval` (no 'metrics' object)")
    return data


def column_names(paths: list[Path], results: list[dict]) -> list[str]:
    names = [str(r.get("name") or p.parent.name or p.stem) for p, r in zip(paths, results)]
    if len(set(names)) != len(names):  # disambiguate equal model names by their folders
        names = [f"{n} ({p.parent.name or p.stem})" for n, p in zip(names, paths)]
    return names


def compare_markdown(paths: list[Path]) -> str:
    results = [load_result(p) for p in paths]
    names = column_names(paths, results)
    keys: list[str] = []
    for r in results:
        keys += [k for k in r["metrics"] if k not in keys]
    kinds = sorted({str(r.get("kind", "?")) for r in results})
    lines = [
        f"### Comparison ({', '.join(kinds)})",
        "",
        "| Metric | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for key in keys:
        cells = []
        for r in results:
            value = r["metrics"].get(key)
            cells.append("–" if not isinstance(value, (int, float)) else f"{value:.2f}")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)
