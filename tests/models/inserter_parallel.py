"""Shared pieces of the InSerter model tests: a small model trained on fixed speech+text batches under any
TP/PP/VPP/SP/DP layout, starting from weights loaded out of one dist checkpoint made at TP1."""

from __future__ import annotations

import torch

from megatron_inserter.data.frames import num_audio_frames
from megatron_inserter.models.config import AdapterConfig, EncoderConfig, InserterModelConfig
from megatron_inserter.models.llm import LLMConfig
from megatron_inserter.runtime import ParallelConfig, initialize_parallel
from tests.runtime.gpt_parallel import load_checkpoint, save_checkpoint, sharded_state

PLACEHOLDER = 99  # counting tokens run over 0..98, so the placeholder never appears as text
SEQ, MBS, GBS = 32, 2, 8
SPEECH_SAMPLES = GBS // 2  # samples 0..3 of a global batch carry speech, 4..7 are text only


def small_config(**fields) -> InserterModelConfig:
    cfg = InserterModelConfig(
        name="test-small",
        encoder=EncoderConfig(num_layers=2, hidden_size=32, num_attention_heads=4, ffn_hidden_size=64,
                              num_mel_bins=80),
        adapter=AdapterConfig(kind="pool-linear", downsample=2),
        llm=LLMConfig(num_layers=4, hidden_size=32, ffn_hidden_size=64, num_attention_heads=4,
                      num_query_groups=2, vocab_size=100, max_position_embeddings=64, rotary_base=10000.0),
        audio_placeholder_id=PLACEHOLDER,
    )
    return cfg.replace(**fields)


def qformer_config(**fields) -> InserterModelConfig:
    """``small_config`` with a Q-Former adapter reading the encoder's input and first layer (so the second layer
    and the final LayerNorm run without feeding anything) with 4 queries per clip."""
    adapter = AdapterConfig(kind="qformer", queries=4, encoder_layers=[1, 0], qformer_layers=2)
    return small_config(adapter=adapter, **fields)


def make_sample(g: torch.Generator, spec, clips_seconds: list[float]) -> dict:
    """One sample: a counting sequence with each clip's placeholder run at a random free position."""
    start = int(torch.randint(0, PLACEHOLDER, (1,), generator=g))
    tokens = (start + torch.arange(SEQ + 1)) % PLACEHOLDER
    clips, cursor = [], 1
    for seconds in clips_seconds:
        n = int(seconds * 16000) + int(torch.randint(0, 160, (1,), generator=g))
        frames = num_audio_frames(n, spec)
        pos = cursor + int(torch.randint(0, 3, (1,), generator=g))
        tokens[pos:pos + frames] = PLACEHOLDER
        cursor = pos + frames + 1
        t = torch.arange(n) / 16000
        pitch = 150 + 300 * float(torch.rand(1, generator=g))
        clips.append(0.3 * torch.sin(2 * torch.pi * pitch * t) + 0.05 * torch.randn(n, generator=g))
    assert cursor <= SEQ, "clips do not fit the sequence"
    return {"tokens": tokens, "clips": clips}


def collate(samples: list[dict]) -> dict:
    tokens = torch.stack([s["tokens"][:-1] for s in samples])
    labels = torch.stack([s["tokens"][1:] for s in samples])
    clips = [c for s in samples for c in s["clips"]]
    width = max((len(c) for c in clips), default=0)
    audio = torch.zeros(len(clips), width)
    for i, c in enumerate(clips):
        audio[i, :len(c)] = c
    return {
        "tokens": tokens,
        "labels": labels,
        "loss_mask": (labels != PLACEHOLDER).float(),
        "position_ids": torch.arange(SEQ).unsqueeze(0).expand_as(tokens).contiguous(),
        "audio": audio,
        "audio_lengths": torch.tensor([len(c) for c in clips], dtype=torch.long),
    }


def global_batches(num_steps: int, speech: bool = True, seed: int = 11,
                   cfg: InserterModelConfig | None = None) -> list[list[dict]]:
    """Per step, the global batch's samples (collated later per microbatch), with placeholders for ``cfg``."""
    spec = (cfg or small_config()).frame_spec()
    g = torch.Generator().manual_seed(seed)
    steps = []
    for _ in range(num_steps):
        samples = []
        for i in range(GBS):
            if speech and i < SPEECH_SAMPLES:
                clips = [0.3] if i % 2 else [0.2, 0.25]  # 2 clips in one row, 1 in the other
            else:
                clips = []
            samples.append(make_sample(g, spec, clips))
        steps.append(samples)
    return steps


def microbatches_for_rank(samples: list[dict], dp_rank: int, dp_size: int) -> list[dict]:
    local = samples[dp_rank * len(samples) // dp_size:(dp_rank + 1) * len(samples) // dp_size]
    return [collate(local[i:i + MBS]) for i in range(0, len(local), MBS)]


def forward_step(data_iterator, model):
    batch = next(data_iterator)
    out = model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"], audio=batch["audio"],
                audio_lengths=batch["audio_lengths"])
    return out, _loss_func(batch["loss_mask"])


def gpt_forward_step(data_iterator, model):
    batch = next(data_iterator)
    out = model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"])
    return out, _loss_func(batch["loss_mask"])


def _loss_func(mask):
    def loss_func(per_token):
        total = (per_token.float() * mask).sum()
        count = mask.sum()
        return total, count.int(), {"lm loss": torch.stack([total.detach(), count])}

    return loss_func


def train_layout(ckpt_dir, cfg=None, steps=3, speech=True, sp=False, overlap_grad_reduce=False,
                 plain_gpt=False):
    """Load the checkpoint into the current layout, run ``steps`` Adam steps, return the per-step losses."""
    from megatron.core import parallel_state as ps
    from megatron.core.distributed import DistributedDataParallelConfig
    from megatron.core.optimizer import OptimizerConfig

    from megatron_inserter.models.builder import build_model_chunks
    from megatron_inserter.training.engine import (
        build_optimizer,
        configure_model_config,
        train_step,
        wrap_ddp,
    )

    cfg = cfg or small_config()
    chunks = build_model_chunks(cfg, sequence_parallel=sp)
    load_checkpoint(chunks, ckpt_dir)
    step_fn = forward_step
    if plain_gpt:  # the same LLM weights in a bare GPTModel
        chunks = [c.language_model for c in chunks]
        step_fn = gpt_forward_step
    chunks = wrap_ddp(chunks, DistributedDataParallelConfig(grad_reduce_in_fp32=True,
                                                            overlap_grad_reduce=overlap_grad_reduce))
    configure_model_config(chunks, ddp=True)
    optimizer = build_optimizer(chunks, OptimizerConfig(optimizer="adam", lr=1e-2, clip_grad=1.0,
                                                        weight_decay=0.01, bf16=False, fp16=False))
    dp_rank, dp_size = ps.get_data_parallel_rank(), ps.get_data_parallel_world_size()
    n_micro = GBS // MBS // dp_size
    vp = ps.get_virtual_pipeline_model_parallel_world_size()
    losses = []
    for samples in global_batches(steps, speech=speech, cfg=cfg):
        mbs = microbatches_for_rank(samples, dp_rank, dp_size)
        its = [iter(list(mbs)) for _ in chunks]
        res = train_step(step_fn, its if vp else its[0], chunks, optimizer, None, n_micro, SEQ, MBS,
                         increment=GBS)
        losses.append(res.losses["lm loss"])
    return losses


def make_reference(rank, world_size, ckpt_dir, cfg=None):
    """Create the TP1 weights, save them, and train the single-process baseline from them."""
    from megatron_inserter.models.builder import build_model_chunks

    initialize_parallel(ParallelConfig(seed=1234))
    save_checkpoint(build_model_chunks(cfg or small_config()), ckpt_dir)
    return train_layout(ckpt_dir, cfg=cfg)


LAYOUTS = {
    # name: (world, ParallelConfig kwargs, train_layout kwargs)
    "tp2": (2, dict(tensor_model_parallel_size=2), {}),
    "pp2": (2, dict(pipeline_model_parallel_size=2), {}),
    "pp2-vpp2": (2, dict(pipeline_model_parallel_size=2, virtual_pipeline_model_parallel_size=2), {}),
    "tp2-sp": (2, dict(tensor_model_parallel_size=2), dict(sp=True)),
    # rank 1 only ever sees text-only microbatches; overlapped grad reduce waits for every parameter
    "dp2-overlap": (2, {}, dict(overlap_grad_reduce=True)),
    "tp2xpp2": (4, dict(tensor_model_parallel_size=2, pipeline_model_parallel_size=2), {}),
}


def run_layouts(rank, world_size, ckpt_dir, names, cfg=None):
    """Train each named layout in turn in this process group; returns {name: losses}."""
    results = {}
    for name in names:
        world, parallel, kwargs = LAYOUTS[name]
        assert world == world_size
        initialize_parallel(ParallelConfig(seed=1234, **parallel))
        results[name] = train_layout(ckpt_dir, cfg=cfg, **kwargs)
    return results


def text_only_inserter_vs_gpt(rank, world_size, ckpt_dir):
    """DP=2 on text-only batches: the InSerter model and its bare GPTModel, from the same weights."""
    initialize_parallel(ParallelConfig(seed=1234))
    inserter = train_layout(ckpt_dir, steps=2, speech=False)
    initialize_parallel(ParallelConfig(seed=1234))
    gpt = train_layout(ckpt_dir, steps=2, speech=False, plain_gpt=True)
    return inserter, gpt


def context_parallel_checks(rank, world_size):
    """CP=2 process groups: our slicing equals megatron-core's, and building the model on CPU is refused."""
    from megatron.core.utils import get_batch_on_this_cp_rank

    from megatron_inserter.models.builder import build_model_chunks
    from megatron_inserter.models.context_parallel import SEQUENCE_KEYS, slice_batch_for_cp

    initialize_parallel(ParallelConfig(context_parallel_size=2))
    batch = collate(global_batches(1)[0][:MBS])
    ours = slice_batch_for_cp(batch)
    theirs = get_batch_on_this_cp_rank({k: batch[k].clone() for k in SEQUENCE_KEYS})
    same = all(torch.equal(ours[k], theirs[k]) for k in SEQUENCE_KEYS)
    audio_kept = torch.equal(ours["audio"], batch["audio"])
    try:
        build_model_chunks(small_config())
        refusal = None
    except ValueError as e:
        refusal = str(e)
    return {"same_as_megatron": same, "audio_kept": audio_kept, "refusal": refusal,
            "local_len": int(ours["tokens"].shape[1])}


def stage_keys(rank, world_size):
    """Per chunk of this rank under PP=2 x VPP=2: does its checkpoint state hold encoder/adapter keys?"""
    from megatron_inserter.models.builder import build_model_chunks

    initialize_parallel(ParallelConfig(pipeline_model_parallel_size=2, virtual_pipeline_model_parallel_size=2))
    state = sharded_state(build_model_chunks(small_config()))
    return [sorted({k.split(".")[0] for k in state[f"model{i}"]}) for i in range(len(state))]


def two_process_suite(rank, world_size, ckpt_dir):
    """Everything that runs on two processes, in one process group (spawning is the slow part)."""
    out = run_layouts(rank, world_size, ckpt_dir, [n for n, v in LAYOUTS.items() if v[0] == 2])
    out["stage-keys"] = stage_keys(rank, world_size)
    out["text-only"] = text_only_inserter_vs_gpt(rank, world_size, ckpt_dir)
    out["cp"] = context_parallel_checks(rank, world_size)
    return out
