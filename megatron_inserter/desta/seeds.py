"""The seeds file: a header record, then one DeSTA2 seed per speech segment.

    {"header": true, "kind": "desta-seeds", "format_version": 1, "buckets": {...}, "stats": {...}}
    {"id", "audio", "text", "duration", "seed", "attributes": {...}, "measured": {...}, "recorded": {...},
     "source": {"shard", "document", "segment"}}

``audio`` is a wav file, relative to the seeds file's folder. ``seed`` is the seed transcript in DeSTA2's
form::

    [00:00:00 - 00:00:03]: "the spoken text" (Gender: Female, Accent: Scottish, Pitch: High,
    Speaking speed: Slow, Volume: Normal, Noise: SNR 10 dB, Duration: 3s)

with only the attributes that are known (English, the usual language, is not named; other languages are).

Buckets: pitch, speaking speed and volume are measured (median F0, syllables per second, RMS dBFS of the
speech) and cut at the terciles of their distribution over the whole seeds file: below the first tercile
is Low / Slow / Quiet, above the second High / Fast / Loud, Normal between. Pitch terciles are taken per
gender when the gender is known (a male voice is not "low" merely for being male). The edges are written
in the header, so a later file can be labelled the same way (``Buckets.from_header``). Noise: the recorded
SNR of added noise (``SNR 10 dB``); without one, a clip whose pauses are digital silence is ``Clean``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from megatron_inserter.errors import DataError
from megatron_inserter.eval.records import read_jsonl

KIND = "desta-seeds"
FORMAT_VERSION = 1
PITCH_LABELS = ("Low", "Normal", "High")
SPEED_LABELS = ("Slow", "Normal", "Fast")
VOLUME_LABELS = ("Quiet", "Normal", "Loud")
CLEAN_AT_DB = 30.0  # a recorded SNR at or above this is reported as Clean in the evaluation's noise task
ALL = "all"
MEASURES = {"pitch": "f0_hz", "speed": "syllables_per_s", "volume": "loudness_dbfs"}
LABELS = {"pitch": PITCH_LABELS, "speed": SPEED_LABELS, "volume": VOLUME_LABELS}


def terciles(values) -> list[float] | None:
    values = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None
    return [round(float(q), 4) for q in np.quantile(values, [1 / 3, 2 / 3])]


def bucket(value: float | None, edges: list[float] | None, labels: tuple[str, str, str]) -> str | None:
    if value is None or edges is None:
        return None
    if value < edges[0]:
        return labels[0]
    if value > edges[1]:
        return labels[2]
    return labels[1]


@dataclass
class Buckets:
    """Tercile edges: ``pitch[group]`` (group: a gender or ``"all"``), ``speed``, ``volume``."""

    pitch: dict[str, list[float]] = field(default_factory=dict)
    speed: list[float] | None = None
    volume: list[float] | None = None

    @classmethod
    def fit(cls, rows: list[dict]) -> Buckets:
        """From measurement records (``measured`` and ``voice.gender`` of each)."""
        pitch = {ALL: terciles(r["measured"].get("f0_hz") for r in rows)}
        for gender in sorted({r["voice"].get("gender") for r in rows} - {None}):
            edges = terciles(r["measured"].get("f0_hz") for r in rows if r["voice"].get("gender") == gender)
            if edges is not None:
                pitch[gender] = edges
        return cls(pitch={k: v for k, v in pitch.items() if v is not None},
                   speed=terciles(r["measured"].get("syllables_per_s") for r in rows),
                   volume=terciles(r["measured"].get("loudness_dbfs") for r in rows))

    def label(self, kind: str, measured: dict, gender: str | None = None) -> str | None:
        value = measured.get(MEASURES[kind])
        if kind == "pitch":
            edges = self.pitch.get(gender) if gender in self.pitch else self.pitch.get(ALL)
        else:
            edges = getattr(self, kind)
        return bucket(value, edges, LABELS[kind])

    def as_header(self) -> dict:
        return {
            "pitch": {"measure": "f0_hz (median YIN F0 of the voiced speech)", "labels": list(PITCH_LABELS),
                      "edges_by_gender": self.pitch},
            "speed": {"measure": "syllables_per_s (first to last active frame)", "labels": list(SPEED_LABELS),
                      "edges": self.speed},
            "volume": {"measure": "loudness_dbfs (RMS of the active frames)", "labels": list(VOLUME_LABELS),
                       "edges": self.volume},
            "rule": "value < edges[0]: first label; value > edges[1]: last label; else Normal "
                    "(edges: the 1/3 and 2/3 quantiles of the measured values)",
        }

    @classmethod
    def from_header(cls, header: dict) -> Buckets:
        try:
            b = header["buckets"]
            return cls(pitch=dict(b["pitch"]["edges_by_gender"]), speed=b["speed"]["edges"],
                       volume=b["volume"]["edges"])
        except (KeyError, TypeError) as err:
            raise DataError(f"seeds header has no usable buckets ({err})") from None


def noise_label(recorded_snr: float | None, noise_free: bool) -> str | None:
    if recorded_snr is not None:
        return f"SNR {round(recorded_snr):d} dB"
    return "Clean" if noise_free else None


def timestamp(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


def seed_transcript(text: str, duration: float, attributes: dict) -> str:
    """``[00:00:00 - 00:00:03]: "text" (Gender: ..., Duration: 3s)`` from known attributes."""
    seconds = max(1, round(duration))
    parts = []
    for key, name in (("gender", "Gender"), ("accent", "Accent"), ("language", "Language"), ("pitch", "Pitch"),
                      ("speed", "Speaking speed"), ("volume", "Volume"), ("noise", "Noise")):
        value = attributes.get(key)
        if value is None or (key == "language" and value == "English"):
            continue
        parts.append(f"{name}: {value}")
    parts.append(f"Duration: {seconds}s")
    spoken = " ".join(text.split()).replace('"', "'")
    return f'[{timestamp(0)} - {timestamp(seconds)}]: "{spoken}" ({", ".join(parts)})'


def header_record(buckets: Buckets, stats: dict) -> dict:
    return {"header": True, "kind": KIND, "format_version": FORMAT_VERSION, "buckets": buckets.as_header(),
            "noise": {"label": "the recorded SNR of added noise; Clean when none was recorded and the pauses "
                               "are digital silence"},
            "stats": stats}


def check_header(obj: dict, path: str) -> dict:
    if not (isinstance(obj, dict) and obj.get("header") is True and obj.get("kind") == KIND):
        raise DataError(f"{path}: the first line is not a seeds header (kind {KIND!r}); make the file with "
                        "`inserter desta build`")
    if obj.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{path}: seeds format_version {obj.get('format_version')!r}, this reader knows "
                        f"{FORMAT_VERSION}; rebuild it with this version's `inserter desta build`")
    return obj


@dataclass
class SeedsFile:
    header: dict
    rows: list[dict]  # each with "line" (its line number) and "audio" resolved against the file's folder
    bad: list[tuple[str, str]]  # (file:line, reason)


REQUIRED = {"id": str, "audio": str, "text": str, "seed": str, "attributes": dict}


def read_seeds(path) -> SeedsFile:
    """The header and rows of a seeds file; a malformed row is returned in ``bad`` (file:line, reason)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"seeds file {path} does not exist (make it with `inserter desta build`)")
    read = read_jsonl(path)
    numbered = read.numbered_rows()
    if not numbered or (read.bad_lines and read.bad_lines[0].line < numbered[0][0]):
        raise DataError(f"{path}: the first line is not a seeds header; make the file with `inserter desta build`")
    header = check_header(numbered[0][1], str(path))
    bad = [(f"{b.path}:{b.line}", b.reason) for b in read.bad_lines]
    rows, seen = [], set()
    for line, row in numbered[1:]:
        where = f"{path}:{line}"
        wrong = [k for k, kind in REQUIRED.items() if not isinstance(row.get(k), kind) or row.get(k) == ""]
        if wrong:
            bad.append((where, f"needs {', '.join(wrong)} ({' / '.join(t.__name__ for t in REQUIRED.values())})"))
            continue
        if row["id"] in seen:
            bad.append((where, f"seed id {row['id']!r} appears twice"))
            continue
        seen.add(row["id"])
        audio = Path(row["audio"])
        rows.append({**row, "line": line, "audio": str(audio if audio.is_absolute() else path.parent / audio)})
    return SeedsFile(header, rows, bad)
