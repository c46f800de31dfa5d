"""Build the InSerter model chunks for this rank (one per virtual pipeline stage).

    initialize_parallel(ParallelConfig(...))
    chunks = build_model_chunks(presets.resolve("tiny").with_tokenizer(tok),
                                sequence_parallel=True, bf16=True, params_dtype=torch.bfloat16)

Keyword overrides are TransformerConfig fields of the LLM; parallel sizes default to the initialized
megatron parallel state. The encoder/adapter config copies only tensor-parallel size, dtypes and
initialization from it: no pipeline, sequence or context parallelism, and no FP8 (``fp8*`` fields stay on
the LLM decoder).
"""

from __future__ import annotations

from functools import partial

import torch.nn.functional as F

from megatron_inserter.models.config import InserterModelConfig
from megatron_inserter.models.inserter import InserterModel
from megatron_inserter.models.llm import build_pipeline_chunks, kernel_fusion_kwargs, transformer_config
from megatron_inserter.runtime import cpu_compat


def llm_transformer_config(cfg: InserterModelConfig, **overrides):
    from megatron.core import parallel_state as ps

    if ps.model_parallel_is_initialized():
        vp = ps.get_virtual_pipeline_model_parallel_world_size()
        defaults = dict(
            tensor_model_parallel_size=ps.get_tensor_model_parallel_world_size(),
            pipeline_model_parallel_size=ps.get_pipeline_model_parallel_world_size(),
            virtual_pipeline_model_parallel_size=vp if vp and vp > 1 else None,
            context_parallel_size=ps.get_context_parallel_world_size(),
        )
        defaults.update(overrides)
        overrides = defaults
    return transformer_config(cfg.llm, **overrides)


def encoder_transformer_config(cfg: InserterModelConfig, llm_config):
    """TransformerConfig of the Whisper encoder and the adapter (LayerNorm, biases, exact GELU)."""
    from megatron.core.transformer import TransformerConfig

    enc = cfg.encoder
    kwargs = dict(
        num_layers=enc.num_layers,
        hidden_size=enc.hidden_size,
        ffn_hidden_size=enc.ffn_hidden_size,
        num_attention_heads=enc.num_attention_heads,
        normalization="LayerNorm",
        layernorm_epsilon=enc.layernorm_epsilon,
        gated_linear_unit=False,
        activation_func=F.gelu,
        add_bias_linear=True,
        add_qkv_bias=True,
        **kernel_fusion_kwargs(exact_gelu=True),
        tensor_model_parallel_size=llm_config.tensor_model_parallel_size,
        pipeline_model_parallel_size=1,
        context_parallel_size=1,
        sequence_parallel=False,
        params_dtype=llm_config.params_dtype,
        bf16=llm_config.bf16,
        fp16=llm_config.fp16,
        pipeline_dtype=llm_config.pipeline_dtype,
        use_cpu_initialization=llm_config.use_cpu_initialization,
        perform_initialization=llm_config.perform_initialization,
        init_method_std=llm_config.init_method_std,
        calculate_per_token_loss=True,
    )
    kwargs.update(cpu_compat.config_overrides())
    return TransformerConfig(**kwargs)


def model_provider(cfg: InserterModelConfig, llm_config, encoder_config, pre_process: bool = True,
                   post_process: bool = True, vp_stage: int | None = None) -> InserterModel:
    """One model chunk (Megatron-LM's ``model_provider`` shape)."""
    return InserterModel(cfg, llm_config, encoder_config, pre_process=pre_process, post_process=post_process,
                         vp_stage=vp_stage)


def build_model_chunks(cfg: InserterModelConfig, **overrides) -> list[InserterModel]:
    """The chunks of this rank: one, or one per virtual pipeline stage (on the CPU; callers place them)."""
    llm_config = llm_transformer_config(cfg, **overrides)
    encoder_config = encoder_transformer_config(cfg, llm_config)
    return build_pipeline_chunks(partial(model_provider, cfg, llm_config, encoder_config),
                                 llm_config.virtual_pipeline_model_parallel_size)
