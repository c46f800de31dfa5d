"""The interface between evaluation and generation.

Every evaluation in this package asks a ``Responder`` for text. A request carries the audio (a file path or
a PCM array), an optional text prompt placed after the audio, an optional system prompt and its sampling
parameters. ``respond`` answers a batch of requests with one string per request, in order.

The model-backed responder lives in ``megatron_inserter.inference.responder`` and is built with
``build_responder(load_dir, **generation_kwargs)``; :func:`load_responder` imports it only when a
checkpoint is evaluated, so scoring-only runs never import the model stack.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol, runtime_checkable

from megatron_inserter.inference.requests import EvalRequest, SamplingParams  # noqa: F401 (re-exported)

RESPONDER_MODULE = "megatron_inserter.inference.responder"


@runtime_checkable
class Responder(Protocol):
    def respond(self, requests: list[EvalRequest]) -> list[str]:
        """One response string per request, in request order."""
        ...


class ResponderUnavailableError(RuntimeError):
    """The generation backend cannot be imported or built."""


def load_responder(load_dir: str, **generation_kwargs: Any) -> Responder:
    """Build the model-backed responder for checkpoint ``load_dir``."""
    try:
        module = importlib.import_module(RESPONDER_MODULE)
    except ModuleNotFoundError as err:
        if err.name is not None and RESPONDER_MODULE.startswith(err.name):
            raise ResponderUnavailableError(
                f"cannot evaluate checkpoint {load_dir!r}: module {RESPONDER_MODULE} is not installed in "
                "this build, so there is no generation backend. Score existing responses with "
                "`inserter eval speechinstructbench --score-only ROWS.jsonl --output DIR`, or install a "
                "build that provides megatron_inserter.inference.responder.build_responder."
            ) from err
        raise
    build = getattr(module, "build_responder", None)
    if build is None:
        raise ResponderUnavailableError(
            f"{RESPONDER_MODULE} has no build_responder(load_dir, **generation_kwargs); cannot evaluate "
            f"checkpoint {load_dir!r}"
        )
    responder = build(load_dir, **generation_kwargs)
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
            raise ValueError(f"--responder-arg expects KEY=VALUE, got {item!r}")
        try:
            kwargs[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key.replace("-", "_")] = value
    return kwargs
