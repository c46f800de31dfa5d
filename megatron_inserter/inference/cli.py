"""``inserter generate``: answer one speech+text prompt, or every row of a jsonl, from a checkpoint.

    inserter generate --load runs/demo/train --audio question.wav --prompt "The speaker said"
    inserter generate --load runs/demo/train --input-jsonl prompts.jsonl --output-jsonl answers.jsonl

With --input-jsonl, a row that cannot be answered (not JSON, missing or unreadable audio, a prompt the
model cannot take) is skipped and reported on stderr with its file:line and reason; every other row is
answered and written to --output-jsonl, which appears complete or not at all. The exit status is 0 when
at least one row was answered, 1 when none could be (and nothing is written).
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from dataclasses import dataclass

from megatron_inserter.errors import DataError, InserterError, UsageError
from megatron_inserter.flags import arg, run_command

PROG = "inserter generate"
_SHOWN_SKIPS = 100  # skipped rows reported one by one; the rest are counted


@dataclass
class GenerateFlags:
    load: str = arg(None, "checkpoint directory (the --save of `inserter train`, or one iter_XXXXXXX in it)",
                    required=True, metavar="DIR")
    audio: str = arg(None, "audio file (any rate; resampled to 16 kHz mono)", metavar="PATH")
    prompt: str = arg("", "text placed after the audio")
    system_prompt: str = arg(None, "system prompt of the chatml template (a row's 'system' wins)")
    input_jsonl: str = arg(None, "rows with 'audio' (a path, as given or relative to the jsonl's folder) and/or "
                                 "'prompt', optionally 'system'; answers go to --output-jsonl. Bad rows are "
                                 "skipped and reported; exit status 1 only when no row could be answered",
                           metavar="PATH")
    output_jsonl: str = arg(None, "where the answered rows are written, each with its 'response'", metavar="PATH")
    prompt_template: str = arg("plain", "prompt layout: plain (pre-training) or chatml (chat turns)",
                               choices=["plain", "chatml"])
    tokenizer_model: str = arg(None, "override the tokenizer path stored in the checkpoint", metavar="PATH")
    max_new_tokens: int = arg(64, "tokens generated per answer at most")
    temperature: float = arg(0.0, "sampling temperature; 0 = greedy")
    top_p: float = arg(1.0, "nucleus sampling threshold")
    top_k: int = arg(0, "sample from the k most likely tokens; 0 = all")
    seed: int = arg(None, "seed of sampled decoding")
    micro_batch_size: int = arg(8, "prompts generated together")


def check_flags(flags: GenerateFlags) -> None:
    """Flag problems found before any model is loaded."""
    if flags.input_jsonl:
        if flags.audio or flags.prompt:
            raise UsageError("--input-jsonl takes its prompts from the file: drop --audio/--prompt "
                             "(or drop --input-jsonl to answer one prompt)")
        if not flags.output_jsonl:
            raise UsageError("--input-jsonl needs --output-jsonl (where the answers go)")
    elif not (flags.audio or flags.prompt):
        raise UsageError("give --audio and/or --prompt, or --input-jsonl")
    ranges = (("--max-new-tokens", flags.max_new_tokens >= 1, ">= 1"),
              ("--micro-batch-size", flags.micro_batch_size >= 1, ">= 1"),
              ("--temperature", flags.temperature >= 0, ">= 0"), ("--top-p", 0 < flags.top_p <= 1, "in (0, 1]"),
              ("--top-k", flags.top_k >= 0, ">= 0"))
    for name, ok, expected in ranges:
        if not ok:
            raise UsageError(f"{name} must be {expected}")
    if not os.path.isdir(flags.load):
        raise UsageError(f"--load {flags.load!r} is not a directory; give the --save directory of an "
                         f"`inserter train` run (or one of its iter_XXXXXXX directories)")
    if flags.tokenizer_model and not os.path.exists(flags.tokenizer_model):
        raise UsageError(f"--tokenizer-model {flags.tokenizer_model!r} does not exist")
    if flags.audio and not os.path.isfile(flags.audio):
        raise UsageError(f"--audio {flags.audio!r} does not exist")
    if flags.input_jsonl and not os.path.isfile(flags.input_jsonl):
        raise UsageError(f"--input-jsonl {flags.input_jsonl!r} does not exist")


def read_audio_checked(path: str):
    """16 kHz mono float32 samples of ``path``, or a ``DataError`` saying why the file cannot be used."""
    import numpy as np

    from megatron_inserter.inference.model_responder import read_audio

    try:
        audio = read_audio(path)
    except (OSError, RuntimeError, ValueError, EOFError) as e:
        raise DataError(f"cannot read audio {path!r}: {' '.join(str(e).split())}") from e
    if audio.size == 0:
        raise DataError(f"audio {path!r} holds no samples")
    if not np.isfinite(audio).all():
        raise DataError(f"audio {path!r} has NaN or infinite samples")
    return audio


def load_responder(flags: GenerateFlags):
    """The model-backed responder; a checkpoint that cannot be loaded is one ``DataError`` naming --load."""
    from megatron_inserter.inference.model_responder import build_responder
    from megatron_inserter.training.load_checks import check_load

    check_load(flags.load)  # every shard there and whole, before a model is built
    try:
        return build_responder(flags.load, template=flags.prompt_template, batch_size=flags.micro_batch_size,
                               tokenizer_model=flags.tokenizer_model)
    except InserterError:
        raise
    except (OSError, RuntimeError, ValueError, KeyError, EOFError, pickle.UnpicklingError) as e:
        detail = " ".join(str(e).split()) or type(e).__name__
        raise DataError(f"--load {flags.load}: cannot load the checkpoint: {detail} (give the --save directory of "
                        f"an `inserter train --model-type inserter` run; --tokenizer-model if its tokenizer "
                        f"moved)") from e


def _sampling(flags: GenerateFlags):
    from megatron_inserter.inference.requests import SamplingParams

    return SamplingParams(temperature=flags.temperature, top_p=flags.top_p, top_k=flags.top_k,
                          max_new_tokens=flags.max_new_tokens, seed=flags.seed)


def answer_each(responder, requests: list) -> list:
    """Answers in order; where a batch fails, its requests are retried one by one and a failing one's
    entry is the exception instead of the text."""
    try:
        return list(responder.respond(requests))
    except (InserterError, ValueError, RuntimeError) as e:
        if len(requests) == 1:
            return [e]
    return [answer_each(responder, [r])[0] for r in requests]


def run_single(flags: GenerateFlags) -> int:
    from megatron_inserter.inference.requests import EvalRequest

    audio = read_audio_checked(flags.audio) if flags.audio else None
    responder = load_responder(flags)
    request = EvalRequest(text_prompt=flags.prompt, audio=audio, system_prompt=flags.system_prompt,
                          sampling=_sampling(flags))
    (answer,) = answer_each(responder, [request])
    if isinstance(answer, BaseException):
        what = f"--audio {flags.audio!r} with --prompt" if flags.audio else "--prompt"
        raise DataError(f"cannot answer {what}: {' '.join(str(answer).split())}") from answer
    print(answer)
    return 0


class _SkipReport:
    def __init__(self):
        self.skips: list = []

    def add(self, skip) -> None:
        self.skips.append(skip)
        if len(self.skips) <= _SHOWN_SKIPS:
            print(f"{PROG}: skipped {skip.where}: {skip.reason}", file=sys.stderr, flush=True)


def run_jsonl(flags: GenerateFlags) -> int:
    from megatron_inserter.files import atomic_write
    from megatron_inserter.inference.requests import EvalRequest
    from megatron_inserter.inference.rows import Skip, read_rows, skip_counts

    rows, bad = read_rows(flags.input_jsonl, flags.system_prompt)
    report = _SkipReport()
    for skip in bad:
        report.add(skip)
    total = len(rows) + len(bad)
    if not rows:
        why = f" ({skip_counts(report.skips)})" if report.skips else ""
        raise DataError(f"--input-jsonl {flags.input_jsonl}: no row can be answered{why}; nothing written")
    responder = load_responder(flags)
    sampling = _sampling(flags)
    answered = 0
    with atomic_write(flags.output_jsonl, "w") as out:
        for start in range(0, len(rows), flags.micro_batch_size):
            ready = []
            for row in rows[start:start + flags.micro_batch_size]:
                try:
                    audio = read_audio_checked(row.audio_path) if row.audio_path else None
                except DataError as e:
                    report.add(Skip(row.where, str(e), "unreadable audio"))
                    continue
                ready.append((row, EvalRequest(text_prompt=row.prompt, audio=audio, system_prompt=row.system,
                                               sampling=sampling, request_id=row.where)))
            for (row, _), answer in zip(ready, answer_each(responder, [r for _, r in ready])):
                if isinstance(answer, BaseException):
                    report.add(Skip(row.where, f"cannot answer: {' '.join(str(answer).split())}", "not answerable"))
                    continue
                out.write(json.dumps({**row.data, "response": answer}, ensure_ascii=False) + "\n")
                answered += 1
        if not answered:
            raise DataError(f"--input-jsonl {flags.input_jsonl}: none of its {total} rows could be answered "
                            f"({skip_counts(report.skips)}); nothing written")
    hidden = len(report.skips) - _SHOWN_SKIPS
    skipped = f"; skipped {len(report.skips)} ({skip_counts(report.skips)})" if report.skips else ""
    more = f", {hidden} of them not listed above" if hidden > 0 else ""
    print(f"{PROG}: answered {answered} of {total} rows -> {flags.output_jsonl}{skipped}{more}", file=sys.stderr)
    return 0


def run(flags: GenerateFlags) -> int:
    check_flags(flags)
    return run_jsonl(flags) if flags.input_jsonl else run_single(flags)


def main(argv: list[str] | None = None) -> int:
    return run_command(PROG, GenerateFlags, run, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
