"""A conversation -> token sequences with a mode each, and the PCM of its audio parts.

    encoder = ConversationEncoder(tokenizer, build_template("chatml", tokenizer))
    enc = encoder.encode(conversation, [load_audio(a) for a in conversation.audio])
    enc.sequences, enc.modes, enc.audio      # as the indexed dataset stores them

The template's pieces are tokenized one by one (so no token straddles the assistant's boundary): assistant
text is ``MODE_TEXT`` (trained on), everything else ``MODE_CONTEXT`` (read, never a target). Each audio
part is a speech sequence ``<|audio_bos|> <|AUDIO|> <|audio_eos|>`` (``MODE_SPEECH``) whose placeholder the
training samples expand to ``frames.num_audio_frames`` positions, exactly as for shard speech. The
document starts with the tokenizer's BOS (unless the template already rendered it) and ends with the
end-of-document token (context), unless its last token already is that token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from megatron_inserter.data.conversation.messages import BadConversation, Conversation
from megatron_inserter.data.frames import FrameSpec, num_audio_frames
from megatron_inserter.data.indexed.metadata import MODE_CONTEXT, MODE_SPEECH, MODE_TEXT

_TEXT_ERRORS = (TypeError, RuntimeError, UnicodeError, ValueError)
DEFAULT_FRAMES = FrameSpec()  # the presets' layout: 25 placeholders per second of audio


@dataclass
class EncodedConversation:
    sequences: list[np.ndarray] = field(default_factory=list)  # int64 token ids
    modes: list[int] = field(default_factory=list)
    audio: list[np.ndarray] = field(default_factory=list)  # int16 PCM, one per speech sequence

    @property
    def num_tokens(self) -> int:
        return sum(len(s) for s in self.sequences)

    @property
    def num_target_tokens(self) -> int:
        return sum(len(s) for s, m in zip(self.sequences, self.modes) if m == MODE_TEXT)

    def expanded_length(self, spec: FrameSpec = DEFAULT_FRAMES) -> int:
        """Positions in a training sample: every placeholder expanded to its clip's frame count."""
        return self.num_tokens + sum(num_audio_frames(len(a), spec) - 1 for a in self.audio)

    def tokens(self) -> np.ndarray:
        return np.concatenate(self.sequences) if self.sequences else np.zeros(0, dtype=np.int64)

    def target_mask(self) -> np.ndarray:
        """Per stored token: True where it is the assistant's."""
        return np.concatenate([np.full(len(s), m == MODE_TEXT) for s, m in zip(self.sequences, self.modes)])


class ConversationEncoder:
    def __init__(self, tokenizer, template, add_bos: bool = True, frame_spec: FrameSpec = DEFAULT_FRAMES) -> None:
        self.tokenizer = tokenizer
        self.template = template
        self.frame_spec = frame_spec
        specials = getattr(tokenizer, "specials", None)
        names = specials.audio if specials is not None else ["<|audio_bos|>", "<|audio_eos|>", "<|AUDIO|>"]
        self.marker_names = list(names)
        bos_name, eos_name, placeholder_name = names
        self.marker = bos_name + placeholder_name + eos_name  # stands for an audio part in rendered text
        self._markers = np.array(tokenizer.audio_special_ids, dtype=np.int64)
        self.speech = np.array([tokenizer.audio_bos_id, tokenizer.audio_placeholder_id, tokenizer.audio_eos_id],
                               dtype=np.int64)
        self.bos = tokenizer.bos_id if add_bos else None

    def encode(self, conversation: Conversation, audio: list[np.ndarray]) -> EncodedConversation:
        if len(audio) != len(conversation.audio):
            raise ValueError(f"{len(audio)} clips for {len(conversation.audio)} audio parts")
        for i, m in enumerate(conversation.messages):
            if any(isinstance(p, str) and any(n in p for n in self.marker_names) for p in m.parts):
                raise BadConversation("audio_marker_in_text", f"message {i} ({m.role}) types an audio marker "
                                                              f"({', '.join(self.marker_names)}) as text")
        for clip, part in zip(audio, conversation.audio):
            if num_audio_frames(len(clip), self.frame_spec) == 0:
                raise BadConversation("audio_too_short", f"audio {part.path} is {len(clip)} samples: too short for "
                                                         f"one encoder frame")
        pieces = self.template.pieces([(m.role, m.text_with(self.marker)) for m in conversation.messages])
        chunks: list[tuple[str | None, int]] = []  # (text, mode); None text: a speech sequence
        for piece in pieces:
            for k, text in enumerate(piece.text.split(self.marker)):
                if k:
                    chunks.append((None, MODE_SPEECH))
                if text:
                    chunks.append((text, MODE_TEXT if piece.target else MODE_CONTEXT))
        speech = sum(1 for text, _ in chunks if text is None)
        if speech != len(audio):
            raise BadConversation("template_lost_audio", f"the chat template {getattr(self.template, 'name', '')!r} "
                                                         f"rendered {speech} of the {len(audio)} audio parts")
        ids = self._tokenize([text for text, _ in chunks if text is not None])
        out = EncodedConversation(audio=[np.ascontiguousarray(a, dtype=np.int16) for a in audio])
        it = iter(ids)
        for text, mode in chunks:
            seq = self.speech if text is None else next(it)
            if not len(seq):
                continue
            if mode != MODE_SPEECH and out.modes and out.modes[-1] == mode:
                out.sequences[-1] = np.concatenate([out.sequences[-1], seq])
            else:
                out.sequences.append(np.array(seq, dtype=np.int64))
                out.modes.append(mode)
        if not out.sequences:
            raise BadConversation("empty_document", "the conversation renders as nothing")
        if self.bos is not None and out.sequences[0][0] != self.bos:
            self._add(out, 0, [self.bos])
        eod = self.tokenizer.eod_id
        if out.sequences[-1][-1] != eod:
            self._add(out, len(out.sequences), [eod])
        return out

    @staticmethod
    def _add(out: EncodedConversation, at: int, ids: list[int]) -> None:
        """Context tokens at the start (``at`` 0) or the end of the document."""
        first = at == 0
        j = 0 if first else len(out.sequences) - 1
        if out.modes[j] == MODE_CONTEXT:
            seq = np.asarray(ids, dtype=np.int64)
            out.sequences[j] = np.concatenate([seq, out.sequences[j]] if first else [out.sequences[j], seq])
        else:
            out.sequences.insert(at, np.asarray(ids, dtype=np.int64))
            out.modes.insert(at, MODE_CONTEXT)

    def _tokenize(self, texts: list[str]) -> list[np.ndarray]:
        try:
            arrays = [np.asarray(a, dtype=np.int64) for a in self.tokenizer.tokenize_batch(texts)]
        except _TEXT_ERRORS as e:
            raise BadConversation("bad_text", f"the tokenizer cannot take its text ({e})") from None
        for a in arrays:
            if len(a) and np.isin(a, self._markers).any():
                raise BadConversation("audio_marker_in_text", "the chat template put an audio marker into the text")
        return arrays
