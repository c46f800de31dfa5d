import os
import signal
import subprocess
import sys
import time

import psutil

from tests.data.indexed.tiny_corpus import WORDS_EN


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_pool_workers_die_when_preprocess_is_killed(tmp_path, tiny_tokenizer_path):
    line = '{"text": "' + " ".join(WORDS_EN * 40) + '"}\n'
    path = tmp_path / "big.jsonl"
    path.write_text(line * 6000)  # ~20 MB: keeps two workers busy well past the kill
    cmd = [sys.executable, "-m", "megatron_inserter.cli", "preprocess", "--input", str(path), "--output-prefix",
           str(tmp_path / "out"), "--tokenizer-type", "sentencepiece", "--tokenizer-model", tiny_tokenizer_path,
           "--workers", "2", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.time() + 60
        while len(workers) < 2 and time.time() < deadline and proc.poll() is None:
            workers = [c.pid for c in psutil.Process(proc.pid).children() if _alive(c.pid)]
            time.sleep(0.05)
        assert len(workers) == 2, "preprocess did not start its two workers"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.time() + 5
        while any(map(_alive, workers)) and time.time() < deadline:
            time.sleep(0.05)
        assert not any(map(_alive, workers)), "pool workers outlived the killed preprocess"
    finally:
        for pid in [proc.pid, *workers]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
