"""``inserter desta``: DeSTA2 alignment data made by the backbone LLM itself.

  inserter desta build  --shards DIR --output seeds.jsonl
  inserter desta answer --seeds seeds.jsonl --output conversations.jsonl --load CKPT
  inserter desta answer --seeds seeds.jsonl --output conversations.jsonl \\
        --chat-url http://host:8000/v1 --chat-model NAME [--chat-key-env OPENAI_API_KEY]

``build`` turns every speech segment of synthesized shards into a seed transcript with its attributes
(gender, accent, pitch, speaking speed, volume, noise, duration) and a wav clip; ``answer`` has the LLM
answer "What can you hear from the audio?" (or another prompt of the pool) about each seed and writes the
conversations that ``inserter preprocess --format conversation`` reads. Both resume where a killed run
stopped. This module imports only the standard library and the flag pattern, so ``--help`` is fast.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from megatron_inserter.errors import UsageError
from megatron_inserter.flags import arg, run_subcommands

PROG = "inserter desta"
GEN, CHAT = "generation", "chat endpoint"


@dataclass
class BuildFlags:
    shards: list = arg([], "synthesized shards (*.tar) or their folders (`inserter synth --output-dir`)",  # noqa: RUF009
                       required=True, metavar="PATH")
    output: str = arg(None, "the seeds file (jsonl: a header record, then one seed per speech segment)",
                      required=True, metavar="FILE")
    audio_dir: str | None = arg(None, "where the wav clips go (default: <output stem>_audio next to the output)",
                                metavar="DIR")
    limit: int = arg(0, "stop after this many speech segments (0: all)")
    workers: int = arg(1, "processes measuring the clips")
    progress: bool = arg(True, "progress bar on stderr")


@dataclass
class AnswerFlags:
    seeds: str = arg(None, "seeds file of `inserter desta build`", required=True, metavar="FILE")
    output: str = arg(None, "conversation jsonl (answers are logged next to it as <stem>.answers.jsonl)",
                      required=True, metavar="FILE")
    prompts: str | None = arg(None, "prompt pool, one prompt per line (default: 'What can you hear from the "
                              "audio?' and seven variants)", metavar="FILE")
    prompt_seed: int = arg(0, "which prompt each seed gets depends only on this and the seed id")
    system_prompt: str = arg("You are a helpful assistant.", "system turn of every request ('' = none)")
    limit: int = arg(0, "answer at most this many seeds (0: all)")
    progress: bool = arg(True, "progress bar on stderr")
    load: str | None = arg(None, "answer with this checkpoint, generating from text (the backbone LLM)",
                           metavar="DIR", group=GEN)
    prompt_template: str = arg("auto", "auto = chatml when the checkpoint's tokenizer has chat tokens",
                               choices=("auto", "plain", "chatml"), group=GEN)
    responder_arg: list = arg([], "extra keyword for the model's responder (repeatable)", repeat=True,  # noqa: RUF009
                              metavar="KEY=VALUE", group=GEN)
    batch_size: int = arg(8, "seeds per generation batch (--load)", group=GEN)
    temperature: float = arg(0.0, "sampling temperature; 0 = greedy", group=GEN)
    top_p: float = arg(1.0, "nucleus sampling mass", group=GEN)
    top_k: int = arg(0, "top-k sampling; 0 = off (--load only)", group=GEN)
    max_new_tokens: int = arg(512, "longest answer, in tokens", group=GEN)
    seed: int | None = arg(None, "seed of sampled decoding", group=GEN)
    chat_url: str | None = arg(None, "answer with an OpenAI-compatible server (its base URL, e.g. "
                               "http://host:8000/v1); redirects are not followed", metavar="URL", group=CHAT)
    chat_model: str | None = arg(None, "model name sent to the server", group=CHAT)
    chat_key_env: str | None = arg(None, "name of the environment variable holding the API key (sent as a bearer "
                                   "token, never logged)", metavar="NAME", group=CHAT)
    chat_timeout: float = arg(120.0, "deadline in seconds for one request, reply included", group=CHAT)
    chat_max_attempts: int = arg(4, "tries per seed before it counts as failed", group=CHAT)
    workers: int = arg(4, "concurrent requests to the server", group=CHAT)


def run_build(flags: BuildFlags) -> int:
    from megatron_inserter.desta.build import BuildConfig, build

    if flags.limit < 0 or flags.workers < 1:
        raise UsageError(f"--limit must be >= 0 and --workers >= 1, got {flags.limit} and {flags.workers}")
    result = build(BuildConfig(shards=list(flags.shards), output=Path(flags.output),
                               audio_dir=Path(flags.audio_dir) if flags.audio_dir else None, limit=flags.limit,
                               workers=flags.workers, progress=flags.progress))
    reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(result.skipped.items()))
    print(f"{PROG} build: {result.seeds} seeds in {flags.output} ({result.measured} measured now, {result.resumed} "
          f"from earlier runs, {sum(result.skipped.values())} segments skipped{': ' + reasons if reasons else ''})",
          file=sys.stderr)
    return 0 if result.seeds else 1


def _check_answer(flags: AnswerFlags) -> None:
    if (flags.load is None) == (flags.chat_url is None):
        raise UsageError("give either --load CKPT (our own model) or --chat-url URL --chat-model NAME")
    if flags.chat_url is not None and not flags.chat_model:
        raise UsageError("--chat-url needs --chat-model (the model name the server serves)")
    for name in ("batch_size", "workers", "chat_max_attempts", "max_new_tokens"):
        if getattr(flags, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(flags, name)}")
    if flags.limit < 0 or flags.chat_timeout <= 0:
        raise UsageError("--limit must be >= 0 and --chat-timeout > 0")
    if flags.chat_key_env is not None and not os.environ.get(flags.chat_key_env):
        raise UsageError(f"--chat-key-env {flags.chat_key_env}: that environment variable is not set")


def run_answer(flags: AnswerFlags) -> int:
    from megatron_inserter.desta.answer import AnswerConfig, answer
    from megatron_inserter.desta.prompts import load_pool
    from megatron_inserter.inference.requests import SamplingParams

    _check_answer(flags)
    config = AnswerConfig(
        seeds=Path(flags.seeds), output=Path(flags.output), prompts=load_pool(flags.prompts),
        prompt_seed=flags.prompt_seed, system_prompt=flags.system_prompt or None,
        sampling=SamplingParams(temperature=flags.temperature, top_p=flags.top_p, top_k=flags.top_k,
                                max_new_tokens=flags.max_new_tokens, seed=flags.seed),
        batch_size=flags.batch_size, workers=flags.workers, limit=flags.limit, progress=flags.progress)
    if flags.chat_url is not None:
        from megatron_inserter.desta.chat_client import ChatClient, ChatSettings

        backend = ChatClient(flags.chat_url, flags.chat_model,
                             os.environ.get(flags.chat_key_env) if flags.chat_key_env else None,
                             ChatSettings(timeout_s=flags.chat_timeout, max_attempts=flags.chat_max_attempts))
        backend_id = None
    else:
        from megatron_inserter.desta.seeds import read_seeds
        from megatron_inserter.eval.responder import load_responder, parse_responder_args

        read_seeds(config.seeds)  # a bad seeds file fails before the model is built
        backend = load_responder(flags.load, flags.prompt_template, f"{PROG} answer",
                                 **parse_responder_args(flags.responder_arg))
        backend_id = {"kind": "local", "load": str(Path(flags.load).resolve()), "template": flags.prompt_template}
    result = answer(config, backend, backend_id)
    return 0 if result.conversations or not result.failed else 1


COMMANDS = {
    "build": (BuildFlags, run_build, "synthesized shards -> DeSTA2 seed transcripts with measured attributes"),
    "answer": (AnswerFlags, run_answer, "the backbone LLM answers about each seed -> conversation jsonl"),
}


def main(argv: list[str] | None = None) -> int:
    return run_subcommands(PROG, COMMANDS, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
