"""Q-Former adapter checks run in spawned processes by test_qformer.py."""

from __future__ import annotations

import math
import os
from types import SimpleNamespace

import numpy as np
import torch

from megatron_inserter.runtime import ParallelConfig, initialize_parallel
from tests.models import inserter_parallel as ip

WINDOW = 480_000  # 30 s at 16 kHz


def placeholder_counts() -> list[dict]:
    """Per clip length: placeholders the data path lays out, what frames.py counts and what the model emits."""
    from megatron_inserter.data.frames import num_audio_frames
    from megatron_inserter.inference.prompt import audio_tokens
    from megatron_inserter.models.builder import build_model_chunks

    cfg = ip.qformer_config()
    spec = cfg.frame_spec()
    [model] = build_model_chunks(cfg)
    model.eval()
    tok = SimpleNamespace(audio_bos_id=97, audio_placeholder_id=ip.PLACEHOLDER, audio_eos_id=98)
    g = torch.Generator().manual_seed(5)
    out = []
    for n in (160, 4_800, WINDOW, WINDOW + 16_000, WINDOW + 100, 2 * WINDOW + 3_200):
        encoded = audio_tokens(tok, (0.1 * torch.randn(n, generator=g)).numpy(), spec)
        lengths = torch.tensor([len(c) for c in encoded.clips])
        audio = torch.zeros(len(encoded.clips), int(lengths.max()))
        for i, clip in enumerate(encoded.clips):
            audio[i, :len(clip)] = torch.from_numpy(np.asarray(clip))
        with torch.no_grad():
            frames = model.encode_audio(audio, lengths)
        out.append({"samples": n, "placeholders": encoded.ids.count(ip.PLACEHOLDER),
                    "counted": num_audio_frames(n, spec), "emitted": int(frames.shape[0]),
                    "windows": len(encoded.clips), "ceil": cfg.adapter.queries * math.ceil(n / WINDOW)})
    return out


def batching_independence() -> float:
    """Largest difference between a clip's frames encoded alone and next to a longer clip (masked keys)."""
    from megatron_inserter.models.builder import build_model_chunks

    [model] = build_model_chunks(ip.qformer_config())
    model.eval()
    g = torch.Generator().manual_seed(6)
    audio = 0.1 * torch.randn(2, 16_000, generator=g)
    lengths = torch.tensor([4_800, 16_000])
    with torch.no_grad():
        both = model.encode_audio(audio, lengths)
        alone = model.encode_audio(audio[:1, :4_800], lengths[:1])
    q = ip.qformer_config().adapter.queries
    return float((both[:q] - alone).abs().max())


def _split_heads(w: torch.Tensor, heads: int) -> torch.Tensor:
    return w.reshape(heads, w.shape[0] // heads, *w.shape[1:])


def desta2_state(bert: dict, prompts: torch.Tensor, layer_weights: torch.Tensor, proj: dict, heads: int,
                 num_layers: int) -> dict:
    """DeSTA2's QformerConnector tensors (a transformers BertEncoder + prompts + proj) under our names."""
    from megatron_inserter.convert import qkv

    out = {"queries": prompts, "layer_weights": layer_weights, "norm.weight": proj["0.weight"],
           "norm.bias": proj["0.bias"], "linear.weight": proj["1.weight"], "linear.bias": proj["1.bias"]}
    for i in range(num_layers):
        p, m = f"layer.{i}.", f"layers.{i}."
        for x in ("weight", "bias"):
            s = p + "attention.self."
            head_dim = bert[s + "query.weight"].shape[0] // heads
            out[f"{m}self_attention.linear_qkv.{x}"] = qkv.fuse(bert[f"{s}query.{x}"], bert[f"{s}key.{x}"],
                                                               bert[f"{s}value.{x}"], heads, heads, head_dim)
            c = p + "crossattention.self."
            out[f"{m}cross_attention.linear_q.{x}"] = bert[f"{c}query.{x}"]
            kv = torch.cat([_split_heads(bert[f"{c}key.{x}"], heads), _split_heads(bert[f"{c}value.{x}"], heads)], 1)
            out[f"{m}cross_attention.linear_kv.{x}"] = kv.reshape(-1, *kv.shape[2:])
            for ours, theirs in (("self_attention.linear_proj", "attention.output.dense"),
                                 ("self_attention_norm", "attention.output.LayerNorm"),
                                 ("cross_attention.linear_proj", "crossattention.output.dense"),
                                 ("cross_attention_norm", "crossattention.output.LayerNorm"),
                                 ("mlp.linear_fc1", "intermediate.dense"), ("mlp.linear_fc2", "output.dense"),
                                 ("mlp_norm", "output.LayerNorm")):
                out[f"{m}{ours}.{x}"] = bert[f"{p}{theirs}.{x}"]
    return out


def desta2_parity() -> dict:
    """Our Q-Former against DeSTA2's construction (transformers BertEncoder with cross-attention, per-layer
    prompts, a per-query softmax over the layers, LayerNorm + Linear) on the same weights and states."""
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertEncoder

    from megatron_inserter.models.builder import encoder_transformer_config, llm_transformer_config
    from megatron_inserter.models.qformer import QFormerAdapter

    cfg = ip.qformer_config()
    ad, d, heads, llm_width = cfg.adapter, cfg.encoder.hidden_size, cfg.encoder.num_attention_heads, 48
    taps = ad.tapped_layers(cfg.encoder.num_layers)
    ours = QFormerAdapter(ad, encoder_transformer_config(cfg, llm_transformer_config(cfg)), d, llm_width, taps)
    bert_cfg = BertConfig(hidden_size=d, num_attention_heads=heads, num_hidden_layers=ad.qformer_layers,
                          intermediate_size=4 * d, is_decoder=True, add_cross_attention=True, hidden_act="gelu",
                          hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, layer_norm_eps=1e-12)
    bert_cfg._attn_implementation = "eager"  # DeSTA2's: bidirectional self-attention among the queries
    torch.manual_seed(3)
    bert = BertEncoder(bert_cfg).eval()
    proj = torch.nn.Sequential(torch.nn.LayerNorm(d), torch.nn.Linear(d, llm_width))
    with torch.no_grad():
        for norm in [m for m in list(bert.modules()) + list(proj) if isinstance(m, torch.nn.LayerNorm)]:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.normal_(0.0, 0.1)
    prompts = torch.randn(len(taps), ad.queries, d)
    layer_weights = torch.randn(ad.queries, len(taps))
    state = desta2_state(bert.state_dict(), prompts, layer_weights, proj.state_dict(), heads, ad.qformer_layers)
    missing, unexpected = ours.load_state_dict(state, strict=False)
    n, t = 3, 11
    states = [torch.randn(n, t, d) for _ in taps]
    with torch.no_grad():
        got = ours(states, torch.full((n,), t))
        per_layer = [bert(hidden_states=prompts[i][None].expand(n, -1, -1), encoder_hidden_states=s).last_hidden_state
                     for i, s in enumerate(states)]
        mixed = (torch.stack(per_layer, dim=2) * torch.softmax(layer_weights, dim=-1)[None, :, :, None]).sum(dim=2)
        want = proj(mixed)
        # The same clips padded with extra positions their key lengths exclude.
        padded = ours([torch.cat([s, torch.randn(n, 5, d)], dim=1) for s in states], torch.full((n,), t))
    return {"missing": [k for k in missing if not k.endswith("_extra_state")], "unexpected": unexpected,
            "shape": tuple(got.shape), "diff": float((got - want).abs().max()),
            "scale": float(want.abs().max()), "padding_diff": float((padded - got).abs().max())}


def adapter_only_training(ckpt_dir: str, work_dir: str) -> dict:
    """``inserter train --freeze-encoder --freeze-llm`` on a Q-Former model: the flags as the trainer parses and
    applies them, three optimizer steps; which parameters moved."""
    from megatron.core.distributed import DistributedDataParallelConfig
    from megatron.core.optimizer import OptimizerConfig

    from megatron_inserter.models import config_file
    from megatron_inserter.training.arguments import parse_args
    from megatron_inserter.training.engine import (
        build_optimizer,
        configure_model_config,
        train_step,
        wrap_ddp,
    )
    from megatron_inserter.training.models import model_family

    path = config_file.write(work_dir, config_file.to_dict(ip.qformer_config()))
    args = parse_args(["--model-preset", path, "--freeze-encoder", "--freeze-llm", "--micro-batch-size", "2",
                       "--seq-length", str(ip.SEQ), "--lr", "1e-2", "--train-iters", "3",
                       "--data-path", os.path.join(work_dir, "unused"), "--tokenizer-model", "unused"])
    tok = SimpleNamespace(vocab_size=100, audio_placeholder_id=ip.PLACEHOLDER, eod_id=0)
    family = model_family(args, tok)
    initialize_parallel(ParallelConfig(seed=1234))
    chunks = family.build_chunks({}, None)
    ip.load_checkpoint(chunks, ckpt_dir)
    before = {n: p.detach().clone() for n, p in chunks[0].named_parameters()}
    chunks = wrap_ddp(chunks, DistributedDataParallelConfig(grad_reduce_in_fp32=True))
    configure_model_config(chunks, ddp=True)
    optimizer = build_optimizer(chunks, OptimizerConfig(optimizer="adam", lr=1e-2, weight_decay=0.01, bf16=False,
                                                        fp16=False))
    for samples in ip.global_batches(3, cfg=family.config):
        mbs = ip.microbatches_for_rank(samples, 0, 1)
        train_step(ip.forward_step, iter(mbs), chunks, optimizer, None, len(mbs), ip.SEQ, ip.MBS, increment=ip.GBS)
    after = dict(chunks[0].module.named_parameters())
    report = {}
    for part in ("encoder", "adapter", "language_model"):
        names = [n for n in before if n.startswith(part + ".")]
        report[part] = {"count": len(names), "trainable": [n for n in names if after[n].requires_grad],
                        "unchanged": [n for n in names if torch.equal(before[n], after[n].detach())]}
    return report


def composed_checkpoint(checkpoint: str, whisper_dir: str, seed: int) -> dict:
    """A Whisper + LLM composition with a fresh Q-Former, loaded as ``inserter train --load --finetune`` does."""
    from safetensors.torch import load_file

    from megatron_inserter.convert.hf_to_mcore import fresh_qformer
    from megatron_inserter.models import config_file
    from megatron_inserter.models.builder import build_model_chunks
    from megatron_inserter.training.checkpointing import TrainState, load_checkpoint

    cfg = config_file.read(checkpoint).config
    fresh = fresh_qformer(cfg, seed)
    initialize_parallel(ParallelConfig(seed=1234))
    [model] = build_model_chunks(cfg)
    state = load_checkpoint(checkpoint, [model], None, None, TrainState(), finetune=True)
    params = dict(model.named_parameters())
    whisper = load_file(os.path.join(whisper_dir, "model.safetensors"))
    with torch.no_grad():
        frames = model.encode_audio(0.1 * torch.randn(2, 8_000), torch.tensor([8_000, 3_200]))
    return {"loaded": state is not None, "adapter": cfg.adapter, "frames": tuple(frames.shape),
            "fresh_names": sorted(fresh) == sorted(n for n in params if n.startswith("adapter.")),
            "adapter_equal": all(torch.equal(params[n].detach(), t) for n, t in fresh.items()),
            "queries_std": float(params["adapter.queries"].std()),
            "encoder_equal": torch.equal(params["encoder.conv1.weight"].detach(),
                                         whisper["model.encoder.conv1.weight"])}


def reference_suite(rank, world_size, ckpt_dir, work_dir, composed_dir, whisper_dir):
    """The single-process part: TP1 reference losses (and the checkpoint every layout starts from), frame
    counts, DeSTA2 parity, adapter-only training and a composition with a fresh Q-Former."""
    losses = ip.make_reference(rank, world_size, ckpt_dir, cfg=ip.qformer_config())
    return {"reference": losses, "counts": placeholder_counts(), "batching": batching_independence(),
            "desta2": desta2_parity(), "adapter_only": adapter_only_training(ckpt_dir, work_dir),
            "composed": composed_checkpoint(composed_dir, whisper_dir, seed=7)}


def parallel_suite(rank, world_size, ckpt_dir):
    """TP2, PP2 and DP2 with overlapped gradient reduction, from the TP1 checkpoint."""
    return ip.run_layouts(rank, world_size, ckpt_dir, ["tp2", "pp2", "dp2-overlap"], cfg=ip.qformer_config())
