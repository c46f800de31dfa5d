"""``inserter desta answer``: the backbone LLM describes each seed; its answers become training conversations.

For every seed the LLM is given, as one user turn in its chat template, the seed transcript followed by a
prompt from the pool (``desta.prompts``), and answers in text. The backend is either our own checkpoint
generating from a text-only prompt (``--load``; an ``eval.responder.Responder``) or an OpenAI-compatible
chat endpoint (``--chat-url``; :class:`~megatron_inserter.desta.chat_client.ChatClient`).

Answers are appended (fsynced) to ``<output stem>.answers.jsonl`` next to the output as they come, keyed
by seed id and a fingerprint of everything the answer depends on (model or checkpoint, system prompt, user
text, sampling; not the server's address): a rerun asks only for seeds without an answer to the same
question, so a killed run resumes and a changed seed or model is answered again. Failed requests are
logged, counted, reported on stderr and retried by the next run. The output is then written atomically,
one conversation per answered seed in seed order::

    {"id": SEED_ID, "messages": [
        {"role": "user", "content": [{"type": "audio", "audio": "seeds_audio/ab/ID.wav"}, {"type": "text",
                                                                                     "text": PROMPT}]},
        {"role": "assistant", "content": ANSWER}], "seed": SEED_TRANSCRIPT}

Audio paths are relative to the output's folder, as ``inserter preprocess --format conversation`` reads
them (the folder holding the conversations and the seeds' audio can move as a whole).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from megatron_inserter.desta.prompts import DEFAULT_POOL, DEFAULT_SYSTEM_PROMPT, choose_prompt, user_text
from megatron_inserter.desta.seeds import read_seeds
from megatron_inserter.errors import DataError
from megatron_inserter.eval.answers import PendingItem, answer_missing, is_answered
from megatron_inserter.eval.records import RecordLog, dumps
from megatron_inserter.eval.skips import Skips, printable
from megatron_inserter.files import atomic_write
from megatron_inserter.inference.requests import EvalRequest, SamplingParams

PROG = "inserter desta answer"
MAX_REPORTED = 20
MAX_SHOWN = 10  # skipped seeds listed on stderr


@dataclass
class AnswerConfig:
    seeds: Path
    output: Path
    prompts: tuple[str, ...] = DEFAULT_POOL
    prompt_seed: int = 0
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT  # None or "": no system turn
    sampling: SamplingParams = field(default_factory=lambda: SamplingParams(max_new_tokens=512))
    batch_size: int = 8  # requests per respond() call of a local model
    workers: int = 4  # concurrent requests to a chat endpoint
    limit: int = 0  # answer at most this many seeds (0: all)
    progress: bool = True


@dataclass
class AnswerResult:
    conversations: int = 0
    generated: int = 0
    reused: int = 0
    failed: int = 0
    empty: int = 0
    errors: list[str] = field(default_factory=list)
    skips: Skips = field(default_factory=Skips)


def log_path(output: Path) -> Path:
    return output.parent / f"{output.name.split('.')[0] or 'conversations'}.answers.jsonl"


def _describe(backend, given: dict | None) -> dict:
    if given is not None:
        return given
    if hasattr(backend, "describe"):  # the model, not where it is served: a moved server keeps its answers
        return {k: v for k, v in backend.describe().items() if k != "endpoint"}
    return {"kind": "local", "name": type(backend).__name__}


def fingerprint(backend: dict, system: str | None, text: str, sampling: SamplingParams) -> str:
    setup = json.dumps([backend, system, text, sampling.temperature, sampling.top_p, sampling.top_k,
                        sampling.max_new_tokens, sampling.seed], sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(setup.encode("utf-8")).hexdigest()[:24]


def _messages(system: str | None, text: str) -> list[dict]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]


def _ask_chat(client, items: list[PendingItem], log: RecordLog, config: AnswerConfig, result: AnswerResult,
              bar) -> None:
    from megatron_inserter.desta.chat_client import ChatFailed

    def ask(item: PendingItem) -> str:
        return client.complete(_messages(config.system_prompt, item.request.text_prompt), config.sampling)

    def record(item: PendingItem, answer: str | None, error: str | None) -> None:
        if error is None:
            log.append({"uid": item.uid, **item.extra, "response": answer})
            result.generated += 1
        else:
            log.append({"uid": item.uid, **item.extra, "error": error})
            _failed(result, item, error)
        if bar is not None:
            bar.update(1)

    window = max(1, config.workers) * 4
    with ThreadPoolExecutor(max_workers=max(1, config.workers)) as pool:
        for start in range(0, len(items), window):
            futures = {pool.submit(ask, it): it for it in items[start:start + window]}
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            fatal = next((f.exception() for f in done if f.exception() is not None
                          and not isinstance(f.exception(), ChatFailed)), None)
            if fatal is not None:  # a configuration error: keep what is answered, ask nothing more
                for future in pending:
                    future.cancel()
            for future, item in futures.items():
                if future.cancelled():
                    continue
                try:
                    record(item, future.result(), None)
                except ChatFailed as err:
                    record(item, None, str(err))
                except Exception as err:  # noqa: BLE001 - raised below, after the answers are logged
                    fatal = fatal or err
            if fatal is not None:
                raise fatal


def _failed(result: AnswerResult, item: PendingItem, error: str) -> None:
    result.failed += 1
    if len(result.errors) < MAX_REPORTED:
        result.errors.append(f"{item.extra['seed_id']}: {printable(error)}")


def answer(config: AnswerConfig, backend, backend_id: dict | None = None) -> AnswerResult:
    """Answer every seed of ``config.seeds`` that has no answer yet, then write the conversations.
    ``backend``: a ``ChatClient`` or a ``Responder``; ``backend_id`` names it in the answers' fingerprints
    (default: its ``describe()``)."""
    seeds = read_seeds(config.seeds)
    result = AnswerResult()
    for where, reason in seeds.bad:
        result.skips.add("input", where, reason)
    rows = []
    for row in seeds.rows:
        if not Path(row["audio"]).is_file():
            result.skips.add("input", f"{config.seeds}:{row['line']}", f"audio file {row['audio']} not found")
        else:
            rows.append(row)
    if config.limit:
        rows = rows[: config.limit]
    if not rows:
        raise DataError(f"{config.seeds}: no usable seeds ({len(result.skips)} skipped)")
    described = _describe(backend, backend_id)
    items = []
    for row in rows:
        prompt = choose_prompt(config.prompts, row["id"], config.prompt_seed)
        text = user_text(row["seed"], prompt)
        fp = fingerprint(described, config.system_prompt, text, config.sampling)
        request = EvalRequest(text_prompt=text, system_prompt=config.system_prompt or None,
                              sampling=config.sampling, request_id=row["id"])
        items.append(PendingItem(f"{row['id']}#{fp}", request, {"seed_id": row["id"], "prompt": prompt}))
    with RecordLog(log_path(Path(config.output))) as log:
        todo = [it for it in items if not is_answered(log.get(it.uid))]
        result.reused = len(items) - len(todo)
        if hasattr(backend, "complete"):
            bar = _progress(len(todo)) if config.progress and todo else None
            try:
                _ask_chat(backend, todo, log, config, result, bar)
            finally:
                if bar is not None:
                    bar.close()
        elif todo:
            stats = answer_missing(todo, backend, log, config.batch_size, config.progress, desc="answer")
            result.generated, result.failed = stats.generated, stats.failed
            result.errors = [printable(e) for e in stats.errors]
        records = {it.uid: log.get(it.uid) for it in items}
    conversations = []
    for row, item in zip(rows, items):
        if not is_answered(records[item.uid]):
            continue
        answer_text = records[item.uid]["response"]
        if not answer_text.strip():
            result.empty += 1
            result.skips.add("generation", row["id"], "the LLM answered with nothing")
            continue
        conversations.append(conversation(row, item.extra["prompt"], answer_text.strip(),
                                          Path(config.output).parent))
    with atomic_write(config.output, "w") as f:
        for conv in conversations:
            f.write(dumps(conv) + "\n")
    result.conversations = len(conversations)
    report(result, len(items), config)
    return result


def conversation(row: dict, prompt: str, answer_text: str, folder: Path) -> dict:
    audio = os.path.relpath(Path(row["audio"]).resolve(), folder.resolve())
    return {"id": row["id"], "messages": [
        {"role": "user", "content": [{"type": "audio", "audio": audio}, {"type": "text", "text": prompt}]},
        {"role": "assistant", "content": answer_text}], "seed": row["seed"]}


def report(result: AnswerResult, asked: int, config: AnswerConfig) -> None:
    """The summary, the first failures and the first seeds left out, on stderr."""
    print(f"{PROG}: {result.conversations} conversations in {config.output} ({result.generated} answered now, "
          f"{result.reused} from earlier runs, {result.failed} failed, {result.empty} empty)", file=sys.stderr)
    if result.failed:
        print(f"{PROG}: {result.failed} of {asked} seeds failed; run the same command again to retry them. First:",
              file=sys.stderr)
        for line in result.errors[:5]:
            print(f"  {line}", file=sys.stderr)
    if len(result.skips):
        stages = ", ".join(f"{stage} {n}" for stage, n in result.skips.by_stage().items())
        print(f"{PROG}: {len(result.skips)} seeds left out ({stages}); seed: reason", file=sys.stderr)
        for skip in list(result.skips)[:MAX_SHOWN]:
            print(f"  [{skip.stage}] {skip.row}: {skip.reason}", file=sys.stderr)
        if len(result.skips) > MAX_SHOWN:
            print(f"  ... and {len(result.skips) - MAX_SHOWN} more", file=sys.stderr)


def _progress(total: int):
    from tqdm import tqdm

    return tqdm(total=total, desc="answer", file=sys.stderr, dynamic_ncols=True)
