"""The models conversion reads and writes, built exactly as training builds them (TP=PP=1, local layer
spec, no initialisation) so their sharded state dicts name every tensor as training saves it. Built on the
``meta`` device by ``mcore_io.build_on_meta``: no memory is used for weights."""

from __future__ import annotations

from collections.abc import Callable

import torch

from megatron_inserter.models.config import InserterModelConfig, LLMConfig


def llm_builder(cfg: LLMConfig, tp: int = 1) -> Callable[[], torch.nn.Module]:
    """``--model-type gpt``: the GPTModel, vocabulary padded for tensor-parallel size ``tp``."""
    from megatron_inserter.models.llm import build_gpt, gpt_layer_spec, transformer_config

    def build():
        return build_gpt(cfg, transformer_config(cfg, perform_initialization=False), tensor_model_parallel_size=tp,
                         layer_spec=gpt_layer_spec(use_te=False))
    return build


def inserter_builder(cfg: InserterModelConfig) -> Callable[[], torch.nn.Module]:
    """``--model-type inserter``: encoder + adapter + GPTModel."""
    from megatron_inserter.models.builder import encoder_transformer_config, llm_transformer_config
    from megatron_inserter.models.inserter import InserterModel

    def build():
        llm_config = llm_transformer_config(cfg, perform_initialization=False)
        return InserterModel(cfg, llm_config, encoder_transformer_config(cfg, llm_config), use_te=False)
    return build
