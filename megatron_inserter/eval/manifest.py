"""Manifests (jsonl, one row per clip) of the ASR and audio-QA evaluations: rows with where they came from,
audio paths relative to the manifest, unique row ids."""

from __future__ import annotations

from pathlib import Path

from megatron_inserter.errors import UsageError
from megatron_inserter.eval.records import read_jsonl


def read_manifest(path: Path, flag: str = "--manifest") -> list[tuple[str, dict | str]]:
    """(``file:line``, row) for every line of a manifest in file order; a bad line comes back as
    (``file:line``, reason)."""
    if not path.is_file():
        raise UsageError(f"{flag} {path} does not exist (a jsonl file, one row per clip)")
    read = read_jsonl(path)
    lines = [(b.line, b.reason) for b in read.bad_lines] + read.numbered_rows()
    return [(f"{path}:{line}", item) for line, item in sorted(lines, key=lambda x: x[0])]


def resolve_audio(value: str, manifest: Path) -> Path:
    return Path(value) if Path(value).is_absolute() else manifest.parent / value


def unique_uids(rows: list[dict]) -> None:
    if len({r["uid"] for r in rows}) != len(rows):
        for i, row in enumerate(rows):
            row["uid"] = f"{row['uid']}#{i}"
