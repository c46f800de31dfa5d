"""The interface between evaluation and generation.

Every evaluation in this package asks a ``Responder`` for text. A request carries the audio (a file path or
a PCM array), an optional text prompt placed after the audio, an optional system prompt and its sampling
parameters. ``respond`` answers a batch of requests with one string per request, in order.

The model-backed responder lives in ``megatron_inserter.inference.model_responder`` and is built with
``build_responder(load_dir, template=..., **generation_kwargs)``; :func:`load_responder` imports it only
when a checkpoint is evaluated, so scoring-only runs never import the model stack.

The prompt template (``--prompt-template``): ``auto`` picks ``chatml`` when the checkpoint's tokenizer has
single tokens for ``<|im_start|>`` and ``<|im_end|>`` and ``plain`` otherwise (a SentencePiece tokenizer
trained by ``inserter train-tokenizer``), and says which on stderr; ``chatml`` with a tokenizer lacking
those tokens is refused before any model is built.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Protocol, runtime_checkable

from megatron_inserter.errors import InserterError, UsageError
from megatron_inserter.inference.requests import EvalRequest, SamplingParams  # noqa: F401 (re-exported)

RESPONDER_MODULE = "megatron_inserter.inference.model_responder"
TEMPLATE_CHOICES = ("auto", "plain", "chatml")
CHAT_TOKENS = "<|im_start|>/<|im_end|>"


@runtime_checkable
class Responder(Protocol):
    def respond(self, requests: list[EvalRequest]) -> list[str]:
        """One response string per request, in request order."""
        ...


class ResponderUnavailableError(InserterError, RuntimeError):
    """The generation backend cannot be imported or built."""

    exit_code = 2


def checkpoint_tokenizer(load_dir: str, tokenizer_model: str | None = None):
    """The tokenizer checkpoint ``load_dir`` was trained with (read from its arguments, or for a converted
    checkpoint the one copied next to it, as generation finds it; no model is built)."""
    from megatron_inserter.data.tokenizers import build_tokenizer
    from megatron_inserter.inference.loading import tokenizer_of, training_arguments

    return build_tokenizer(*tokenizer_of(load_dir, training_arguments(load_dir), tokenizer_model))


def choose_template(requested: str, tokenizer, source: str, prog: str = "inserter eval") -> str:
    """``plain`` or ``chatml`` for ``--prompt-template requested`` and the tokenizer of ``source``."""
    from megatron_inserter.inference.prompt import has_chat_tokens

    if requested not in TEMPLATE_CHOICES:
        raise UsageError(f"--prompt-template must be one of {', '.join(TEMPLATE_CHOICES)}, got {requested!r}")
    if requested == "plain":
        return "plain"
    chat = has_chat_tokens(tokenizer)
    if requested == "chatml" and not chat:
        raise UsageError(
            f"--prompt-template chatml needs single tokens for {CHAT_TOKENS}; the tokenizer of {source} has "
            "none: use --prompt-template plain (or auto)"
        )
    if requested == "auto":
        why = f"has {CHAT_TOKENS} tokens" if chat else f"has no single tokens for {CHAT_TOKENS}"
        template = "chatml" if chat else "plain"
        print(f"{prog}: prompt template {template}: the tokenizer of {source} {why} "
              "(--prompt-template chooses)", file=sys.stderr)
        return template
    return requested


def load_responder(load_dir: str, template: str = "auto", prog: str = "inserter eval",
                   **generation_kwargs: Any) -> Responder:
    """Build the model-backed responder for checkpoint ``load_dir`` with ``--prompt-template template``."""
    try:
        module = importlib.import_module(RESPONDER_MODULE)
    except ModuleNotFoundError as err:
        if err.name is not None and RESPONDER_MODULE.startswith(err.name):
            raise ResponderUnavailableError(
                f"cannot evaluate checkpoint {load_dir!r}: module {RESPONDER_MODULE} is not installed in "
                "this build, so there is no generation backend. Score existing responses with "
                "`inserter eval speechinstructbench --score-only ROWS.jsonl --output DIR`, or install a "
                "build that provides megatron_inserter.inference.model_responder.build_responder."
            ) from err
        raise
    build = getattr(module, "build_responder", None)
    if build is None:
        raise ResponderUnavailableError(
            f"{RESPONDER_MODULE} has no build_responder(load_dir, **generation_kwargs); cannot evaluate "
            f"checkpoint {load_dir!r}"
        )
    if "template" in generation_kwargs:
        raise UsageError("give the prompt template with --prompt-template, not --responder-arg template=...")
    if template != "plain":
        tokenizer = checkpoint_tokenizer(load_dir, generation_kwargs.get("tokenizer_model"))
        template = choose_template(template, tokenizer, load_dir, prog)
    responder = build(load_dir, template=template, **generation_kwargs)
    if not callable(getattr(responder, "respond", None)):
        raise ResponderUnavailableError(
            f"{RESPONDER_MODULE}.build_responder returned {type(responder).__name__}, which has no respond()"
        )
    return responder


def parse_responder_args(items: list[str] | None) -> dict[str, Any]:
    """``["tensor_model_parallel_size=2", "name=x"]`` -> kwargs; values are JSON when they parse as JSON."""
    import json

    kwargs: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--responder-arg expects KEY=VALUE, got {item!r}")
        try:
            kwargs[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key.replace("-", "_")] = value
    return kwargs
