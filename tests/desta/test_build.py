"""`inserter desta build`: seeds that agree with their audio, the seed form, resume, and hostile shards."""

import io
import json
import re
import tarfile

import numpy as np
import pytest
import soundfile as sf

from megatron_inserter.data.document import from_members
from megatron_inserter.data.indexed.audio_store import decode_audio
from megatron_inserter.desta.build import BuildConfig, build
from megatron_inserter.desta.cli import main
from megatron_inserter.desta.seeds import read_seeds
from tests.desta.conftest import PITCHES, RATES
from tests.desta.shards import PAUSED_TEXTS, Clip, write_shard

SEED_FORM = re.compile(r'^\[00:00:00 - 00:00:(\d\d)\]: "(.+)" \((.+), Duration: (\d+)s\)$')


def by_speaker(seeds):
    return {row["recorded"]["speaker"]: row for row in seeds.rows if row["recorded"]["controls"]["noise"] is None}


def test_seed_rows_have_the_destas_form_and_the_recorded_voice(built_seeds):
    path, clips = built_seeds
    seeds = read_seeds(path)
    assert not seeds.bad and len(seeds.rows) == len(clips)
    assert seeds.header["stats"]["seeds"] == len(clips) and seeds.header["stats"]["skipped"] == {}
    for row, clip in zip(seeds.rows, clips):  # shard order is clip order
        assert row["recorded"]["speaker"] == clip.speaker and row["text"] == clip.text
        match = SEED_FORM.match(row["seed"])
        assert match, row["seed"]
        seconds = max(1, round(row["duration"]))
        assert int(match.group(1)) == int(match.group(4)) == seconds and match.group(2) == clip.text
        a = row["attributes"]
        assert a["gender"] == ("Female" if "+f" in clip.speaker else "Male")
        assert a["accent"] == {"en-us": "American", "en-gb-scotland": "Scottish", "en-029": "Caribbean",
                               "en": "British"}[clip.speaker.split(":")[1].split("+")[0]]
        assert f"Gender: {a['gender']}, Accent: {a['accent']}, Pitch: {a['pitch']}" in row["seed"]
        assert f"Speaking speed: {a['speed']}, Volume: {a['volume']}" in row["seed"]
        assert "Language" not in row["seed"]  # English is not named
        if clip.noise:
            assert a["noise"] == f"SNR {round(clip.snr_db)} dB" and f"Noise: SNR {round(clip.snr_db)} dB" in row["seed"]
        elif row["measured"]["noise_free"]:
            assert a["noise"] == "Clean" and "Noise: Clean" in row["seed"]
        else:  # a clean clip without 30 ms of digital silence: its noise is unknown, not guessed
            assert "noise" not in a and "Noise" not in row["seed"]
    clean = [r for r, c in zip(seeds.rows, clips) if not c.noise]
    assert sum(r["attributes"].get("noise") == "Clean" for r in clean) >= 0.8 * len(clean)


def test_the_wav_clip_is_the_shards_audio_sample_for_sample(built_seeds, proof_shards):
    path, _ = built_seeds
    seeds = read_seeds(path)
    shards, _ = proof_shards
    with tarfile.open(shards / "part-00000-000000.tar") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    first_key = min({n.split(".")[0] for n in members})
    doc, audio = from_members({n: b for n, b in members.items() if n.startswith(first_key)})
    row = next(r for r in seeds.rows if r["id"] == f"{doc.key}-0")
    wav, rate = sf.read(row["audio"], dtype="int16")
    assert rate == 16_000 and np.array_equal(wav, decode_audio(audio[doc.speech[0].audio]))
    assert not path.with_name("seeds_audio").joinpath(".tmp").exists()
    assert not [p for p in path.parent.rglob(".*.tmp")]  # nothing half-written left


def test_high_pitch_clips_measure_higher_than_low_and_fast_clips_faster_than_slow(built_seeds):
    seeds = read_seeds(built_seeds[0])
    rows = by_speaker(seeds)
    for voice in ("en-us+m3", "en-gb-scotland+f2", "en-029+m1", "en+f4"):
        low, high = (rows[f"espeak:{voice}:p{p}:r175"]["measured"]["f0_hz"] for p in PITCHES)
        assert high > low
        slow, fast = (rows[f"espeak:{voice}:p50:r{r}"]["measured"]["syllables_per_s"] for r in RATES)
        assert fast > slow
    # The buckets agree with the audio: mean F0 of "High" above "Low", "Fast" faster than "Slow".
    f0 = {label: np.mean([r["measured"]["f0_hz"] for r in seeds.rows if r["attributes"].get("pitch") == label])
          for label in ("Low", "High")}
    assert f0["High"] > f0["Low"]
    for gender in ("Male", "Female"):  # within each gender too (the terciles are per gender)
        same = [r for r in seeds.rows if r["attributes"]["gender"] == gender]
        hi = [r["measured"]["f0_hz"] for r in same if r["attributes"].get("pitch") == "High"]
        lo = [r["measured"]["f0_hz"] for r in same if r["attributes"].get("pitch") == "Low"]
        assert min(hi) > max(lo)
    rate = {label: np.mean([r["measured"]["syllables_per_s"] for r in seeds.rows if r["attributes"]["speed"] == label])
            for label in ("Slow", "Normal", "Fast")}
    assert rate["Slow"] < rate["Normal"] < rate["Fast"]
    # every espeak "fast" clip is labelled Fast, every "slow" one Slow
    assert {rows[f"espeak:{v}:p50:r{RATES[1]}"]["attributes"]["speed"] for v in ("en-us+m3", "en+f4")} == {"Fast"}
    assert {rows[f"espeak:{v}:p50:r{RATES[0]}"]["attributes"]["speed"] for v in ("en-us+m3", "en+f4")} == {"Slow"}
    edges = seeds.header["buckets"]["pitch"]["edges_by_gender"]
    assert set(edges) == {"all", "Male", "Female"} and all(lo <= hi for lo, hi in edges.values())


def test_measured_snr_is_within_one_db_of_the_recorded_one(built_seeds):
    noisy = [r for r in read_seeds(built_seeds[0]).rows if r["recorded"]["controls"]["noise"] is not None]
    assert {r["recorded"]["controls"]["noise"] for r in noisy} == {"white", "pink"}
    for row in noisy:
        recorded, measured = row["recorded"]["controls"]["snr_db"], row["measured"]["snr_db"]
        assert abs(measured - recorded) < 1.0, (row["recorded"], measured)
        assert not row["measured"]["noise_free"]


def test_a_rerun_measures_nothing_and_writes_the_same_file_and_a_lost_clip_is_redone(built_seeds, proof_shards,
                                                                                   tmp_path, capsys):
    shards, clips = proof_shards
    out = tmp_path / "seeds.jsonl"
    first = build(BuildConfig([str(shards)], out, limit=5, progress=False))
    assert (first.measured, first.resumed, first.seeds) == (5, 0, 5)
    full = build(BuildConfig([str(shards)], out, progress=False))
    assert (full.measured, full.resumed, full.seeds) == (len(clips) - 5, 5, len(clips))
    text = out.read_text()
    again = build(BuildConfig([str(shards)], out, progress=False))
    assert (again.measured, again.resumed) == (0, len(clips))
    strip = [json.loads(line) for line in text.splitlines()][1:]
    assert [json.loads(line) for line in out.read_text().splitlines()][1:] == strip
    lost = tmp_path / strip[3]["audio"]
    lost.unlink()
    redo = build(BuildConfig([str(shards)], out, progress=False))
    assert (redo.measured, redo.resumed) == (1, len(clips) - 1) and lost.is_file()
    # The same seeds as the session's build, wherever the file lives (audio paths are relative to it).
    reference = read_seeds(built_seeds[0]).rows
    assert [r["seed"] for r in read_seeds(out).rows] == [r["seed"] for r in reference]


def test_worker_processes_give_the_same_seeds_as_one_process(built_seeds, proof_shards, tmp_path):
    out = tmp_path / "seeds.jsonl"
    assert main(["build", "--shards", str(proof_shards[0]), "--output", str(out), "--workers", "2",
                 "--no-progress"]) == 0

    def without_paths(path):
        return [{k: v for k, v in json.loads(line).items() if k != "audio"} for line in path.read_text().splitlines()]

    assert without_paths(out) == without_paths(built_seeds[0])


def test_bad_documents_and_a_truncated_shard_are_counted_skips(tmp_path, capsys):
    shard = tmp_path / "shards" / "good-00000-000000.tar"
    write_shard(shard, [Clip(PAUSED_TEXTS[0], "espeak:en-us+m3:p50:r175"),
                        Clip(PAUSED_TEXTS[1], "espeak:en+f4:p50:r175"),
                        Clip(PAUSED_TEXTS[2], "espeak:en-us+m1:p50:r175")], per_document=1)
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar if m.isfile()]
    broken = tmp_path / "shards" / "broken-00000-000000.tar"
    with tarfile.open(broken, "w") as tar:
        for i, (info, data) in enumerate(members):
            if i == 0:
                data = b"{not json"  # first document: bad JSON
            elif i == 3:
                data = b"RIFF garbage"  # second document's audio: undecodable
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    cut = tmp_path / "shards" / "cut-00000-000000.tar"
    cut.write_bytes(shard.read_bytes()[: 3000])
    shard.unlink()
    out = tmp_path / "seeds.jsonl"
    assert main(["build", "--shards", str(tmp_path / "shards"), "--output", str(out), "--no-progress"]) == 0
    seeds = read_seeds(out)
    assert len(seeds.rows) == 1 and seeds.rows[0]["text"] == PAUSED_TEXTS[2]
    skipped = seeds.header["stats"]["skipped"]
    assert skipped == {"bad_json": 1, "bad_audio": 1, "shard_truncated": 1}
    err = capsys.readouterr().err
    assert "broken-00000-000000.tar" in err and "1 seeds" in err


def test_no_shards_is_one_usage_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["build", "--shards", str(tmp_path / "empty"), "--output", str(tmp_path / "s.jsonl")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


@pytest.mark.parametrize("first_line,message", [
    ('{"id": "x"}', "not a seeds header"),
    ('{"header": true, "kind": "desta-seeds", "format_version": 99}', "format_version 99"),
])
def test_a_file_without_a_valid_header_is_refused(tmp_path, first_line, message):
    from megatron_inserter.errors import DataError

    path = tmp_path / "s.jsonl"
    path.write_text(first_line + "\n")
    with pytest.raises(DataError, match=message):
        read_seeds(path)
