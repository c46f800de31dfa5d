"""Packing without cross-document attention, run in spawned gloo processes by test_documents.py.

A micro-batch of two packed samples (interleaved, ASR and text documents, each ending with EOD, and a cut-off
document at the end) goes through the model families the trainer uses, with the document layout on; each
document then goes through the same model alone. The per-token losses of a document must be the same.
"""

from __future__ import annotations

import torch

from megatron_inserter.data.frames import num_audio_frames
from megatron_inserter.models.config import EncoderConfig
from megatron_inserter.models.documents import DocumentOptions
from megatron_inserter.runtime import ParallelConfig, initialize_parallel
from megatron_inserter.training.engine import run_microbatches
from megatron_inserter.training.models import GPTFamily, InserterFamily
from tests.models.inserter_parallel import PLACEHOLDER, small_config

EOD = 0
SEQ = 48  # tokens per packed sample (the stream is SEQ + 1 long)

# A document: text runs (token counts) and clips (seconds), then EOD. Interleaved, ASR, text.
INTERLEAVED = [4, 0.2, 5]
ASR = [0.3, 6]
TEXT = [7]


def _config():
    return small_config(encoder=EncoderConfig(num_layers=2, hidden_size=32, num_attention_heads=4,
                                              ffn_hidden_size=64, num_mel_bins=80, input_mode="packed"))


def _document(g: torch.Generator, parts: list, spec, end: bool = True) -> dict:
    tokens, clips = [], []
    for part in parts:
        if isinstance(part, int):
            tokens += torch.randint(1, PLACEHOLDER - 1, (part,), generator=g).tolist()
        else:
            n = int(part * 16000) + int(torch.randint(0, 160, (1,), generator=g))
            clips.append(0.3 * torch.sin(2 * torch.pi * 220 * torch.arange(n) / 16000)
                         + 0.05 * torch.randn(n, generator=g))
            tokens += [PLACEHOLDER] * num_audio_frames(n, spec)
    return {"tokens": tokens + ([EOD] if end else []), "clips": clips}


def _samples(spec) -> list[list[dict]]:
    """Two packed samples of SEQ + 1 tokens: their documents, the last one cut off (no EOD)."""
    g = torch.Generator().manual_seed(21)
    out = []
    for order in ([INTERLEAVED, ASR, TEXT], [TEXT, ASR, INTERLEAVED]):
        docs = [_document(g, parts, spec) for parts in order]
        used = sum(len(d["tokens"]) for d in docs)
        assert used < SEQ, "the documents do not fit the sample"
        docs.append(_document(g, [SEQ + 1 - used], spec, end=False))
        out.append(docs)
    return out


def _batch(token_lists: list[list[int]], clips: list[torch.Tensor]) -> dict:
    x = torch.tensor(token_lists)
    audio = torch.zeros(len(clips), max((len(c) for c in clips), default=0))
    for i, c in enumerate(clips):
        audio[i, :len(c)] = c
    return {"tokens": x[:, :-1].contiguous(), "labels": x[:, 1:].contiguous(),
            "position_ids": torch.arange(x.shape[1] - 1).expand(x.shape[0], -1).contiguous(),
            "audio": audio, "audio_lengths": torch.tensor([len(c) for c in clips], dtype=torch.long)}


def _per_token_losses(family, chunks, batch: dict) -> torch.Tensor | None:
    """The model's per-token losses [b, s] on the last pipeline stage (None elsewhere), forward only."""
    from megatron.core import parallel_state as ps

    seen = []

    def forward_step(data_iterator, model):
        b = next(data_iterator)
        out = family.forward(model, b)

        def loss_func(per_token):
            seen.append(per_token.detach())
            return per_token.sum(), torch.tensor(per_token.numel()), {"lm loss": torch.stack(
                [per_token.sum().detach(), torch.tensor(float(per_token.numel()))])}

        return out, loss_func

    b, s = batch["tokens"].shape
    its = [iter([batch]) for _ in chunks]
    with torch.no_grad():
        run_microbatches(forward_step, its if len(chunks) > 1 else its[0], chunks, 1, s, b, forward_only=True)
    return seen[0] if ps.is_pipeline_last_stage(ignore_virtual=True) else None


def packed_vs_alone(family, chunks, samples: list[list[dict]]) -> dict | None:
    """Largest |packed - alone| per-token loss difference per document kind, and the loss scale."""
    packed = _per_token_losses(family, chunks, _batch(
        [[t for d in docs for t in d["tokens"]] for docs in samples],
        [c for docs in samples for d in docs for c in d["clips"]]))
    diffs: dict[str, float] = {}
    kinds = ["interleaved", "asr", "text"]
    for row, docs in enumerate(samples):
        start = 0
        names = kinds if row == 0 else ["text", "asr", "interleaved"]
        for name, doc in zip(names + ["cut-off"], docs):
            n = len(doc["tokens"]) - 1  # positions whose target lies inside the document
            alone = _per_token_losses(family, chunks, _batch([doc["tokens"]], doc["clips"]))
            if packed is not None:
                d = float((alone[0] - packed[row, start:start + n]).abs().max())
                diffs[name] = max(diffs.get(name, 0.0), d)
            start += n + 1
    if packed is None:
        return None
    return {"diffs": diffs, "scale": float(packed.abs().max()), "positions": int(packed.numel())}


def _no_reset(family, chunks, samples) -> float | None:
    """The largest difference with the layout off: attention crosses documents, so it must not be small."""
    family.documents = None
    result = packed_vs_alone(family, chunks, samples)
    return None if result is None else max(result["diffs"].values())


def run_layout(rank, world_size, parallel: dict, kind: str, thd: bool) -> dict | None:
    initialize_parallel(ParallelConfig(seed=4321, **parallel))
    cfg = _config()
    spec = cfg.frame_spec()
    samples = _samples(spec)
    options = DocumentOptions(EOD)
    if kind == "inserter":
        family = InserterFamily(cfg, documents=options)
    else:
        family = GPTFamily(cfg.llm, spec, documents=options, documents_as_thd=thd)
    overrides = {"tensor_model_parallel_size": parallel.get("tensor_model_parallel_size", 1),
                 "pipeline_model_parallel_size": parallel.get("pipeline_model_parallel_size", 1)}
    chunks = family.build_chunks(overrides, None)
    for c in chunks:
        c.eval()
        if kind == "inserter":
            c.documents_as_thd = thd
    result = packed_vs_alone(family, chunks, samples)
    if kind == "inserter" and not thd:
        crossing = _no_reset(family, chunks, samples)
        if result is not None:
            result["without_reset"] = crossing
    return result


# All in one two-process group (spawning is the slow part): TP1 runs as two data-parallel replicas.
LAYOUTS = {
    "tp1": {},
    "tp2": {"tensor_model_parallel_size": 2},
    "pp2": {"pipeline_model_parallel_size": 2},
}
CASES = [(kind, thd) for kind in ("inserter", "gpt") for thd in (False, True)]


def rotary_positions(rank, world_size) -> dict:
    """Inside ``rotary_at`` the rotary table is read at the given positions, [s, b, 1, dim]; outside it is not."""
    from megatron_inserter.models.documents import rotary_at

    initialize_parallel(ParallelConfig(seed=1))
    [chunk] = GPTFamily(_config().llm, _config().frame_spec()).build_chunks({}, None)
    rotary = chunk.rotary_pos_emb
    positions = torch.tensor([[0, 1, 2, 0, 1], [3, 0, 1, 2, 3]])
    table = rotary(8)  # [8, 1, 1, dim]
    with rotary_at(chunk, positions):
        at = rotary(5)
    return {"shape": tuple(at.shape), "equal": bool(torch.equal(at, table[:, 0][positions.t()])),
            "restored": bool(torch.equal(rotary(5), table[:5]))}


def suite(rank, world_size) -> dict:
    """{(layout, family kind, thd): result} on the ranks that hold the last pipeline stage."""
    out = {"rotary": rotary_positions(rank, world_size)}
    for name, parallel in LAYOUTS.items():
        for kind, thd in CASES:
            result = run_layout(rank, world_size, parallel, kind, thd)
            if result is not None:
                out[(name, kind, thd)] = result
    return out
