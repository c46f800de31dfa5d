"""The shard format (webdataset tar) and the files that make a run resumable.

  {output_dir}/{name}-{rank:05d}-{index:06d}.tar        samples: KEY.json + KEY.{i}.flac
  {output_dir}/manifests/{name}-{rank:05d}-{index:06d}.json  completion manifest: the shard's stats
  {output_dir}/synth-run.json                            the arguments of the run (a resume must match)

A shard is written under a hidden temporary name and renamed when complete; its manifest is written
(also write-then-rename) after that. A shard counts as finished only when its manifest exists, so a run
killed at any moment is resumed by redoing every unit without a manifest. Tar members carry fixed
metadata (mtime 0, no owner), so redoing a unit reproduces the shard byte for byte.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import tarfile

import numpy as np

from megatron_inserter.data.synth.tts.base import SAMPLE_RATE

MANIFEST_DIR = "manifests"
RUN_ARGS_FILE = "synth-run.json"


def shard_stem(name: str, rank: int, index: int) -> str:
    return f"{name}-{rank:05d}-{index:06d}"


def sample_key(doc_id: str) -> str:
    """The webdataset key of a document: a hex digest of its id (no dots, fixed length)."""
    return hashlib.sha1(doc_id.encode("utf-8")).hexdigest()


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to a hidden temporary file next to ``path``, fsync it, and rename it into place."""
    d, base = os.path.split(path)
    tmp = os.path.join(d, f".{base}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: str, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode())


def encode_flac(audio: np.ndarray) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.asarray(audio, dtype=np.float32), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


class ShardWriter:
    """Writes one tar shard under a temporary name; ``commit()`` renames it into place."""

    def __init__(self, path: str):
        self.path = path
        d, base = os.path.split(path)
        self.tmp_path = os.path.join(d, f".{base}.tmp-{os.getpid()}")
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

    def add_sample(self, key: str, meta: dict, audio_members: dict[str, bytes]) -> None:
        """``audio_members`` maps a member extension (``"0.flac"``) to its bytes."""
        self._add_member(f"{key}.json", json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8"))
        for ext, data in audio_members.items():
            self._add_member(f"{key}.{ext}", data)
        self.num_samples += 1

    def commit(self) -> int:
        """Finish the tar, make it durable and rename it into place; returns its size in bytes."""
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.tmp_path, self.path)
        return os.path.getsize(self.path)

    def abort(self) -> None:
        try:
            self._tar.close()
            self._file.close()
        finally:
            if os.path.exists(self.tmp_path):
                os.unlink(self.tmp_path)


def manifest_path(output_dir: str, stem: str) -> str:
    return os.path.join(output_dir, MANIFEST_DIR, f"{stem}.json")


def is_complete(output_dir: str, stem: str) -> bool:
    """A shard is finished when its manifest exists (and its tar, if the manifest says it wrote one)."""
    path = manifest_path(output_dir, stem)
    if not os.path.exists(path):
        return False
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, json.JSONDecodeError):
        return False
    return not manifest.get("shard") or os.path.exists(os.path.join(output_dir, manifest["shard"]))


def read_manifests(output_dir: str, name: str, rank: int | None = None) -> list[dict]:
    pattern = f"{name}-{rank:05d}-*.json" if rank is not None else f"{name}-*.json"
    out = []
    for path in sorted(glob.glob(os.path.join(output_dir, MANIFEST_DIR, pattern))):
        with open(path) as f:
            out.append(json.load(f))
    return out


def remove_stale_temporaries(output_dir: str, name: str, rank: int) -> int:
    """Delete half-written files a killed run of this rank left behind; returns how many."""
    patterns = [
        os.path.join(output_dir, f".{name}-{rank:05d}-*.tar.tmp-*"),
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


class RunArgumentsMismatch(RuntimeError):
    pass


def check_run_arguments(output_dir: str, fingerprint: dict) -> bool:
    """Store the run's arguments, or check them against the stored ones. Returns True when resuming."""
    path = os.path.join(output_dir, RUN_ARGS_FILE)
    if os.path.exists(path):
        with open(path) as f:
            stored = json.load(f).get("arguments", {})
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
    atomic_write_json(path, {"arguments": fingerprint})
    return False
