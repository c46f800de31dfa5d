"""Manifests (jsonl, one row per clip) of the ASR and audio-QA evaluations: rows with where they came from,
audio paths relative to the manifest, unique row ids, and the task that reads its rows from one."""

from __future__ import annotations

from pathlib import Path

from megatron_inserter.errors import DataError, UsageError
from megatron_inserter.eval.records import read_jsonl
from megatron_inserter.eval.skips import Skips
from megatron_inserter.eval.task import EvalConfig, EvalTask


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


def load_stats(rows: list[dict], skipped: int, skips: Skips) -> dict:
    """What loading a manifest gave: its rows, the rows skipped and the first 20 input skips."""
    first = [f"{s.row}: {s.reason}" for s in skips if s.stage == "input"][:20]
    return {"rows": len(rows), "skipped": skipped, "first_skipped": first}


class ManifestTask(EvalTask):
    """An evaluation whose rows come from one manifest; ``read()`` gives ``(rows, load stats)``."""

    def __init__(self, manifest: Path, config: EvalConfig):
        super().__init__(config)
        self.manifest = Path(manifest)

    def read(self) -> tuple[list[dict], dict]:
        raise NotImplementedError

    def load(self) -> list[dict]:
        rows, self.load_stats = self.read()
        if not rows:
            raise DataError(f"{self.manifest}: no usable rows ({'; '.join(self.load_stats['first_skipped'][:3])})")
        return rows
