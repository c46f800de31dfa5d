"""Finding SpeechInstructBench files and rows in the released layout.

The release (``ddwang2000/SpeechInstructBench``) has ``closed-ended/``, ``open-ended/`` and ``adjustment/``
folders with one jsonl per task, variant and language next to the audio, for example
``open-ended/open_ended_cn.jsonl`` and ``open-ended/cn/...wav``; closed-ended audio is
``closed-ended/<variant>/<lang>/closed_<variant>_<id>_<lang>.wav``. A jsonl is classified by the words of its
path: the task (``closed``, ``open``, ``adjustment``), the closed-ended variant (standard, background,
accent, paralinguistics, disfluency) and the language (``en``; ``zh`` or ``cn`` for Chinese).

Every row gets ``eval_meta`` = {uid, task, variant, language}; the uid ``task/variant/language/id`` comes
from the row's ``key`` (closed) or ``id`` (open, adjustment), or its line number.

Audio (``audio_path``, ``audio`` or ``audio_filepath``; a path, or a dict with ``path``) is looked up as
given, then relative to the jsonl's folder and the benchmark folder, then by file name anywhere under the
benchmark folder (so absolute paths from another machine still resolve).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from megatron_inserter.eval.records import BadLine, read_jsonl
from megatron_inserter.eval.speechinstructbench.choices import LANGUAGE_ALIASES, LANGUAGES, TASKS, VARIANTS
from megatron_inserter.eval.speechinstructbench.text_units import contains_cjk

AUDIO_FIELDS = ("audio_path", "audio", "audio_filepath")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")
META = "eval_meta"
_CLOSED_AUDIO_RE = re.compile(r"closed_([a-z]+)_[^/\\]*?_(en|cn|zh)\.[a-z0-9]+$")


@dataclass(frozen=True)
class BenchFile:
    task: str
    variant: str
    language: str
    path: Path


@dataclass
class LoadReport:
    files: list[BenchFile] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)
    bad_lines: list[BadLine] = field(default_factory=list)
    duplicate_ids: int = 0
    missing_audio: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "files": [f"{f.task}/{f.variant}/{f.language}: {f.path}" for f in self.files],
            "skipped_files": self.skipped_files,
            "bad_lines": [str(b) for b in self.bad_lines[:50]],
            "num_bad_lines": len(self.bad_lines),
            "duplicate_ids": self.duplicate_ids,
            "missing_audio": len(self.missing_audio),
            "first_missing_audio": self.missing_audio[:20],
        }


def _words(path: str) -> list[str]:
    return [w for w in re.split(r"[^a-z]+", path.lower()) if w]


def classify(relative_path: str) -> BenchFile | str:
    """A BenchFile, or the reason the file is not a benchmark file."""
    words = _words(relative_path)
    task = next((t for t in ("closed", "open", "adjustment", "adjust") if t in words), None)
    if task is None:
        return "no task (closed / open / adjustment) in its path"
    task = "adjustment" if task == "adjust" else task
    language = next((LANGUAGE_ALIASES[w] for w in reversed(words) if w in LANGUAGE_ALIASES), None)
    if language is None:
        return "no language (en / zh / cn) in its path"
    variant = "standard"
    if task == "closed":
        variant = next((v for v in VARIANTS if v in words), None)
        if variant is None:
            return f"closed-ended file without a variant ({', '.join(VARIANTS)}) in its path"
    return BenchFile(task, variant, language, Path(relative_path))


def discover(bench_dir: Path, exclude: Path | None = None) -> LoadReport:
    report = LoadReport()
    for path in sorted(bench_dir.rglob("*.jsonl")):
        if exclude is not None and exclude.resolve() in path.resolve().parents:
            continue
        relative = path.relative_to(bench_dir).as_posix()
        found = classify(relative)
        if isinstance(found, str):
            report.skipped_files.append(f"{path}: {found}")
        else:
            report.files.append(BenchFile(found.task, found.variant, found.language, path))
    return report


class AudioIndex:
    """File name -> paths of every audio file under a folder (built on first use)."""

    def __init__(self, root: Path):
        self.root = root
        self._by_name: dict[str, list[Path]] | None = None

    def find(self, name: str) -> list[Path]:
        if self._by_name is None:
            self._by_name = {}
            for dirpath, _, filenames in os.walk(self.root):
                for filename in filenames:
                    if filename.lower().endswith(AUDIO_SUFFIXES):
                        self._by_name.setdefault(filename, []).append(Path(dirpath) / filename)
        return self._by_name.get(name, [])


def audio_reference(row: dict) -> str | None:
    for name in AUDIO_FIELDS:
        value = row.get(name)
        if isinstance(value, dict):
            value = value.get("path")
        if isinstance(value, str) and value:
            return value
    return None


def resolve_audio(reference: str, jsonl_dir: Path, index: AudioIndex) -> Path | None:
    path = Path(reference)
    for candidate in [path] if path.is_absolute() else [jsonl_dir / path, index.root / path, path]:
        if candidate.is_file():
            return candidate
    matches = index.find(path.name)
    if len(matches) > 1:  # prefer the copy under the jsonl's own folder
        near = [m for m in matches if jsonl_dir.resolve() in m.resolve().parents]
        matches = near or matches
    return matches[0] if matches else None


def row_id(row: dict, line_index: int) -> str:
    for name in ("key", "id"):
        if row.get(name) not in (None, ""):
            return str(row[name])
    return f"line{line_index}"


def load_rows(bench_dir: Path, report: LoadReport, tasks, variants, languages) -> list[dict]:
    """Rows of the selected files, each with ``eval_meta`` and, when found, ``eval_meta.audio``."""
    index = AudioIndex(bench_dir)
    rows: list[dict] = []
    seen: set[str] = set()
    for bench_file in report.files:
        if bench_file.task not in tasks or bench_file.language not in languages:
            continue
        if bench_file.task == "closed" and bench_file.variant not in variants:
            continue
        read = read_jsonl(bench_file.path)
        report.bad_lines.extend(read.bad_lines)
        for i, row in enumerate(read.rows):
            uid = f"{bench_file.task}/{bench_file.variant}/{bench_file.language}/{row_id(row, i)}"
            if uid in seen:
                report.duplicate_ids += 1
                uid = f"{uid}#line{i}"
            seen.add(uid)
            meta = {
                "uid": uid,
                "task": bench_file.task,
                "variant": bench_file.variant,
                "language": bench_file.language,
            }
            reference = audio_reference(row)
            audio = resolve_audio(reference, bench_file.path.parent, index) if reference else None
            if audio is None:
                report.missing_audio.append(f"{uid}: {reference or 'no audio field'}")
            else:
                meta["audio"] = str(audio)
            rows.append({**row, META: meta})
    return rows


def infer_meta(row: dict, line_index: int) -> dict:
    """Task, variant and language of a row from another tool's output (for ``--score-only``). A row's own
    ``eval_meta`` is kept when it is well formed."""
    meta = row.get(META)
    if (
        isinstance(meta, dict)
        and all(isinstance(meta.get(k), str) for k in ("uid", "task", "variant", "language"))
        and meta["task"] in TASKS
        and meta["language"] in LANGUAGES
    ):
        return dict(meta)
    if "instruction_id_list" in row:
        task = "closed"
    elif "decomposed_questions" in row:
        task = "open"
    else:
        task = "adjustment"
    variant, language = "standard", None
    match = _CLOSED_AUDIO_RE.search((audio_reference(row) or "").lower())
    if task == "closed":
        variant = match.group(1) if match and match.group(1) in VARIANTS else "unknown"
    if match:
        language = LANGUAGE_ALIASES[match.group(2)]
    lang_field = str(row.get("language", row.get("lang", ""))).lower()
    if language is None and lang_field:
        language = LANGUAGE_ALIASES.get(lang_field[:2]) or ("zh" if lang_field.startswith("chin") else "en")
    if language is None:
        language = "zh" if contains_cjk(str(row.get("prompt", ""))) else "en"
    uid = f"{task}/{variant}/{language}/{row_id(row, line_index)}"
    return {"uid": uid, "task": task, "variant": variant, "language": language}
