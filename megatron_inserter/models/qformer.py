"""Q-Former adapter (DeSTA2, SALMONN): learned queries read several encoder layers and give the LLM a fixed
number of frames per encoder window.

Each tapped encoder layer l (``AdapterConfig.encoder_layers``; DeSTA2 with whisper-small: 2, 5, 8, 11) has its
own ``queries`` learned vectors [q, d]. They go through the shared Q-Former blocks, cross-attending to that
layer's hidden states of the clip (keys past the clip's frames masked, so a clip's output does not depend on
what it is batched with). The L results are mixed by a learned softmax over the layers, one weighting per
query ([q, L], zeros at start: the mean), then a LayerNorm and a linear map to the LLM width give [q, H] per
clip. A clip (one encoder window) therefore always gives q frames: ``FrameSpec.queries_per_window``.

A Q-Former block is BERT's decoder layer, post-LayerNorm, as DeSTA2 builds it from ``BertEncoder``:

    x = LN(x + SelfAttention(x))                    the queries among themselves, bidirectional
    x = LN(x + CrossAttention(x, encoder states))
    x = LN(x + fc2(GELU(fc1(x))))

Width d and heads are the encoder's (``qformer_heads`` overrides the heads), the FFN 4 d (``ffn_hidden_size``;
DeSTA2 keeps BERT's 3072, which is 4 d for whisper-small), LayerNorm epsilon 1e-12 (BERT's), no dropout. Attention and the MLP are megatron-core's
SelfAttention, CrossAttention and MLP with Column/RowParallelLinear: heads and FFN columns shard over the
tensor-parallel ranks like the encoder's, and a dist checkpoint made at one TP loads at another. The queries,
the layer weights, the LayerNorms and the row-parallel biases are replicated; their gradients are equal on
every rank because their inputs are. The output projection gathers, so the result is complete on every rank.
Local modules are used under Transformer Engine too: TE's fused norm-linear layers are pre-LayerNorm.
Why megatron-core modules rather than plain torch ones replicated on every rank: a TP layout then shards the
Q-Former's weights and compute like the encoder's, and its checkpoint tensors are the same global tensors at
any TP.

Parameter names (prefix ``adapter.``; ``<-``: DeSTA2's ``QformerConnector``, its ``qformer`` a transformers
``BertEncoder``):

  queries [L, q, d]                                    <- layer_prompts.{l} [1, q, d], stacked
  layer_weights [q, L]                                 <- layer_weights
  layers.{i}.self_attention.linear_qkv.weight/.bias    <- qformer.layer.{i}.attention.self.{query,key,value}
                                                          (rows per head [q_h; k_h; v_h], as the encoder's)
  layers.{i}.self_attention.linear_proj.weight/.bias   <- qformer.layer.{i}.attention.output.dense
  layers.{i}.self_attention_norm.weight/.bias          <- qformer.layer.{i}.attention.output.LayerNorm
  layers.{i}.cross_attention.linear_q.weight/.bias     <- qformer.layer.{i}.crossattention.self.query
  layers.{i}.cross_attention.linear_kv.weight/.bias    <- qformer.layer.{i}.crossattention.self.{key,value}
                                                          (rows per head [k_h; v_h])
  layers.{i}.cross_attention.linear_proj.weight/.bias  <- qformer.layer.{i}.crossattention.output.dense
  layers.{i}.cross_attention_norm.weight/.bias         <- qformer.layer.{i}.crossattention.output.LayerNorm
  layers.{i}.mlp.linear_fc1.weight/.bias               <- qformer.layer.{i}.intermediate.dense
  layers.{i}.mlp.linear_fc2.weight/.bias               <- qformer.layer.{i}.output.dense
  layers.{i}.mlp_norm.weight/.bias                     <- qformer.layer.{i}.output.LayerNorm
  norm.weight/.bias                                    <- proj.0 (LayerNorm, epsilon 1e-5)
  linear.weight/.bias                                  <- proj.1 (to the LLM width)
"""

from __future__ import annotations

import dataclasses

import torch
from megatron.core import tensor_parallel
from megatron.core.transformer.attention import (
    CrossAttention,
    CrossAttentionSubmodules,
    SelfAttention,
    SelfAttentionSubmodules,
)
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.mlp import MLP, MLPSubmodules
from megatron.core.transformer.module import MegatronModule

from megatron_inserter.models.config import AdapterConfig

__all__ = ["QFormerAdapter", "qformer_transformer_config"]

BLOCK_NORM_EPS = 1e-12  # BERT's
OUTPUT_NORM_EPS = 1e-5
QUERY_INIT_STD = 1.0  # DeSTA2 draws its queries from a standard normal


def qformer_transformer_config(cfg: AdapterConfig, encoder_config):
    """The Q-Former blocks' TransformerConfig: the encoder's (width, dtypes, tensor parallelism, GELU, biases)
    with the Q-Former's depth, heads and FFN width. Softmax stays unfused: megatron-core's fused masked softmax
    is a compiled extension (apex / Megatron-LM) that the local attention would otherwise need on CUDA."""
    heads = cfg.qformer_heads or encoder_config.num_attention_heads
    width = encoder_config.hidden_size
    if width % heads:
        raise ValueError(f"the Q-Former width {width} (the encoder's) is not divisible by qformer_heads {heads}")
    tp = encoder_config.tensor_model_parallel_size
    if heads % tp:
        raise ValueError(f"tensor-parallel size {tp} does not divide the Q-Former's {heads} attention heads")
    return dataclasses.replace(
        encoder_config, num_layers=cfg.qformer_layers, num_attention_heads=heads, num_query_groups=None,
        kv_channels=None, ffn_hidden_size=cfg.ffn_hidden_size or 4 * width, init_method=None,
        output_layer_init_method=None, masked_softmax_fusion=False)


def _norm(config, eps: float) -> torch.nn.LayerNorm:
    return torch.nn.LayerNorm(config.hidden_size, eps=eps, dtype=config.params_dtype)


def _with_bias(out: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return out if bias is None else out + bias


class _LayerList(torch.nn.ModuleList):
    """A ModuleList whose dist-checkpoint state keeps each layer's tensor-parallel sharding (a plain one
    would be saved as replicated)."""

    def sharded_state_dict(self, prefix: str = "", sharded_offsets=(), metadata=None) -> dict:
        out = {}
        for i, layer in enumerate(self):
            out.update(layer.sharded_state_dict(f"{prefix}{i}.", sharded_offsets, metadata))
        return out


class QFormerLayer(MegatronModule):
    """One post-LayerNorm block: self-attention of the queries, cross-attention to the encoder, MLP."""

    def __init__(self, config, layer_number: int):
        super().__init__(config=config)
        linear_col, linear_row = tensor_parallel.ColumnParallelLinear, tensor_parallel.RowParallelLinear
        self.self_attention = SelfAttention(
            config, SelfAttentionSubmodules(linear_qkv=linear_col, core_attention=DotProductAttention,
                                            linear_proj=linear_row),
            layer_number=layer_number, attn_mask_type=AttnMaskType.no_mask)
        self.self_attention_norm = _norm(config, BLOCK_NORM_EPS)
        self.cross_attention = CrossAttention(
            config, CrossAttentionSubmodules(linear_q=linear_col, linear_kv=linear_col,
                                             core_attention=DotProductAttention, linear_proj=linear_row),
            layer_number=layer_number, attn_mask_type=AttnMaskType.padding)
        self.cross_attention_norm = _norm(config, BLOCK_NORM_EPS)
        self.mlp = MLP(config, MLPSubmodules(linear_fc1=linear_col, linear_fc2=linear_row),
                       ffn_hidden_size=config.ffn_hidden_size)
        self.mlp_norm = _norm(config, BLOCK_NORM_EPS)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, key_padding: torch.Tensor) -> torch.Tensor:
        """``x`` [q, b, d] queries, ``memory`` [t, b, d] encoder states, ``key_padding`` [b, 1, 1, t] (True:
        not attended) -> [q, b, d]."""
        x = self.self_attention_norm(x + _with_bias(*self.self_attention(x, attention_mask=None)))
        attended = self.cross_attention(x, attention_mask=key_padding, key_value_states=memory)
        x = self.cross_attention_norm(x + _with_bias(*attended))
        return self.mlp_norm(x + _with_bias(*self.mlp(x)))


class QFormerAdapter(MegatronModule):
    """Encoder hidden states of L tapped layers -> ``queries`` frames per clip at the LLM width."""

    def __init__(self, cfg: AdapterConfig, config, encoder_width: int, llm_width: int, encoder_layers: list[int]):
        """``config``: the encoder's TransformerConfig; ``encoder_layers``: the tapped layers, in the order the
        states are passed to ``forward`` (``AdapterConfig.tapped_layers``)."""
        super().__init__(config=config)
        if config.hidden_size != encoder_width:
            raise ValueError(f"the Q-Former config is {config.hidden_size} wide, the encoder {encoder_width}")
        self.cfg = cfg
        self.encoder_layers = list(encoder_layers)
        block_config = qformer_transformer_config(cfg, config)
        num_taps, dtype = len(self.encoder_layers), config.params_dtype
        self.queries = torch.nn.Parameter(torch.empty(num_taps, cfg.queries, encoder_width, dtype=dtype))
        self.layer_weights = torch.nn.Parameter(torch.zeros(cfg.queries, num_taps, dtype=dtype))
        if config.perform_initialization:
            with torch.no_grad():
                self.queries.normal_(0.0, QUERY_INIT_STD)
        self.layers = _LayerList([QFormerLayer(block_config, i + 1) for i in range(cfg.qformer_layers)])
        self.norm = _norm(config, OUTPUT_NORM_EPS)
        self.linear = tensor_parallel.ColumnParallelLinear(
            encoder_width, llm_width, config=config, init_method=config.init_method, bias=True, gather_output=True)

    def layer_mix(self) -> torch.Tensor:
        """[q, L]: each query's softmax weights over the tapped layers."""
        return torch.softmax(self.layer_weights.float(), dim=-1)

    def forward(self, states: list[torch.Tensor], key_lengths: torch.Tensor) -> torch.Tensor:
        """``states``: per tapped layer [n, t, d]; ``key_lengths`` [n]: positions each clip's queries read
        -> [n, q, llm_width]."""
        if len(states) != len(self.encoder_layers):
            raise ValueError(f"the Q-Former reads {len(self.encoder_layers)} encoder layers, got {len(states)}")
        num_taps, q = len(states), self.cfg.queries
        n, t, d = states[0].shape
        dtype = self.queries.dtype
        # All layers in one pass: batch index = layer * n + clip.
        memory = torch.cat(states, dim=0).transpose(0, 1).to(dtype).contiguous()  # [t, L n, d]
        keys = key_lengths.to(memory.device).repeat(num_taps)
        key_padding = (torch.arange(t, device=memory.device)[None, :] >= keys[:, None])[:, None, None, :]
        x = self.queries[:, None].expand(num_taps, n, q, d).reshape(num_taps * n, q, d).transpose(0, 1).contiguous()
        for layer in self.layers:
            x = layer(x, memory, key_padding)  # [q, L n, d]
        mix = self.layer_mix().to(x.dtype)  # [q, L]
        x = (x.view(q, num_taps, n, d) * mix[:, :, None, None]).sum(dim=1)  # [q, n, d]
        out, _ = self.linear(self.norm(x))
        return out.transpose(0, 1)
