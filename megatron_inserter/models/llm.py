"""The language model: a megatron-core GPTModel in Qwen2 / Llama shapes.

RMSNorm, SwiGLU, rotary positions with a configurable base, grouped-query attention, optional QKV bias,
tied or untied embeddings. Transformer Engine layer specs are used when TE imports and CUDA is present,
megatron-core's local specs otherwise. Its shapes are ``config.LLMConfig``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from megatron_inserter.models import specs
from megatron_inserter.models.config import LLMConfig
from megatron_inserter.runtime import cpu_compat


def use_transformer_engine() -> bool:
    return specs.use_transformer_engine()


def gpt_layer_spec(use_te: bool | None = None, normalization: str = "RMSNorm"):
    return specs.gpt_layer_spec(use_te, normalization)


def kernel_fusion_kwargs(exact_gelu: bool = False) -> dict:
    """Dropout and Megatron's fused kernels, shared by the LLM and the encoder configs.

    Fusions are on, as in Megatron-LM, when Transformer Engine runs on CUDA, and off otherwise (their
    fallbacks are missing or slow on CPU). ``exact_gelu``: the encoder's erf GELU (Whisper) must not go
    through megatron's fused bias-GELU, which uses the tanh approximation. Dropout is 0: continued
    pre-training of pretrained models, as InSerter does.
    """
    fused = use_transformer_engine()
    return dict(
        hidden_dropout=0.0,
        attention_dropout=0.0,
        bias_dropout_fusion=fused,
        bias_activation_fusion=fused and not exact_gelu,
        apply_rope_fusion=fused,
        masked_softmax_fusion=fused,
        persist_layer_norm=False,
        gradient_accumulation_fusion=fused,
    )


def transformer_config(cfg: LLMConfig, **overrides):
    """megatron-core TransformerConfig for this LLM; ``overrides`` carry parallelism and precision."""
    from megatron.core.transformer import TransformerConfig

    kwargs = dict(
        num_layers=cfg.num_layers,
        hidden_size=cfg.hidden_size,
        ffn_hidden_size=cfg.ffn_hidden_size,
        num_attention_heads=cfg.num_attention_heads,
        num_query_groups=cfg.num_query_groups,
        kv_channels=cfg.kv_channels,
        normalization="RMSNorm",
        layernorm_epsilon=cfg.norm_epsilon,
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=False,
        add_qkv_bias=cfg.add_qkv_bias,
        **kernel_fusion_kwargs(),
        calculate_per_token_loss=True,
        use_cpu_initialization=not torch.cuda.is_available(),
        pipeline_dtype=torch.float32,
    )
    kwargs.update(cfg.extra)
    kwargs.update(overrides)
    kwargs.update(cpu_compat.config_overrides())
    return TransformerConfig(**kwargs)


def build_pipeline_chunks(build_chunk, virtual_pipeline_size: int | None) -> list:
    """This rank's model chunks: one, or one per virtual pipeline stage (interleaved schedule).

    ``build_chunk(pre_process=..., post_process=..., vp_stage=...)`` builds one chunk; the flags say
    whether it holds the first stage (embeddings, encoder) and the last (output layer, loss).
    """
    from megatron.core import parallel_state as ps

    stages = range(virtual_pipeline_size) if virtual_pipeline_size else [None]
    return [build_chunk(pre_process=ps.is_pipeline_first_stage(ignore_virtual=False, vp_stage=stage),
                        post_process=ps.is_pipeline_last_stage(ignore_virtual=False, vp_stage=stage),
                        vp_stage=stage)
            for stage in stages]


def build_gpt(cfg: LLMConfig, config, pre_process: bool = True, post_process: bool = True,
              vp_stage: int | None = None, tensor_model_parallel_size: int = 1, layer_spec=None,
              **gpt_kwargs):
    """Build one pipeline chunk of the GPTModel. ``gpt_kwargs`` go to GPTModel (e.g.
    ``scatter_embedding_sequence_parallel=False`` when the caller splices the embeddings itself)."""
    from megatron.core.models.gpt import GPTModel

    if vp_stage is not None:
        gpt_kwargs["vp_stage"] = vp_stage
    if cfg.rope_scaling_factor is not None:
        gpt_kwargs.update(rope_scaling=True, rope_scaling_factor=cfg.rope_scaling_factor)
    return GPTModel(
        config=config,
        transformer_layer_spec=specs.block_spec(layer_spec or gpt_layer_spec(), config, vp_stage),
        vocab_size=cfg.padded_vocab_size(tensor_model_parallel_size),
        max_sequence_length=cfg.max_position_embeddings,
        pre_process=pre_process,
        post_process=post_process,
        share_embeddings_and_output_weights=cfg.tie_embeddings,
        position_embedding_type="rope",
        rotary_base=int(cfg.rotary_base) if float(cfg.rotary_base).is_integer() else cfg.rotary_base,
        **gpt_kwargs,
    )
