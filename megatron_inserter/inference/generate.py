"""Batched generation with a key-value cache from prompts that mix speech and text.

Prompts of different lengths are decoded in lockstep from the shortest prompt's end, as Megatron's static
text generation does: while a row is still inside its prompt its next token is forced from the prompt,
so no padding mask is needed and any attention backend works. The speech positions of every prompt are
filled once, up front, with the encoder+adapter frames (the same splice as in training); each decoding
step then feeds the LLM only the new positions, with megatron-core's static KV cache.

Runs at tensor/pipeline parallel size 1 (evaluation splits prompts across data-parallel ranks instead).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from megatron_inserter.inference.prompt import EncodedPrompt
from megatron_inserter.inference.sampling import next_tokens


@dataclass
class GenerationConfig:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None
    use_cache: bool = True


def pad_clips(clips: list[np.ndarray], device) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch-contract audio tensors for a list of clips (``[0, 0]`` when there is none)."""
    if not clips:
        return torch.zeros(0, 0, device=device), torch.zeros(0, dtype=torch.long, device=device)
    lengths = torch.tensor([len(c) for c in clips], dtype=torch.long)
    audio = torch.zeros(len(clips), int(lengths.max()))
    for i, c in enumerate(clips):
        audio[i, : len(c)] = torch.from_numpy(np.asarray(c, dtype=np.float32))
    return audio.to(device), lengths.to(device)


@torch.no_grad()
def generate(model, prompts: list[EncodedPrompt], cfg: GenerationConfig, stop_ids: set[int],
             pad_id: int = 0) -> list[list[int]]:
    """Generated token ids per prompt (without the prompt, without the stop token).

    ``model`` is an InserterModel at TP=PP=1: its GPTModel (``model.language_model``) embeds the text and
    ``model.splice_audio`` writes the encoder+adapter frames into the placeholder positions.
    """
    if not prompts:
        return []
    if any(len(p.ids) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    lm = model.language_model
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        b = len(prompts)
        lengths = torch.tensor([len(p.ids) for p in prompts])
        prompt_max, start = int(lengths.max()), int(lengths.min())
        total = prompt_max + cfg.max_new_tokens
        tokens = torch.full((b, total), pad_id, dtype=torch.long)
        for i, p in enumerate(prompts):
            tokens[i, : len(p.ids)] = torch.tensor(p.ids)
        tokens = tokens.to(device)
        audio, audio_lengths = pad_clips([c for p in prompts for c in p.clips], device)
        prompt_tokens = tokens[:, :prompt_max]
        prompt_emb = model.splice_audio(lm.embedding(input_ids=prompt_tokens, position_ids=None),
                                        prompt_tokens, audio, audio_lengths)  # [s, b, h]
        in_prompt = (torch.arange(total)[:, None] < lengths[None, :]).to(device)  # [total, b]

        generator = torch.Generator().manual_seed(cfg.seed) if cfg.seed is not None else None
        context = None
        if cfg.use_cache:
            from megatron.core.inference.contexts import StaticInferenceContext

            context = StaticInferenceContext(max_batch_size=b, max_sequence_length=total)
        done = torch.zeros(b, dtype=torch.bool)
        outputs: list[list[int]] = [[] for _ in range(b)]
        prev = 0
        for t in range(start, total):
            lo = prev if cfg.use_cache else 0
            emb = _embeddings(lm, tokens, prompt_emb, in_prompt, lo, t)
            positions = torch.arange(lo, t, device=device).unsqueeze(0).expand(b, -1)
            logits = lm(input_ids=None, position_ids=positions, attention_mask=None, decoder_input=emb,
                        inference_context=context, runtime_gather_output=True)
            last = logits[:, -1, :]
            chosen = next_tokens(last, cfg.temperature, cfg.top_k, cfg.top_p, generator)
            if context is not None:
                context.sequence_len_offset += t - lo
            prev = t
            forced = in_prompt[t]
            tokens[:, t] = torch.where(forced, tokens[:, t], chosen)
            for i in range(b):
                if forced[i] or done[i]:
                    continue
                tok = int(chosen[i])
                if tok in stop_ids:
                    done[i] = True
                else:
                    outputs[i].append(tok)
                    done[i] = len(outputs[i]) >= cfg.max_new_tokens
            if bool(done.all()):
                break
        return outputs
    finally:
        model.train(was_training)


def _embeddings(lm, tokens, prompt_emb, in_prompt, lo: int, hi: int) -> torch.Tensor:
    """Decoder input for positions [lo, hi): prompt embeddings inside prompts, word embeddings after."""
    words = lm.embedding(input_ids=tokens[:, lo:hi], position_ids=None)  # [s, b, h]
    p_hi = min(hi, prompt_emb.size(0))
    if lo >= p_hi:
        return words
    prompt_part = torch.cat([prompt_emb[lo:p_hi], words[p_hi - lo:]], dim=0)
    mask = in_prompt[lo:hi].unsqueeze(-1)  # [s, b, 1]
    return torch.where(mask, prompt_part, words)
