"""The shard files and the files that make a run resumable.

  {output_dir}/{name}-{rank:05d}-{index:06d}.tar        samples: KEY.json + KEY.{i}.flac (``data.document``)
  {output_dir}/manifests/{name}-{rank:05d}-{index:06d}.json  completion manifest: the shard's input lines,
                                                         stats and skipped lines
  {output_dir}/synth-run.json                            the arguments of the run (a resume must match)

A shard is written under a hidden temporary name and renamed when complete; its manifest is written
(also write-then-rename, ``megatron_inserter.files``) after that. A shard counts as finished only when its
manifest exists and records the same input lines as the unit planned now, so a run killed at any moment
is resumed by redoing every unit without a manifest, and an input changed since is caught. Tar members
carry fixed metadata (mtime 0, no owner), so redoing a unit reproduces the shard byte for byte.
"""

from __future__ import annotations

import glob
import io
import json
import os
import tarfile

import numpy as np

from megatron_inserter.data.document import ShardDocument, tar_documents, to_members
from megatron_inserter.data.synth.tts.base import SAMPLE_RATE
from megatron_inserter.errors import DataError, UsageError
from megatron_inserter.files import publish, temporary_path, write_json_atomic

MANIFEST_DIR = "manifests"
RUN_ARGS_FILE = "synth-run.json"


def shard_stem(name: str, rank: int, index: int) -> str:
    return f"{name}-{rank:05d}-{index:06d}"


def write_json(path: str, obj) -> None:
    write_json_atomic(path, obj, indent=2, sort_keys=True)


def encode_flac(audio: np.ndarray) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.asarray(audio, dtype=np.float32), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


class ShardWriter:
    """Writes one tar shard under a temporary name; ``commit()`` makes it durable and renames it into place."""

    def __init__(self, path: str):
        self.path = path
        self.tmp_path = temporary_path(path)
        self._file = open(self.tmp_path, "wb")  # noqa: SIM115 - closed by commit() / abort()
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.GNU_FORMAT)  # noqa: SIM115
        self.num_samples = 0

    def _add_member(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 0
        info.mode = 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        self._tar.addfile(info, io.BytesIO(data))

    def add(self, doc: ShardDocument, audio: dict[str, bytes]) -> None:
        """One document and the encoded audio of its speech segments (by member suffix, ``"0.flac"``)."""
        for name, data in to_members(doc, audio).items():
            self._add_member(name, data)
        self.num_samples += 1

    def commit(self) -> int:
        """Finish the tar, make it durable and rename it into place; returns its size in bytes."""
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        publish(self.tmp_path, self.path)
        return os.path.getsize(self.path)

    def abort(self) -> None:
        try:
            self._tar.close()
            self._file.close()
        finally:
            if os.path.exists(self.tmp_path):
                os.unlink(self.tmp_path)


def iter_shard_members(path: str, damaged: list | None = None):
    """``(key, {member name: bytes})`` per document of a shard (``document.tar_documents``); what went wrong
    with a tar that breaks off is appended to ``damaged``."""
    def note(key, e):
        if damaged is not None:
            damaged.append(f"{path}: the tar breaks after document {key!r} ({e}); the documents before it are used")

    yield from tar_documents(path, note)


def manifest_path(output_dir: str, stem: str) -> str:
    return os.path.join(output_dir, MANIFEST_DIR, f"{stem}.json")


def _read_json(path: str, what: str, fix: str):
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise DataError(f"{path}: the {what} is not valid JSON ({e}); {fix}") from None


def read_manifest(path: str) -> dict:
    manifest = _read_json(path, "shard manifest", "delete it (and its shard) to redo that shard")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("stats"), dict):
        raise DataError(f"{path}: not a shard manifest (no 'stats' object); delete it to redo that shard")
    return manifest


def unit_lines(manifest: dict) -> tuple:
    return manifest.get("input"), manifest.get("first_line"), manifest.get("num_lines")


def is_complete(output_dir: str, stem: str, planned: tuple | None = None) -> bool:
    """A shard is finished when its manifest exists (and its tar, if the manifest says it wrote one).
    ``planned`` = ``(input source, first line, number of lines)`` of the unit as planned now: a manifest
    made from other lines means the input changed since the run started, a ``DataError``."""
    path = manifest_path(output_dir, stem)
    if not os.path.exists(path):
        return False
    try:
        manifest = read_manifest(path)
    except (OSError, DataError):
        return False  # unreadable: the unit is redone and the manifest rewritten
    if planned is not None and unit_lines(manifest) != tuple(planned):
        (src, first, n), now = unit_lines(manifest), tuple(planned)
        raise DataError(
            f"{path}: shard {stem} was made from {n} lines of {src} from line {first}, but the input now gives "
            f"it {now[2]} lines of {now[0]} from line {now[1]}: the input changed since this run started; "
            "restore it, or write to a new --output-dir"
        )
    return not manifest.get("shard") or os.path.exists(os.path.join(output_dir, manifest["shard"]))


def read_manifests(output_dir: str, name: str, rank: int | None = None) -> list[dict]:
    pattern = f"{name}-{rank:05d}-*.json" if rank is not None else f"{name}-*.json"
    return [read_manifest(path) for path in sorted(glob.glob(os.path.join(output_dir, MANIFEST_DIR, pattern)))]


def remove_stale_temporaries(output_dir: str, name: str, rank: int) -> int:
    """Delete half-written files a killed run of this rank left behind; returns how many."""
    patterns = [
        os.path.join(output_dir, f".{name}-{rank:05d}-*.tar.*.tmp"),
        os.path.join(output_dir, MANIFEST_DIR, f".{name}-{rank:05d}-*.json.*.tmp"),
        os.path.join(output_dir, f".{name}-{rank:05d}-*.tar.tmp-*"),  # the names older versions used
        os.path.join(output_dir, MANIFEST_DIR, f".{name}-{rank:05d}-*.json.tmp-*"),
    ]
    n = 0
    for pattern in patterns:
        for path in glob.glob(pattern):
            try:
                os.unlink(path)
                n += 1
            except FileNotFoundError:
                pass
    return n


class RunArgumentsMismatch(UsageError):
    pass


def check_run_arguments(output_dir: str, fingerprint: dict) -> bool:
    """Store the run's arguments, or check them against the stored ones. Returns True when resuming."""
    path = os.path.join(output_dir, RUN_ARGS_FILE)
    if os.path.exists(path):
        fix = ("restore it from a copy, or delete it to resume with the arguments given now (only if they are "
               "the ones the run started with)")
        stored = _read_json(path, "record of the run's arguments", fix)
        if not isinstance(stored, dict) or not isinstance(stored.get("arguments"), dict):
            raise DataError(f"{path}: holds no 'arguments' object; {fix}")
        stored = stored["arguments"]
        if stored.get("document_keying") != fingerprint.get("document_keying"):
            raise RunArgumentsMismatch(
                f"{output_dir} holds a run made by an earlier version of inserter synth, which drew spans, voices "
                "and noise from other keys: finish it with that version, or write to a new --output-dir")
        if stored != fingerprint:
            diffs = [
                f"  {k}: stored {stored.get(k)!r}, now {fingerprint.get(k)!r}"
                for k in sorted(set(stored) | set(fingerprint)) if stored.get(k) != fingerprint.get(k)
            ]
            raise RunArgumentsMismatch(
                f"{output_dir} holds a run with different arguments:\n" + "\n".join(diffs) +
                "\nResume with the original arguments, or write to a new --output-dir."
            )
        return True
    write_json(path, {"arguments": fingerprint})
    return False
