"""Tiny interleaved corpora for the tests: webdataset shards (JSON + 16 kHz FLAC) per the shard contract,
jsonl text, and a SentencePiece tokenizer trained on them."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random

import numpy as np
import soundfile as sf

WORDS_EN = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "speech", "models", "learn", "to", "listen", "and", "read", "interleaved", "text", "with", "synthesized", "audio", "spans"]
WORDS_ZH = list("语音模型学习理解文本和合成音频的交错数据")


def pcm(num_samples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / 16000.0
    wave = 0.3 * np.sin(2 * np.pi * (200 + seed % 300) * t) + 0.05 * rng.standard_normal(num_samples)
    return np.clip(np.round(wave * 32767), -32768, 32767).astype(np.int16)


def flac_bytes(samples: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, 16000, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def make_documents(n_docs: int, seed: int = 0, max_speech_seconds: float = 2.0) -> list[dict]:
    """Documents as dicts: id, lang, segments (text / speech with "pcm" int16 arrays)."""
    rng = random.Random(seed)
    docs = []
    for d in range(n_docs):
        lang = "zh" if d % 4 == 3 else "en"
        words = WORDS_ZH if lang == "zh" else WORDS_EN
        sep = "" if lang == "zh" else " "
        segments = []
        for s in range(rng.randint(1, 6)):
            text = sep.join(rng.choice(words) for _ in range(rng.randint(3, 30))) + sep
            if s % 2 == 1 or (s == 0 and rng.random() < 0.2):
                n = rng.randint(800, int(max_speech_seconds * 16000))
                segments.append({"type": "speech", "text": text, "pcm": pcm(n, seed * 100003 + d * 31 + s)})
            else:
                segments.append({"type": "text", "text": text})
        docs.append({"id": f"doc-{seed}-{d}", "lang": lang, "segments": segments})
    return docs


def write_shards(docs: list[dict], out_dir: str, docs_per_shard: int = 8, name: str = "tiny") -> list[str]:
    import webdataset as wds

    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for i in range(0, len(docs), docs_per_shard):
        path = os.path.join(out_dir, f"{name}-00000-{i // docs_per_shard:06d}.tar")
        with wds.TarWriter(path, mtime=0) as w:
            for doc in docs[i:i + docs_per_shard]:
                w.write(shard_sample(doc))
        paths.append(path)
    return paths


def shard_sample(doc: dict) -> dict:
    key = hashlib.sha1(doc["id"].encode()).hexdigest()[:16]
    sample = {"__key__": key}
    segments, n_audio = [], 0
    for seg in doc["segments"]:
        if seg["type"] == "speech":
            name = f"{n_audio}.flac"
            sample[name] = flac_bytes(seg["pcm"])
            segments.append({"type": "speech", "text": seg["text"], "speaker": "spk0",
                             "duration": len(seg["pcm"]) / 16000, "sample_rate": 16000,
                             "num_samples": len(seg["pcm"]), "audio": name})
            n_audio += 1
        else:
            segments.append({"type": "text", "text": seg["text"]})
    sample["json"] = json.dumps({"id": doc["id"], "lang": doc["lang"], "source": "test", "segments": segments},
                                ensure_ascii=False).encode()
    return sample


def write_jsonl(docs: list[dict], path: str) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": "".join(s["text"] for s in doc["segments"])}, ensure_ascii=False) + "\n" for doc in docs)
    return path


def train_tokenizer(docs: list[dict], path: str, vocab_size: int = 400) -> str:
    from megatron_inserter.data.tokenizers import train_sentencepiece

    return train_sentencepiece(("".join(s["text"] for s in d["segments"]) for d in docs), path, vocab_size)
