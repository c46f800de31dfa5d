import gzip
import json
import os
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[3] / "megatron_inserter" / "assets" / "demo_corpus.jsonl"

BAD_LINES = [
    b"",  # blank_line
    b"{not json",  # invalid_json
    b'{"text": "caf\xe9 cr\xe8me"}',  # invalid_utf8
    b'{"title": "no text"}',  # missing_text_key
    b'{"text": "Short one."}',  # too_short
    '{"text": "Это документ на русском языке, который нельзя озвучить."}'.encode(),  # unsupported_language
    b'{"text": "   "}',  # empty_text
]


def demo_records(n: int) -> list[dict]:
    with open(DEMO, encoding="utf-8") as f:
        return [json.loads(line) for line in f][:n]


def write_corpus(directory: Path, n_docs: int = 16, bad: bool = True) -> dict[str, str]:
    """A small English+Chinese corpus (two files, one gzipped) with every bad-line class mixed in.
    Returns {document id: text} of the good documents."""
    directory.mkdir(parents=True, exist_ok=True)
    records = demo_records(n_docs)
    half = len(records) // 2
    lines_a = [json.dumps(r, ensure_ascii=False).encode() for r in records[:half]]
    lines_b = [json.dumps({"text": r["text"]}, ensure_ascii=False).encode() for r in records[half:]]
    if bad:
        lines_a[2:2] = BAD_LINES
    (directory / "a.jsonl").write_bytes(b"\n".join(lines_a) + b"\n")
    with gzip.open(directory / "b.jsonl.gz", "wb") as f:
        f.write(b"\n".join(lines_b) + b"\n")
    texts = {r["id"]: r["text"] for r in records[:half]}
    texts.update({f"b.jsonl.gz:{i + 1}": r["text"] for i, r in enumerate(records[half:])})
    return texts


def synth_args(corpus: Path, out: Path, *extra: str) -> list[str]:
    return ["--input", str(corpus), "--output-dir", str(out), "--shard-size", "3", "--no-progress", *extra]


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {p: (out / p).read_bytes() for p in sorted(os.listdir(out)) if p.endswith(".tar")}


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory):
    """An uninterrupted two-worker run over the small corpus, shared by the tests that compare against it."""
    from megatron_inserter.data.synth.cli import main

    root = tmp_path_factory.mktemp("synth_reference")
    texts = write_corpus(root / "corpus")
    assert main(synth_args(root / "corpus", root / "out", "--workers", "2")) == 0
    return root / "corpus", root / "out", texts
