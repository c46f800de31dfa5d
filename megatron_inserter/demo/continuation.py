"""The demo's last check: speak a sentence to the trained model and let it continue in text.

The prompt is a document of the synthesized corpus up to and including one of its speech spans (the text
before it as tokens, the span as audio); the model greedily continues after ``<|audio_eos|>``, which is
exactly the position InSerter's pre-training teaches it to predict from speech. The text that really
follows in the document is shown next to the continuation.
"""

from __future__ import annotations

import glob
import os
from collections import Counter


def find_spoken_prompt(shards_dir: str, min_following_chars: int = 20):
    """(text before, the span's transcript, its int16 audio, the text after) of the first document with a
    speech span followed by some text."""
    from megatron_inserter.data.indexed.sources import read_shard

    skipped: Counter = Counter()
    for path in sorted(glob.glob(os.path.join(shards_dir, "*.tar"))):
        for doc in read_shard(path, skipped):
            for i, seg in enumerate(doc.segments[:-1]):
                after = doc.segments[i + 1]
                if seg.is_speech and not after.is_speech and len(after.text.strip()) >= min_following_chars:
                    before = "".join(s.text for s in doc.segments[:i])
                    return before, seg.text, seg.audio, after.text
    raise ValueError(f"no document in {shards_dir} has a speech span followed by text")


def spoken_prompt_continuation(load_dir: str, shards_dir: str, max_new_tokens: int) -> dict:
    from megatron_inserter.data.indexed.audio_store import int16_to_float
    from megatron_inserter.inference.generate import GenerationConfig, generate
    from megatron_inserter.inference.loading import load_for_inference
    from megatron_inserter.inference.prompt import EncodedPrompt, audio_tokens, document_start, stop_ids

    before, spoken, audio, after = find_spoken_prompt(shards_dir)
    loaded = load_for_inference(load_dir, initialize=True)
    tok = loaded.tokenizer
    speech = audio_tokens(tok, int16_to_float(audio), loaded.config.frame_spec())
    prompt = EncodedPrompt(document_start(tok) + tok.tokenize(before) + speech.ids, speech.clips)
    (ids,) = generate(loaded.model, [prompt], GenerationConfig(max_new_tokens=max_new_tokens, temperature=0.0),
                      stop_ids(tok, "plain"), pad_id=tok.pad_id)
    generated = tok.detokenize(ids)
    expected = tok.detokenize(tok.tokenize(after)[:max_new_tokens])
    return {"text_before_speech": before[-200:], "spoken_span": spoken, "speech_seconds": round(len(audio) / 16000, 2),
            "expected_continuation": expected, "greedy_continuation": generated, "new_tokens": len(ids)}
