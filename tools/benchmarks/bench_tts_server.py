#!/usr/bin/env python3
"""Benchmark `inserter synth --tts openai` against a local TTS server with a fixed latency per request.

    .venv/bin/python tools/benchmarks/bench_tts_server.py [--requests 800] [--latency 0.1] [--concurrency 16]

The server (stdlib http.server, in this process) answers every ``POST /v1/audio/speech`` after exactly
``--latency`` seconds with 16 kHz WAV audio (0.3 s per word). One worker process synthesizes a generated
English corpus of about ``--requests`` spans with ``--tts-concurrency`` requests in flight. With a fixed
latency the ceiling is ``concurrency / latency`` requests per second (160/s for 16 and 0.1 s); the goal is
at least 90% of it. Baseline measured in the same run: the same corpus with ``--tts-concurrency 1``
(ceiling ``1 / latency``), for the speed-up. Requests per second are counted over the worker's time
(``worker_seconds`` in stats.json); stats.json's per-server latency percentiles and real-time factor are
printed too, with the worker's CPU time per request (``worker_cpu_seconds``): on a machine whose cores are
busy with other work the wall-clock rate falls, the CPU cost per request does not.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import soundfile as sf

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORDS = ["river", "valley", "mountain", "light", "quickly", "stone", "bridge", "sea", "morning", "children", "walked", "over", "the", "garden", "window", "evening", "music", "story", "kitchen", "market", "letter", "train", "station", "yellow", "quiet"]


def serve(latency: float) -> tuple[ThreadingHTTPServer, dict]:
    counts = {"requests": 0}
    cache: dict[int, bytes] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            t0 = time.monotonic()
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            n_words = len(body["input"].split())
            with lock:
                counts["requests"] += 1
                if n_words not in cache:
                    buf = io.BytesIO()
                    pcm = (np.sin(np.arange(int(n_words * 0.3 * 16000)) / 16000 * 2 * np.pi * 220) * 8000)
                    sf.write(buf, pcm.astype(np.int16), 16000, format="WAV", subtype="PCM_16")
                    cache[n_words] = buf.getvalue()
                data = cache[n_words]
            time.sleep(max(0.0, latency - (time.monotonic() - t0)))
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.request_queue_size = 128
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, counts


def make_corpus(path: str, n_spans: int, seed: int = 0) -> None:
    """Documents of 40-80 words: about 2 word spans each at the default ratio 0.3 (5-15 words a span)."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(max(1, n_spans // 2)):
            sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 12))).capitalize() + "."
                         for _ in range(rng.randint(5, 8))]
            f.write(json.dumps({"id": f"bench-{i}", "lang": "en", "text": " ".join(sentences)}) + "\n")


def run(corpus: str, out: str, url: str, voices: str, concurrency: int) -> dict:
    cmd = [sys.executable, "-m", "megatron_inserter.data.synth.cli", "--input", corpus, "--output-dir", out,
           "--workers", "1", "--shard-size", "100000", "--no-progress", "--tts", "openai", "--tts-url", url,
           "--tts-model", "bench", "--tts-voices", voices, "--tts-concurrency", str(concurrency)]
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(os.path.join(out, "stats.json")) as f:
        return json.load(f)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=800, help="about this many spans (requests)")
    ap.add_argument("--latency", type=float, default=0.1, help="seconds the server takes per request")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--baseline-requests", type=int, default=60, help="spans of the concurrency-1 baseline")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()

    httpd, _counts = serve(args.latency)
    url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    work = args.workdir or tempfile.mkdtemp(prefix="bench_tts_server_")
    os.makedirs(work, exist_ok=True)
    voices = os.path.join(work, "voices.tsv")
    with open(voices, "w") as f:
        f.write("".join(f"voice{i}\ten\t{'female' if i % 2 else 'male'}\n" for i in range(50)))
    results = {}
    for name, concurrency, n in (("baseline", 1, args.baseline_requests), ("concurrent", args.concurrency,
                                                                           args.requests)):
        corpus = os.path.join(work, f"{name}.jsonl")
        make_corpus(corpus, n)
        stats = run(corpus, os.path.join(work, name), url, voices, concurrency)
        (_label, server), = stats["tts_servers"].items()
        rate = server["requests"] / stats["worker_seconds"]
        ceiling = concurrency / args.latency
        results[name] = {"concurrency": concurrency, "requests": server["requests"],
                         "worker_seconds": round(stats["worker_seconds"], 3), "requests_per_s": round(rate, 2),
                         "worker_cpu_ms_per_request": round(1000 * stats["worker_cpu_seconds"] / server["requests"], 2),
                         "ceiling_per_s": ceiling, "ratio_to_ceiling": round(rate / ceiling, 3),
                         "latency_p50_s": server["latency_p50_s"], "latency_p90_s": server["latency_p90_s"],
                         "latency_p99_s": server["latency_p99_s"], "real_time_factor": server["real_time_factor"],
                         "failed": server["failed"]}
    httpd.shutdown()
    c, b = results["concurrent"], results["baseline"]
    print(json.dumps(results, indent=2))
    print(f"1 worker, --tts-concurrency {c['concurrency']}, {args.latency * 1000:.0f} ms per request: "
          f"{c['requests_per_s']:.1f} requests/s = {c['ratio_to_ceiling']:.3f} of the {c['ceiling_per_s']:.0f}/s "
          f"ceiling (goal >= 0.90); concurrency 1 baseline {b['requests_per_s']:.2f}/s "
          f"({b['ratio_to_ceiling']:.3f} of {b['ceiling_per_s']:.0f}/s); speed-up "
          f"{c['requests_per_s'] / b['requests_per_s']:.1f}x; the worker spent {c['worker_cpu_ms_per_request']:.1f} ms "
          f"of CPU per request ({1000 / c['worker_cpu_ms_per_request']:.0f} requests per CPU-second)")
    return 0 if c["ratio_to_ceiling"] >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
