"""Run converted checkpoints at TP=1, TP=2 and PP=2 and hand back their logits (used by the parity tests).

``logits`` runs inside ``tests.harness.run_distributed`` processes (gloo, CPU). Pipeline stages pass
activations with plain point-to-point sends, so the logits are those of one full forward pass.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

LAYOUTS = {"tp1": (1, 1), "tp2": (2, 1), "pp2": (1, 2)}


def _load(chunk, ckpt: str) -> None:
    """Load as ``inserter train --load CKPT --finetune`` does (weights only, strict)."""
    from megatron_inserter.training.checkpointing import TrainState, load_checkpoint

    state = load_checkpoint(ckpt, [chunk], None, None, TrainState(), finetune=True)
    assert state is not None and state.iteration == 0


def _pipeline_forward(chunk, run_stage, pp: int):
    """Stage 0 runs ``run_stage(chunk, None)`` and sends its hidden states to stage 1, which returns logits."""
    from megatron.core import parallel_state as ps

    if pp == 1:
        return run_stage(chunk, None)
    if ps.get_pipeline_model_parallel_rank() == 0:
        hidden = run_stage(chunk, None).contiguous()
        dist.send(torch.tensor(hidden.shape), ps.get_pipeline_model_parallel_next_rank())
        dist.send(hidden, ps.get_pipeline_model_parallel_next_rank())
        return None
    shape = torch.empty(3, dtype=torch.int64)
    dist.recv(shape, ps.get_pipeline_model_parallel_prev_rank())
    hidden = torch.empty(tuple(shape.tolist()))
    dist.recv(hidden, ps.get_pipeline_model_parallel_prev_rank())
    return run_stage(chunk, hidden)


def _build(checkpoint: str, tp: int):
    """The model a converted checkpoint describes (model_config.json), built for the current layout."""
    from megatron.core import parallel_state as ps

    from megatron_inserter.models import config_file
    from megatron_inserter.models.builder import build_model_chunks
    from megatron_inserter.models.llm import build_gpt, transformer_config

    parsed = config_file.read(checkpoint)
    kind, cfg = parsed.model_type, parsed.config
    if kind == "gpt":
        config = transformer_config(cfg, tensor_model_parallel_size=tp,
                                    pipeline_model_parallel_size=ps.get_pipeline_model_parallel_world_size())
        chunk = build_gpt(cfg, config, pre_process=ps.is_pipeline_first_stage(),
                          post_process=ps.is_pipeline_last_stage(), tensor_model_parallel_size=tp,
                          parallel_output=False)
        return chunk, cfg.vocab_size
    (chunk,) = build_model_chunks(cfg)
    return chunk, cfg.llm.vocab_size


def logits(rank, world_size, jobs: list[dict]) -> dict:
    """{(job name, layout): logits [b, s, vocab]} on the ranks holding the last pipeline stage.

    A job is {"name", "checkpoint", "layouts": [...], "batch": {"tokens", and for InSerter models
    "audio", "audio_lengths"}}.
    """
    from megatron_inserter.runtime import ParallelConfig, initialize_parallel

    out = {}
    for layout, (tp, pp) in LAYOUTS.items():
        todo = [job for job in jobs if layout in job["layouts"]]
        if not todo:
            continue
        initialize_parallel(ParallelConfig(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp))
        for job in todo:
            chunk, vocab = _build(job["checkpoint"], tp)
            _load(chunk, job["checkpoint"])
            chunk.eval()
            batch = job["batch"]
            tokens = batch["tokens"]
            positions = torch.arange(tokens.shape[1]).unsqueeze(0).expand_as(tokens)

            def run_stage(model, hidden, batch=batch, tokens=tokens, positions=positions):
                if hidden is not None:
                    model.set_input_tensor(hidden)
                with torch.no_grad():
                    if "audio" in batch:
                        return model(tokens, positions, None, audio=batch["audio"],
                                     audio_lengths=batch["audio_lengths"], runtime_gather_output=True)
                    return model(tokens, positions, None)

            result = _pipeline_forward(chunk, run_stage, pp)
            if result is not None:
                out[(job["name"], layout)] = result[..., :vocab].float()
    return out
