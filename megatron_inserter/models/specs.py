"""megatron-core module specs for the two transformer stacks: the LLM decoder and the speech encoder.

Transformer Engine specs when TE imports and CUDA is present; megatron-core's local specs otherwise.

The local specs swap megatron-core's ``WrappedTorchNorm`` (which refuses sequence parallelism, since it does
not tag its parameters) for ``TorchNorm``: the same ``torch.nn.LayerNorm`` / ``RMSNorm`` modules (so the
state-dict names and the numbers are unchanged) with ``param.sequence_parallel`` set from the config, which
is what ``finalize_model_grads`` reads to all-reduce norm gradients across tensor-parallel ranks under
sequence parallelism. Apex's FusedLayerNorm and TE's norms set the same attribute.
"""

from __future__ import annotations

import copy

import torch


def use_transformer_engine() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import transformer_engine  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken Transformer Engine install means: no TE
        return False
    return True


class TorchNorm:
    """``torch.nn.LayerNorm`` / ``torch.nn.RMSNorm`` per ``config.normalization``, sequence-parallel aware,
    created in ``config.params_dtype`` like every other parameter (so a bf16 model needs no Float16Module)."""

    def __new__(cls, config, hidden_size: int, eps: float = 1e-5, **_unused):
        if config.normalization == "LayerNorm":
            norm = torch.nn.LayerNorm(hidden_size, eps=eps, dtype=config.params_dtype)
        elif config.normalization == "RMSNorm":
            norm = torch.nn.RMSNorm(hidden_size, eps=eps, dtype=config.params_dtype)
        else:
            raise ValueError(f"unsupported normalization {config.normalization!r} (LayerNorm or RMSNorm)")
        for param in norm.parameters():
            param.sequence_parallel = bool(config.sequence_parallel)
        return norm


def _with_local_norms(layer_spec):
    spec = copy.deepcopy(layer_spec)
    spec.submodules.input_layernorm = TorchNorm
    spec.submodules.pre_mlp_layernorm = TorchNorm
    return spec


def gpt_layer_spec(use_te: bool | None = None, normalization: str = "RMSNorm"):
    """Causal decoder layer (Qwen2 / Llama shapes)."""
    from megatron.core.models.gpt.gpt_layer_specs import (
        get_gpt_layer_local_spec,
        get_gpt_layer_with_transformer_engine_spec,
    )

    if use_te is None:
        use_te = use_transformer_engine()
    if use_te:
        return get_gpt_layer_with_transformer_engine_spec()
    return _with_local_norms(get_gpt_layer_local_spec(normalization=normalization))


def encoder_layer_spec(use_te: bool | None = None):
    """Bidirectional pre-LayerNorm layer with biases and a GELU MLP (Whisper), padding attention mask.

    The activation, normalization and biases come from the TransformerConfig (see ``builder``); the spec only
    fixes the module classes and the mask type. The local spec maps its norms onto TE's fused names in dist
    checkpoints (``input_layernorm.`` -> ``self_attention.linear_qkv.layer_norm_``), so checkpoints are
    interchangeable between the two.
    """
    from megatron.core.transformer.enums import AttnMaskType

    spec = gpt_layer_spec(use_te, normalization="LayerNorm")
    spec = copy.deepcopy(spec)
    spec.submodules.self_attention.params = {"attn_mask_type": AttnMaskType.padding}
    return spec


def block_spec(layer_spec, config, vp_stage: int | None = None):
    """The layers of this pipeline chunk plus the block's final norm (``TorchNorm`` under the local spec).

    A plain layer spec would give the block megatron-core's default final norm, which is
    ``WrappedTorchNorm`` without TE/apex and refuses sequence parallelism.
    """
    from megatron.core.transformer.spec_utils import ModuleSpec
    from megatron.core.transformer.transformer_block import (
        TransformerBlockSubmodules,
        get_num_layers_to_build,
    )

    if not isinstance(layer_spec, ModuleSpec) or getattr(layer_spec.submodules, "input_layernorm", None) \
            is not TorchNorm:
        return layer_spec
    num_layers = get_num_layers_to_build(config, vp_stage=vp_stage)
    return TransformerBlockSubmodules(layer_specs=[layer_spec] * num_layers, layer_norm=TorchNorm)


def final_norm_module(use_te: bool | None = None):
    """Standalone norm class matching the layer spec (the encoder's final LayerNorm)."""
    if use_te is None:
        use_te = use_transformer_engine()
    if use_te:
        from megatron.core.extensions.transformer_engine import TENorm

        return TENorm
    return TorchNorm
