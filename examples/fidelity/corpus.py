"""The experiment's text: an English prose corpus cut into documents, a held-out split, and the probe's
instruction documents.

Corpora:

* ``kjv``: the King James Version of the Bible (public domain), as Debian's ``bible-kjv`` package ships it
  (``apt-get install bible-kjv``; read through its ``bible`` program). 823k words; chapters are cut into
  documents of whole verses, about ``doc_words`` words each.
* ``demo``: the English documents of the package's demo corpus (62 short documents): a stand-in for
  smoke runs on machines without the Debian package.
* a path to a jsonl file with a ``text`` field per line (your own corpus).

A document is held out (never trained on, never seen by the tokenizer) when its position in the corpus is a
multiple of ``heldout_every``: held-out documents come from every part of the corpus.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources

from megatron_inserter.errors import DataError, UsageError

KJV_RANGE = "Gen1:1-Rev22:21"
_CHAPTER = re.compile(r"^(\S.*?)\s+(\d+)\s*$")
_VERSE = re.compile(r"^\s+(\d+)\s+(.*\S)\s*$")


@dataclass(frozen=True)
class Document:
    id: str
    text: str

    def record(self) -> dict:
        return {"id": self.id, "lang": "en", "text": self.text}


def kjv_chapters(program: str | None = None) -> list[tuple[str, list[str]]]:
    """[(chapter title, verses)] of the whole KJV, in canonical order."""
    program = program or shutil.which("bible")
    if program is None:
        raise UsageError("--corpus kjv needs Debian's bible-kjv package (apt-get install bible-kjv); "
                         "or use --corpus demo or --corpus FILE.jsonl")
    out = subprocess.run([program, "-l0", KJV_RANGE], capture_output=True, text=True, check=False)
    if out.returncode != 0 or not out.stdout.strip():
        raise DataError(f"{program} -l0 {KJV_RANGE} failed (exit {out.returncode}): {out.stderr.strip()[:200]}")
    chapters: list[tuple[str, list[str]]] = []
    for line in out.stdout.splitlines():
        if not line.strip():
            continue
        verse = _VERSE.match(line)
        if verse and chapters:
            chapters[-1][1].append(verse.group(2))
            continue
        head = _CHAPTER.match(line)
        if head:
            chapters.append((f"{head.group(1)} {head.group(2)}", []))
    if len(chapters) < 1000:
        raise DataError(f"{program} printed {len(chapters)} chapters; the KJV has 1189")
    return chapters


def chunk_verses(title: str, verses: list[str], doc_words: int) -> list[Document]:
    """Whole verses into documents of about ``doc_words`` words (the last one may be shorter)."""
    key = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    docs, current, words = [], [], 0
    for verse in verses:
        current.append(verse)
        words += len(verse.split())
        if words >= doc_words:
            docs.append(Document(f"kjv-{key}-{len(docs)}", " ".join(current)))
            current, words = [], 0
    if current and (words >= doc_words // 3 or not docs):
        docs.append(Document(f"kjv-{key}-{len(docs)}", " ".join(current)))
    return docs


def demo_documents() -> list[Document]:
    src = resources.files("megatron_inserter") / "assets" / "demo_corpus.jsonl"
    docs = []
    for line in src.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            if row.get("lang") == "en":
                docs.append(Document(str(row["id"]), row["text"]))
    return docs


def jsonl_documents(path: str) -> list[Document]:
    docs = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                text = row["text"]
            except (ValueError, KeyError, TypeError):
                raise DataError(f"{path}:{n}: not a json object with a 'text' field; fix or remove the line") from None
            docs.append(Document(str(row.get("id", f"doc-{n}")), str(text)))
    return docs


def load_documents(corpus: str, doc_words: int, max_docs: int | None) -> list[Document]:
    if corpus == "kjv":
        docs = [d for title, verses in kjv_chapters() for d in chunk_verses(title, verses, doc_words)]
    elif corpus == "demo":
        docs = demo_documents()
    elif os.path.isfile(corpus):
        docs = jsonl_documents(corpus)
    else:
        raise UsageError(f"--corpus {corpus!r} is neither kjv, demo nor a jsonl file")
    if max_docs is not None and len(docs) > max_docs:  # an even spread over the whole corpus
        step = len(docs) / max_docs
        docs = [docs[int(i * step)] for i in range(max_docs)]
    return docs


def split_heldout(docs: list[Document], heldout_every: int) -> tuple[list[Document], list[Document]]:
    train = [d for i, d in enumerate(docs) if i % heldout_every]
    heldout = [d for i, d in enumerate(docs) if not i % heldout_every]
    return train, heldout


def write_jsonl(path: str, docs: list[Document]) -> str:
    from megatron_inserter.files import write_text_atomic

    write_text_atomic(path, "".join(json.dumps(d.record(), ensure_ascii=False) + "\n" for d in docs))
    return path
