"""Chat templates that say which rendered text belongs to the assistant.

    template = build_template("chatml", tokenizer)      # or "llama3", "tokenizer", "auto"
    pieces = template.pieces([("user", "Hi"), ("assistant", "Hello!")])
    # [Piece("<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n<|im_start|>user\\nHi<|im_end|>\\n"
    #        "<|im_start|>assistant\\n", target=False), Piece("Hello!<|im_end|>", target=True), Piece("\\n", False)]

A target piece is an assistant message's content and its end-of-turn marker: what the model learns to say,
including when to stop. Everything else (system and user turns, role headers, the newline after a turn,
default system prompts) is context.

  chatml     Qwen2's template: ``<|im_start|>ROLE\\nCONTENT<|im_end|>\\n``, with Qwen2's default system
             turn ("You are a helpful assistant.") when the conversation has none.
  llama3     Llama 3 Instruct's: ``<|start_header_id|>ROLE<|end_header_id|>\\n\\nCONTENT<|eot_id|>``, content
             stripped; the tokenizer's BOS starts the document.
  tokenizer  the ``chat_template`` of a local Hugging Face tokenizer directory (tokenizer_config.json,
             chat_template.jinja or chat_template.json), rendered with jinja2 in a sandbox as transformers
             does. Its assistant pieces are found by rendering growing prefixes of the conversation: the text
             an assistant message adds after the generation prompt, up to its last non-space character, is
             the target (the content and the end-of-turn marker); what the template puts before the content
             and the whitespace after the marker are context. A template that renders earlier turns
             differently once later turns follow cannot be split this way: such rows are refused.
  auto       ``tokenizer`` when the tokenizer has a chat template, else ``chatml``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

from megatron_inserter.data.conversation.messages import BadConversation
from megatron_inserter.errors import UsageError

TEMPLATES = ("auto", "tokenizer", "chatml", "llama3")


@dataclass(frozen=True)
class Piece:
    text: str
    target: bool  # the assistant's own tokens: trained on


def merge(pieces: list[Piece]) -> list[Piece]:
    """Adjacent pieces of the same kind joined; empty ones dropped."""
    out: list[Piece] = []
    for p in pieces:
        if not p.text:
            continue
        if out and out[-1].target == p.target:
            out[-1] = Piece(out[-1].text + p.text, p.target)
        else:
            out.append(p)
    return out


class ChatML:
    name = "chatml"
    default_system = "You are a helpful assistant."

    def pieces(self, messages: Sequence[tuple[str, str]]) -> list[Piece]:
        out = []
        if messages and messages[0][0] != "system":
            out.append(Piece(f"<|im_start|>system\n{self.default_system}<|im_end|>\n", False))
        for role, content in messages:
            if role == "assistant":
                out += [Piece("<|im_start|>assistant\n", False), Piece(content + "<|im_end|>", True), Piece("\n", False)]
            else:
                out.append(Piece(f"<|im_start|>{role}\n{content}<|im_end|>\n", False))
        return merge(out)


class Llama3:
    name = "llama3"

    def pieces(self, messages: Sequence[tuple[str, str]]) -> list[Piece]:
        out = []
        for role, content in messages:
            out.append(Piece(f"<|start_header_id|>{role}<|end_header_id|>\n\n", False))
            out.append(Piece(content.strip() + "<|eot_id|>", role == "assistant"))
        return merge(out)


class JinjaChatTemplate:
    """A Hugging Face ``chat_template`` (see the module docstring)."""

    name = "tokenizer"

    def __init__(self, source: str, variables: dict | None = None, origin: str = "chat_template"):
        import jinja2
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise jinja2.TemplateError(message)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        env.filters["tojson"] = lambda x, indent=None, ensure_ascii=False, sort_keys=False: json.dumps(
            x, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys)
        env.globals["raise_exception"] = raise_exception
        try:
            self._template = env.from_string(source)
        except jinja2.TemplateError as e:
            raise UsageError(f"{origin}: the chat template does not parse ({e}); fix it or pass --chat-template "
                             f"chatml or llama3") from None
        self.source = source
        self.variables = dict(variables or {})
        self.origin = origin

    def render(self, messages: Sequence[tuple[str, str]], add_generation_prompt: bool = False) -> str:
        import jinja2

        try:
            return self._template.render(messages=[{"role": r, "content": c} for r, c in messages],
                                         add_generation_prompt=add_generation_prompt, **self.variables)
        except (jinja2.TemplateError, TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
            raise BadConversation("template_error", f"the chat template of {self.origin} refused the "
                                                    f"conversation: {e}") from None

    def pieces(self, messages: Sequence[tuple[str, str]]) -> list[Piece]:
        full = self.render(messages)
        out, done = [], 0
        for i, (role, content) in enumerate(messages):
            if role != "assistant":
                continue
            after = self.render(messages[: i + 1])
            start = self._turn_start(messages[:i], after)
            if start is None or not full.startswith(after) or start < done:
                raise BadConversation(
                    "template_not_incremental",
                    f"the chat template of {self.origin} renders earlier turns differently once later turns "
                    f"follow, so the assistant's tokens of message {i} cannot be told apart; pass --chat-template "
                    f"chatml or llama3")
            turn = after[start:]
            j = turn.find(content)  # as given, else as the template may have trimmed it
            if j < 0:
                j = turn.find(content.strip())
            t0 = start + max(j, 0)
            t1 = len(after.rstrip())
            if t1 <= t0:  # the template dropped the content: nothing of this turn to learn from
                raise BadConversation("template_error", f"the chat template of {self.origin} renders assistant "
                                                        f"message {i} as nothing")
            out += [Piece(full[done:t0], False), Piece(full[t0:t1], True)]
            done = t1
        out.append(Piece(full[done:], False))
        return merge(out)

    def _turn_start(self, before: Sequence[tuple[str, str]], after: str) -> int | None:
        """Where the assistant turn begins in ``after``: past the generation prompt when the template has one."""
        for prompt in (True, False):
            head = self.render(before, add_generation_prompt=prompt)
            if after.startswith(head):
                return len(head)
        return None


def _token_text(value) -> str | None:
    if isinstance(value, dict):  # {"content": "<|endoftext|>", ...} in older configs
        value = value.get("content")
    return value if isinstance(value, str) else None


def find_chat_template(directory: str) -> tuple[str, str] | None:
    """``(template source, where it was found)`` of a Hugging Face tokenizer directory, or None."""
    config_path = os.path.join(directory, "tokenizer_config.json")
    config = _read_json(config_path)
    source = config.get("chat_template")
    if isinstance(source, list):  # named templates: the default one
        named = {t.get("name"): t.get("template") for t in source if isinstance(t, dict)}
        source = named.get("default")
    if isinstance(source, str) and source.strip():
        return source, config_path
    jinja_path = os.path.join(directory, "chat_template.jinja")
    if os.path.isfile(jinja_path):
        with open(jinja_path, encoding="utf-8") as f:
            return f.read(), jinja_path
    json_path = os.path.join(directory, "chat_template.json")
    source = _read_json(json_path).get("chat_template")
    if isinstance(source, str) and source.strip():
        return source, json_path
    return None


def _read_json(path: str) -> dict:
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise UsageError(f"cannot read {path}: {e}") from None
    return data if isinstance(data, dict) else {}


def tokenizer_template(tokenizer) -> JinjaChatTemplate | None:
    """The tokenizer's own chat template (Hugging Face tokenizers only), or None when it has none."""
    if getattr(tokenizer, "tokenizer_type", None) != "huggingface":
        return None
    directory = str(tokenizer.tokenizer_model)
    found = find_chat_template(directory)
    if found is None:
        return None
    source, origin = found
    config = _read_json(os.path.join(directory, "tokenizer_config.json"))
    variables = {k: _token_text(config.get(k)) for k in ("bos_token", "eos_token", "pad_token", "unk_token")}
    return JinjaChatTemplate(source, {k: v for k, v in variables.items() if v is not None}, origin)


def build_template(name: str, tokenizer):
    """The chat template ``name`` (one of ``TEMPLATES``) for ``tokenizer``."""
    if name == "chatml":
        return ChatML()
    if name == "llama3":
        return Llama3()
    if name not in ("tokenizer", "auto"):
        raise UsageError(f"--chat-template {name}: choose one of {', '.join(TEMPLATES)}")
    own = tokenizer_template(tokenizer)
    if own is not None:
        return own
    if name == "auto":
        return ChatML()
    raise UsageError(f"--chat-template tokenizer: {tokenizer.tokenizer_model} has no chat_template (a Hugging Face "
                     f"tokenizer directory with one in tokenizer_config.json or chat_template.jinja is needed); pass "
                     f"--chat-template chatml or llama3")


def template_identity(template) -> str:
    """What the rendered data depends on: a built-in's name, or a digest of a tokenizer's template source."""
    source = getattr(template, "source", None)
    if source is None:
        return template.name
    import hashlib

    text = source + json.dumps(template.variables, sort_keys=True)
    return f"{template.name}:{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:16]}"
