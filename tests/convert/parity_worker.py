"""Run converted checkpoints at TP=1, TP=2 and PP=2 and hand back their logits (used by the parity tests).

The functions run inside ``tests.harness.run_distributed`` processes (gloo, CPU). Pipeline stages pass
activations with plain point-to-point sends, so the logits are those of one full forward pass.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

LAYOUTS = {"tp1": (1, 1), "tp2": (2, 1), "pp2": (1, 2)}


def _load(chunk, ckpt: str) -> None:
    from megatron.core import dist_checkpointing

    from megatron_inserter.convert.mcore_checkpoint import resolve

    state = dist_checkpointing.load({"model": chunk.sharded_state_dict()}, resolve(ckpt))
    chunk.load_state_dict(state["model"], strict=True)


def _pipeline_forward(chunk, run_stage, pp: int):
    """Stage 0 runs ``run_stage(chunk, None)`` and sends its hidden states to stage 1, which returns logits."""
    from megatron.core import parallel_state as ps

    if pp == 1:
        return run_stage(chunk, None)
    rank = ps.get_pipeline_model_parallel_rank()
    if rank == 0:
        hidden = run_stage(chunk, None).contiguous()
        dist.send(torch.tensor(hidden.shape), ps.get_pipeline_model_parallel_next_rank())
        dist.send(hidden, ps.get_pipeline_model_parallel_next_rank())
        return None
    shape = torch.empty(3, dtype=torch.int64)
    dist.recv(shape, ps.get_pipeline_model_parallel_prev_rank())
    hidden = torch.empty(tuple(shape.tolist()))
    dist.recv(hidden, ps.get_pipeline_model_parallel_prev_rank())
    return run_stage(chunk, hidden)


def gpt_logits(rank, world_size, checkpoints: dict, tokens: torch.Tensor, layouts: dict | None = None) -> dict:
    """{(name, layout): logits [b, s, vocab]} for every checkpoint and layout (only on ranks holding them).

    ``layouts`` maps a checkpoint name to the layouts it runs at (default: all of LAYOUTS).
    """
    from megatron.core import parallel_state as ps

    from megatron_inserter.convert.layout import read_model_config
    from megatron_inserter.models.llm import LLMConfig, build_gpt, transformer_config
    from megatron_inserter.runtime import ParallelConfig, initialize_parallel

    out = {}
    positions = torch.arange(tokens.shape[1]).unsqueeze(0).expand_as(tokens)
    for layout, (tp, pp) in LAYOUTS.items():
        initialize_parallel(ParallelConfig(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp))
        for name, ckpt in checkpoints.items():
            if layouts and layout not in layouts.get(name, LAYOUTS):
                continue
            cfg = LLMConfig(**read_model_config(ckpt)["llm"])
            config = transformer_config(cfg, tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp)
            chunk = build_gpt(cfg, config, pre_process=ps.is_pipeline_first_stage(),
                              post_process=ps.is_pipeline_last_stage(), tensor_model_parallel_size=tp,
                              parallel_output=False)
            _load(chunk, ckpt)
            chunk.eval()

            def run_stage(model, hidden):
                if hidden is not None:
                    model.set_input_tensor(hidden)
                with torch.no_grad():
                    return model(tokens if hidden is None else None, positions, None)

            logits = _pipeline_forward(chunk, run_stage, pp)
            if logits is not None:
                out[(name, layout)] = logits[..., : cfg.vocab_size].float()
    return out
