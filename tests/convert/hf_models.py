"""Tiny random Hugging Face models saved as local directories (offline, float32).

Norm weights and biases are randomised too (transformers initialises them to 1 and 0), so a converter that
swapped or dropped one would change the logits.
"""

from __future__ import annotations

import json
import os

import torch

AUDIO_TOKEN = 150
VOCAB = 200


def _randomise(model, seed: int):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def _text_config(**extra) -> dict:
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=VOCAB, **extra)


def qwen2(path: str, **extra):
    """Qwen2 with QKV bias and grouped-query attention (4 heads, 2 KV heads), untied."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(1)
    model = _randomise(Qwen2ForCausalLM(Qwen2Config(**_text_config(rope_theta=1_000_000.0, **extra))), 1)
    model.save_pretrained(path)
    return model


def llama3(path: str, **save_kwargs):
    """Llama 3.1 shapes (no biases, GQA, rope theta 500000, "llama3" rope scaling)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(2)
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}
    model = _randomise(LlamaForCausalLM(LlamaConfig(**_text_config(rope_theta=500_000.0, bos_token_id=1,
                                                                   eos_token_id=2, rope_scaling=scaling))), 2)
    model.save_pretrained(path, **save_kwargs)
    return model


def qwen2_audio(path: str):
    from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration

    torch.manual_seed(3)
    config = Qwen2AudioConfig(
        audio_config={"d_model": 32, "encoder_layers": 2, "encoder_attention_heads": 4, "encoder_ffn_dim": 64,
                      "num_mel_bins": 80},
        text_config={"model_type": "qwen2", "rope_theta": 1_000_000.0, **_text_config()},
        audio_token_index=AUDIO_TOKEN)
    model = _randomise(Qwen2AudioForConditionalGeneration(config), 3)
    model.save_pretrained(path)
    return model


def whisper(path: str):
    """WhisperForConditionalGeneration (encoder and decoder; conversion keeps the encoder)."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(4)
    config = WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=64,
                           decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=64, num_mel_bins=80,
                           vocab_size=100, max_target_positions=32, pad_token_id=0, bos_token_id=1,
                           eos_token_id=2, decoder_start_token_id=3)
    model = _randomise(WhisperForConditionalGeneration(config), 4)
    model.save_pretrained(path)
    return model


def add_tokenizer(path: str, size: int = 20) -> None:
    """A word-level tokenizer.json (``<|endoftext|>`` = 0) of ``size`` entries, as a Qwen-style directory."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<|endoftext|>": 0, **{f"w{i}": i for i in range(1, size)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(os.path.join(path, "tokenizer.json"))
    with open(os.path.join(path, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"eos_token": "<|endoftext|>"}, f)


def speech_batch(seed: int = 5):
    """Two clips (1.0 s and 2.4 s; multiples of the 10 ms hop, so Qwen2-Audio's frame count and
    ``frames.num_audio_frames`` agree) and token rows with their placeholder runs."""
    from megatron_inserter.data.frames import num_audio_frames

    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([16000, 38400])
    audio = torch.zeros(2, int(lengths.max()))
    for i, n in enumerate(lengths.tolist()):
        audio[i, :n] = 0.1 * torch.randn(n, generator=g)
    seq = 72
    rows = []
    for n in lengths.tolist():
        frames = num_audio_frames(n)
        text = torch.randint(0, AUDIO_TOKEN, (seq - frames,), generator=g)
        rows.append(torch.cat([text[:4], torch.full((frames,), AUDIO_TOKEN), text[4:]]))
    return {"tokens": torch.stack(rows), "audio": audio, "audio_lengths": lengths}


def qwen2_audio_logits(model, batch: dict, audio_scale: float = 1.0) -> torch.Tensor:
    """Hugging Face logits with Whisper features of every clip padded to 30 s (Qwen2-Audio's processor)."""
    from transformers import WhisperFeatureExtractor

    clips = [(audio_scale * batch["audio"][i, :n]).numpy() for i, n in enumerate(batch["audio_lengths"].tolist())]
    feats = WhisperFeatureExtractor(feature_size=80)(clips, sampling_rate=16000, return_attention_mask=True,
                                                     padding="max_length", return_tensors="pt")
    tokens = batch["tokens"]
    with torch.no_grad():
        return model(input_ids=tokens, input_features=feats.input_features,
                     feature_attention_mask=feats.attention_mask, attention_mask=torch.ones_like(tokens)).logits
