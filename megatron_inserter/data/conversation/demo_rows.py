"""A few spoken conversations from synthesized shards, for the tiny stage-two recipes.

    python -m megatron_inserter.data.conversation.demo_rows --shards runs/tiny_cpu/shards \\
        --output runs/tiny_sft/conversations.jsonl --style sft --limit 200

Every speech span of the shards becomes one conversation whose user turn holds the span's audio (its FLAC
bytes copied next to the output, under ``<output stem>_audio/``, and named by a path relative to the output):

  sft    alternately "Write down what is said." -> the transcript, and the text before the span + the audio +
         "Continue the text." -> the text that follows the span (InSerter's spoken-instruction setting);
  desta  "What can you hear from the audio?" -> a description in DeSTA2's spirit built from what the shard
         records about the span (transcript, voice gender, speed and pitch controls, duration). At scale
         ``inserter desta build`` and ``inserter desta answer`` write such conversations with the backbone
         LLM's own answers.
"""

from __future__ import annotations

import json
import os
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass

from megatron_inserter.flags import arg, run_command

PROG = "python -m megatron_inserter.data.conversation.demo_rows"
SYSTEM = "You are a helpful assistant that listens and answers."
CONTEXT_CHARS = 160


@dataclass
class DemoRowsFlags:
    shards: str = arg(None, "directory of synthesized shards (*.tar)", required=True, metavar="DIR")
    output: str = arg(None, "conversation jsonl to write (audio goes to <stem>_audio/ next to it)", required=True,
                      metavar="PATH")
    style: str = arg("sft", "sft (transcribe / continue) or desta (describe what is heard)", choices=["sft", "desta"])
    limit: int = arg(0, "at most this many conversations (0: one per speech span)")


def _documents(shards: str) -> Iterator[tuple[object, dict[str, bytes]]]:
    from megatron_inserter.data.document import ShardRecordError, from_members, split_member_name

    for name in sorted(os.listdir(shards)):
        if not name.endswith(".tar"):
            continue
        key, members = None, {}
        with tarfile.open(os.path.join(shards, name), "r|*") as tar:
            groups = []
            for info in tar:
                if not info.isfile():
                    continue
                k, _ = split_member_name(info.name)
                if k != key and key is not None:
                    groups.append(members)
                    members = {}
                key = k
                members[info.name] = tar.extractfile(info).read()
            if members:
                groups.append(members)
        for group in groups:
            try:
                yield from_members(group, shard=name)
            except ShardRecordError:
                continue


def _bucket(value, low: str, high: str) -> str:
    if value is None or 0.93 <= value <= 1.07:
        return "normal"
    return low if value < 1.0 else high


def describe(seg) -> str:
    """DeSTA2-style description of one speech segment from its recorded fields."""
    voice = f"a {seg.gender} voice" if seg.gender else "a synthetic voice"
    speed = _bucket(seg.controls.speed, "slow", "fast")
    pitch = _bucket(seg.controls.pitch, "low", "high")
    return (f"I hear {voice} saying: \"{seg.text.strip()}\". It speaks at a {speed} speed with {pitch} pitch, "
            f"for about {max(1, round(seg.duration))} seconds.")


def rows(shards: str, out_dir: str, audio_dir: str, style: str, limit: int = 0) -> Iterator[dict]:
    n = 0
    for doc, audio in _documents(shards):
        for i, seg in enumerate(doc.segments):
            if not seg.is_speech or not seg.text.strip():
                continue
            name = f"{doc.key}.{seg.audio}"
            with open(os.path.join(audio_dir, name), "wb") as f:
                f.write(audio[seg.audio])
            clip = {"type": "audio", "audio": os.path.relpath(os.path.join(audio_dir, name), out_dir)}
            before = "".join(s.text for s in doc.segments[:i])[-CONTEXT_CHARS:].lstrip()
            after = "".join(s.text for s in doc.segments[i + 1:])[:CONTEXT_CHARS].strip()
            if style == "desta":
                user, answer = [clip, {"type": "text", "text": "What can you hear from the audio?"}], describe(seg)
            elif n % 2 == 0 or not after:
                user, answer = [clip, {"type": "text", "text": "Write down what is said."}], seg.text.strip()
            else:
                user = ([{"type": "text", "text": before}] if before else []) + [
                    clip, {"type": "text", "text": "\nContinue the text."}]
                answer = after
            yield {"id": f"{doc.id}-{i}", "messages": [{"role": "system", "content": SYSTEM},
                                                       {"role": "user", "content": user},
                                                       {"role": "assistant", "content": answer}]}
            n += 1
            if limit and n >= limit:
                return


def run(flags: DemoRowsFlags) -> int:
    from megatron_inserter.files import atomic_write

    out_dir = os.path.dirname(os.path.abspath(flags.output))
    audio_dir = os.path.splitext(os.path.abspath(flags.output))[0] + "_audio"
    os.makedirs(audio_dir, exist_ok=True)
    n = 0
    with atomic_write(flags.output, "w", encoding="utf-8") as f:
        for row in rows(flags.shards, out_dir, audio_dir, flags.style, flags.limit):
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    print(f"{flags.output}: {n} conversations ({flags.style})")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(PROG, DemoRowsFlags, run, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
