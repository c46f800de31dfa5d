"""Offline fixtures for the conversation tests: a byte-level BPE Hugging Face tokenizer directory that knows the
chat and audio special tokens, 16 kHz WAV clips, and jsonl rows."""

from __future__ import annotations

import json
import os

import numpy as np
import soundfile as sf

CHAT_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_bos|>", "<|audio_eos|>", "<|AUDIO|>",
                 "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
TRAIN_TEXTS = [
    "You are a helpful assistant. What is the weather like today? It is sunny and warm.",
    "system user assistant: listen to the audio and answer the question in one sentence.",
    "Write down what is said. Continue the text. The quick brown fox jumps over the lazy dog.",
] * 20

# Qwen2-7B-Instruct's chat_template (tokenizer_config.json), verbatim.
QWEN2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# Meta-Llama-3-8B-Instruct's chat_template, verbatim.
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim "
    "+ '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def hf_tokenizer_dir(path, chat_template: str | None = None, bos_token: str | None = None, **config) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=CHAT_SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TRAIN_TEXTS, trainer)
    os.makedirs(path, exist_ok=True)
    tok.save(os.path.join(path, "tokenizer.json"))
    cfg = {"eos_token": "<|endoftext|>", "pad_token": None, **config}
    if bos_token is not None:
        cfg["bos_token"] = bos_token
    if chat_template is not None:
        cfg["chat_template"] = chat_template
    with open(os.path.join(path, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f)
    return str(path)


def tone(num_samples: int, freq: float = 220.0) -> np.ndarray:
    t = np.arange(num_samples) / 16000.0
    return np.round(0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16)


def write_wav(path, num_samples: int, freq: float = 220.0) -> np.ndarray:
    pcm = tone(num_samples, freq)
    sf.write(str(path), pcm, 16000, subtype="PCM_16")
    return pcm


def write_rows(path, rows: list, raw_lines: list[bytes] = ()) -> str:
    with open(path, "wb") as f:
        f.writelines((row if isinstance(row, bytes) else json.dumps(row).encode()) + b"\n" for row in rows)
        f.writelines(line + b"\n" for line in raw_lines)
    return str(path)


def conversation(i: int, audio: str | None = None, turns: int = 1) -> dict:
    """A conversation whose texts name its number (so a reply tells which conversation it came from)."""
    messages = [{"role": "system", "content": f"You are assistant {i}."}]
    for t in range(turns):
        user = f"Question {t} of conversation {i}: what is the weather?"
        content = [{"type": "audio", "audio": audio}, {"type": "text", "text": user}] if audio and t == 0 else user
        messages += [{"role": "user", "content": content},
                     {"role": "assistant", "content": f"Reply {t} of {i}: it is sunny and warm."}]
    return {"id": f"conv-{i}", "messages": messages}


def expected_pieces(tok, pieces) -> tuple[list[int], list[bool]]:
    """(tokens, is-assistant mask) of hand-written ``(text or ids, is_assistant)`` pieces, each tokenized alone."""
    ids, mask = [], []
    for text, target in pieces:
        t = tok.tokenize(text) if isinstance(text, str) else list(text)
        ids += t
        mask += [target] * len(t)
    return ids, mask
