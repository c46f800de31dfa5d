"""One conversation row, checked: its ``messages`` and the audio they point at.

    {"id": "c1", "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": [{"type": "audio", "audio": "clips/q1.wav"}, {"type": "text", "text": "Answer it."}]},
        {"role": "assistant", "content": "It is four o'clock."}]}

Roles are ``system``, ``user`` and ``assistant``; a content is a string or a list of parts
``{"type": "text", "text": STR}`` / ``{"type": "audio", "audio": PATH}``. A relative audio path is relative to
the folder of the jsonl file (an absolute one is used as is). Audio belongs to user turns (the model hears
it; it never speaks). A row needs at least one assistant turn with content, since nothing else is trained on.

A row that breaks these rules raises ``BadConversation`` with a short ``reason`` (the skip counter) and a
``what`` that names the message and the fix. Audio is read only when the row is encoded (``load_audio``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from megatron_inserter.data.text_inputs import has_lone_surrogate
from megatron_inserter.errors import DataError

ROLES = ("system", "user", "assistant")
MAX_MESSAGES = 512
MAX_AUDIO_BYTES = 256 << 20  # an audio file larger than this is not read (about 2 h of 16 kHz 16-bit WAV)


class BadConversation(DataError):
    """A conversation row that cannot be used; ``reason`` is the skip-counter name."""

    def __init__(self, reason: str, what: str):
        super().__init__(what)
        self.reason = reason
        self.what = what


@dataclass(frozen=True)
class AudioPart:
    path: str  # resolved against the jsonl file's folder


@dataclass(frozen=True)
class Message:
    role: str
    parts: tuple  # text strings and AudioParts, in order

    @property
    def audio(self) -> list[AudioPart]:
        return [p for p in self.parts if isinstance(p, AudioPart)]

    def text_with(self, marker: str) -> str:
        """The content as one string, each audio part replaced by ``marker``."""
        return "".join(marker if isinstance(p, AudioPart) else p for p in self.parts)


@dataclass(frozen=True)
class Conversation:
    id: str
    messages: tuple[Message, ...]

    @property
    def audio(self) -> list[AudioPart]:
        return [a for m in self.messages for a in m.audio]


def parse_conversation(record: dict, key: str = "messages", base_dir: str = ".", default_id: str = "") -> Conversation:
    """The conversation of one parsed jsonl object; raises ``BadConversation``."""
    if key not in record:
        raise BadConversation("missing_messages", f"no {key!r} field")
    raw = record[key]
    if not isinstance(raw, list) or not raw:
        raise BadConversation("bad_messages", f"{key!r} must be a non-empty list of messages, not "
                                              f"{_describe(raw)}")
    if len(raw) > MAX_MESSAGES:
        raise BadConversation("bad_messages", f"{len(raw)} messages (at most {MAX_MESSAGES}): split the conversation")
    messages = tuple(_message(m, i, base_dir) for i, m in enumerate(raw))
    assistant = [m for m in messages if m.role == "assistant"]
    if not assistant:
        raise BadConversation("no_assistant_turn", "no assistant message: nothing in it would be trained on")
    rid = record.get("id")
    return Conversation(rid if isinstance(rid, str) and rid else default_id, messages)


def _message(m, i: int, base_dir: str) -> Message:
    where = f"message {i}"
    if not isinstance(m, dict):
        raise BadConversation("bad_content", f"{where} is {_describe(m)}, not an object with role and content")
    role = m.get("role")
    if role not in ROLES:
        raise BadConversation("bad_role", f"{where} has role {role!r}; use one of {', '.join(ROLES)}")
    content = m.get("content")
    if isinstance(content, str):
        parts: list = [content]
    elif isinstance(content, list):
        parts = [_part(p, f"{where} part {j}", base_dir) for j, p in enumerate(content)]
    else:
        raise BadConversation("bad_content", f"{where} ({role}) content is {_describe(content)}; give a string or a "
                                             f"list of text/audio parts")
    texts = [p for p in parts if isinstance(p, str)]
    if any(has_lone_surrogate(t) for t in texts):
        raise BadConversation("lone_surrogate", f"{where} ({role}) holds a lone UTF-16 surrogate (\\ud800-\\udfff)")
    if role != "user" and any(isinstance(p, AudioPart) for p in parts):
        raise BadConversation("audio_outside_user_turn", f"{where} ({role}) holds audio; audio belongs to user turns")
    if role == "assistant" and not "".join(texts).strip():
        raise BadConversation("empty_assistant_turn", f"{where} (assistant) is empty")
    return Message(role, tuple(parts))


def _part(p, where: str, base_dir: str):
    if not isinstance(p, dict):
        raise BadConversation("bad_content", f"{where} is {_describe(p)}, not a {{\"type\": ...}} object")
    kind = p.get("type")
    if kind == "text":
        if not isinstance(p.get("text"), str):
            raise BadConversation("bad_content", f"{where}: a text part needs a string \"text\", not "
                                                 f"{_describe(p.get('text'))}")
        return p["text"]
    if kind == "audio":
        path = p.get("audio")
        if not isinstance(path, str) or not path or "\0" in path:
            raise BadConversation("bad_content", f"{where}: an audio part needs a file path in \"audio\", not "
                                                 f"{_describe(path)}")
        return AudioPart(path if os.path.isabs(path) else os.path.normpath(os.path.join(base_dir, path)))
    raise BadConversation("bad_content", f"{where} has type {kind!r}; use \"text\" or \"audio\"")


def load_audio(part: AudioPart):
    """The part's audio as 16 kHz mono int16 PCM (``audio_store.decode_audio``); raises ``BadConversation``."""
    from megatron_inserter.data.indexed.audio_store import AudioDecodeError, decode_audio

    try:
        size = os.path.getsize(part.path)
        if not os.path.isfile(part.path):
            raise BadConversation("bad_audio", f"audio {part.path} is not a file")
        if size > MAX_AUDIO_BYTES:
            raise BadConversation("audio_too_large", f"audio {part.path} is {size >> 20} MiB (at most "
                                                     f"{MAX_AUDIO_BYTES >> 20} MiB per file)")
        with open(part.path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise BadConversation("missing_audio", f"audio file {part.path} does not exist") from None
    except OSError as e:
        raise BadConversation("missing_audio", f"audio file {part.path} cannot be read ({e.strerror or e})") from None
    try:
        pcm = decode_audio(data)
    except AudioDecodeError as e:
        raise BadConversation(e.reason, f"audio {part.path} cannot be decoded ({e})") from None
    if pcm.size == 0:
        raise BadConversation("empty_audio", f"audio {part.path} holds no samples")
    return pcm


def _describe(value) -> str:
    if value is None:
        return "missing"
    return f"a {type(value).__name__}" if not isinstance(value, (str, int, float)) else repr(value)[:40]
