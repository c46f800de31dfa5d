"""Whole ``inserter synth --tts openai`` runs against fake TTS servers: voices of each span's language used and
recorded, the API key delivered but never written, per-server statistics, 500s and timeouts retried and
counted without changing a byte, and a server killed mid-run, then the run resumed, giving exactly the
shards of an uninterrupted run."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from megatron_inserter.data.synth.cli import main
from megatron_inserter.data.synth.voices import read_voice_pool
from tests.data.synth.conftest import shard_bytes, synth_args, write_corpus
from tests.data.synth.fake_servers import FakeASRServer, FakeTTSServer, TTSState
from tests.data.synth.test_shards import read_samples

REPO = Path(__file__).resolve().parents[3]
VOICES = "en_f1\ten\tfemale\nen_m1\ten\tmale\nen_f2\ten-GB\tf\nzh_f1\tzh\tfemale\nzh_m1\tcmn\tm\nja_f1\tja\tfemale\n"
KEY = "sk-fake-key-for-tests-4242"
PROBE_TEXTS = ("Hello there, this is a test.", "你好，这是一个测试。")


def openai_args(corpus, out, voices, *urls, extra=()):
    args = synth_args(corpus, out, "--shard-size", "2", "--tts", "openai", "--tts-model", "fake-tts",
                      "--tts-voices", str(voices), "--tts-timeout", "5", "--http-retries", "2",
                      "--tts-concurrency", "4", "--tts-speed", "0.9,1.1", *extra)
    for url in urls:
        args += ["--tts-url", url]
    return args


@pytest.fixture(scope="module")
def server_run(tmp_path_factory):
    """An uninterrupted run against one healthy server, with an API key."""
    root = tmp_path_factory.mktemp("server_run")
    write_corpus(root / "corpus", n_docs=8, bad=False)
    (root / "voices.tsv").write_text(VOICES)
    os.environ["FAKE_TTS_KEY"] = KEY
    try:
        with FakeTTSServer().start() as server:
            args = openai_args(root / "corpus", root / "out", root / "voices.tsv", server.url,
                               extra=("--tts-api-key-env", "FAKE_TTS_KEY"))
            assert main(args) == 0
    finally:
        del os.environ["FAKE_TTS_KEY"]
    return root, server


def _documents(out):
    from megatron_inserter.data.document import from_members

    docs = []
    for sample in read_samples(out):
        members = {f"{sample['__key__']}.{k}": v for k, v in sample.items() if not k.startswith("__")}
        docs.append(from_members(members)[0])
    return docs


def test_voices_of_each_language_are_used_and_recorded(server_run):
    root, server = server_run
    pool = read_voice_pool(str(root / "voices.tsv"))
    docs = _documents(root / "out")
    speech = [seg for doc in docs for seg in doc.speech]
    assert len(docs) == 8 and speech
    for seg in speech:
        assert seg.speaker in pool.voices(seg.language), (seg.speaker, seg.language)
        assert seg.gender == pool.gender_of[seg.speaker]
        assert seg.tts == "openai" and seg.tts_model == "fake-tts" and 0.9 <= seg.controls.speed <= 1.1
    assert {seg.language for seg in speech} == {"en", "zh"}
    assert len({seg.speaker for seg in speech}) >= 4
    sent = {r["voice"] for r in server.requests}
    assert "ja_f1" not in sent and sent <= set(pool.voices("en")) | set(pool.voices("zh"))
    assert {r["authorization"] for r in server.requests} == {f"Bearer {KEY}"}
    for path in (root / "out").rglob("*.json"):
        assert KEY not in path.read_text(), f"{path} holds the API key"


def test_stats_report_each_server(server_run):
    root, server = server_run
    stats = json.loads((root / "out" / "stats.json").read_text())
    (label, s), = stats["tts_servers"].items()
    assert label == server.url
    spoken = [r for r in server.requests if r["input"] not in PROBE_TEXTS]
    assert s["requests"] == s["ok"] == len(spoken) == stats["spans"] and s["failed"] == {}
    assert 0 < s["latency_p50_s"] <= s["latency_p90_s"] <= s["latency_p99_s"] < 5
    assert s["real_time_factor"] > 0 and abs(s["audio_seconds"] - stats["speech_seconds"]) < 0.01
    assert stats["tts_failures"] == {} and stats["tts"] == "openai"


def test_500s_and_timeouts_are_retried_counted_and_change_nothing(server_run, tmp_path):
    root, _ = server_run

    def first_attempt(text, voice):
        if text in PROBE_TEXTS:
            return None
        return {0: 500, 1: "hang", 2: 503}.get(sum(map(ord, text)) % 7)

    state = TTSState(first_attempt=first_attempt)
    out = tmp_path / "out"
    with FakeTTSServer(state=state, hang_seconds=6).start() as a, FakeTTSServer(state=state, hang_seconds=6).start() as b:
        assert main(openai_args(root / "corpus", out, root / "voices.tsv", a.url, b.url,
                                extra=("--tts-timeout", "3"))) == 0
    assert shard_bytes(out) == shard_bytes(root / "out")
    stats = json.loads((out / "stats.json").read_text())
    assert state.injected["500"] > 0 and state.injected["hang"] > 0
    assert stats["tts_failures"] == {"http_500": state.injected["500"], "timeout": state.injected["hang"],
                                     "http_503": state.injected["503"]}
    assert all(s["requests"] > 0 for s in stats["tts_servers"].values()) and len(stats["tts_servers"]) == 2
    assert sum(s["ok"] for s in stats["tts_servers"].values()) == stats["spans"]


def _complete(out: Path) -> int:
    d = out / "manifests"
    return len([p for p in os.listdir(d) if p.endswith(".json") and not p.startswith(".")]) if d.exists() else 0


def test_a_server_killed_mid_run_then_the_run_resumed_equals_an_uninterrupted_run(server_run, tmp_path):
    root, _ = server_run
    total_units = _complete(root / "out")
    out = tmp_path / "out"
    server = FakeTTSServer(latency=0.05).start()
    port = server.port
    cmd = [sys.executable, "-m", "megatron_inserter.data.synth.cli",
           *openai_args(root / "corpus", out, root / "voices.tsv", server.url, extra=("--http-retries", "1"))]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while _complete(out) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    server.stop()  # the TTS server dies mid-run
    _, err = proc.communicate(timeout=300)
    done_at_kill = _complete(out)
    assert proc.returncode == 1 and 0 < done_at_kill < total_units, err
    assert "shards failed" in err and "run the same command again" in err
    assert not [p for p in os.listdir(out) if p.endswith(".tar") and p not in os.listdir(root / "out")]

    with FakeTTSServer().start(port=port):  # the server is back
        resumed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{done_at_kill} already done" in resumed.stderr
    assert shard_bytes(out) == shard_bytes(root / "out")
    assert not [p for p in os.listdir(out) if p.startswith(".")], "no temporary file may remain"


def test_asr_round_trip_as_a_separate_pass_and_inside_synth(server_run, tmp_path):
    from megatron_inserter.data.synth.filter_cli import main as filter_main

    root, server = server_run
    bad = {"en_m1", "zh_m1"}
    asr = FakeASRServer(server.state.registry, bad_voices=bad).start()
    try:
        checked = tmp_path / "checked"
        argv = ["--shards", str(root / "out"), "--output-dir", str(checked), "--asr-url", asr.url, "--asr-model",
                "fake-asr", "--max-span-wer", "0.2", "--no-progress"]
        assert filter_main(argv) == 0
        before = {d.id: d for d in _documents(root / "out")}
        after = {d.id: d for d in _documents(checked)}
        speech = [seg for d in before.values() for seg in d.speech]
        good = [seg for seg in speech if seg.speaker not in bad]
        assert len(asr.requests) == len(speech) and 0 < len(good) < len(speech)
        dropped = [i for i, d in before.items() if all(seg.speaker in bad for seg in d.speech)]
        assert sorted(after) == sorted(set(before) - set(dropped))
        for doc_id, doc in after.items():
            assert doc.text == before[doc_id].text  # rejected speech became text, nothing else moved
            assert [s.text for s in doc.speech] == [s.text for s in before[doc_id].speech if s.speaker not in bad]
            assert all(s.asr_wer == 0.0 and s.audio == f"{i}.flac" for i, s in enumerate(doc.speech))
        stats = json.loads((checked / "filter-stats.json").read_text())
        assert stats["asr_checked"] == len(speech) and stats["spans_asr_rejected"] == len(speech) - len(good)
        assert stats["asr_wer_hist"] == {"0.00": len(good), "1.00": len(speech) - len(good)}
        assert stats["skipped"] == ({"asr_rejected": len(dropped)} if dropped else {})
        first = shard_bytes(checked)
        assert filter_main(argv) == 0 and shard_bytes(checked) == first  # resumed: nothing redone
        assert json.loads((checked / "filter-stats.json").read_text())["shards_resumed"] == len(first)

        asr.requests.clear()
        out = tmp_path / "out"
        with FakeTTSServer(state=TTSState(registry=server.state.registry)).start() as tts:
            assert main(openai_args(root / "corpus", out, root / "voices.tsv", tts.url, extra=(
                "--asr-url", asr.url, "--asr-model", "fake-asr", "--max-span-wer", "0.2", "--tts-attempts", "3"))) == 0
        stats = json.loads((out / "stats.json").read_text())
        checks = [r for r in asr.requests if r["text"] not in PROBE_TEXTS]
        fails = [r for r in checks if r["voice"] in bad]
        assert stats["asr_checked"] == len(checks) and len(fails) > 0
        assert stats["asr_wer_hist"] == {"0.00": len(checks) - len(fails), "1.00": len(fails)}
        assert stats["asr_resynthesized"] + stats["spans_asr_rejected"] == len(fails)
        (label, s), = stats["asr_servers"].items()
        assert label == asr.url and s["ok"] == len(checks)
        docs = _documents(out)
        assert all(seg.speaker not in bad and seg.asr_wer == 0.0 for d in docs for seg in d.speech)
        assert stats["spans"] == sum(len(d.speech) for d in docs)
    finally:
        asr.stop()
