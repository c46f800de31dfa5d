"""Speech adapter: downsample the encoder frames and project them to the LLM width (tensor parallel).

Kinds (``AdapterConfig.kind``):
  pool-linear  Qwen2-Audio: average pooling (kernel = stride = ``downsample``, remainder frames dropped, as
               ``nn.AvgPool1d``) applied *before* the encoder's final LayerNorm, as ``Qwen2AudioEncoder``
               does, then one linear layer with bias.
  stack-mlp    ``downsample`` consecutive frames concatenated along features (after the final LayerNorm),
               then Linear -> GELU -> Linear, with biases.
  qformer      DeSTA2 / SALMONN: learned queries cross-attend to several encoder layers, a fixed number of
               frames per window (``qformer.py``; ``build_adapter`` picks the class).

Parameter names (``<-`` is the Hugging Face Qwen2-Audio name):
  pool-linear: adapter.linear.weight [H, d] / adapter.linear.bias [H]  <- multi_modal_projector.linear
  stack-mlp:   adapter.linear_fc1.weight [F, k*d] / .bias [F]; adapter.linear_fc2.weight [H, F] / .bias [H]
               (the stacked input is [frame 0 features | frame 1 features | ...]).

``downsample`` is ``FrameSpec.adapter_downsample``. The linears are megatron-core Column/RowParallelLinear;
the adapter's output is complete on every tensor-parallel rank (ready to be spliced into the embeddings).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from megatron.core import tensor_parallel
from megatron.core.transformer.module import MegatronModule

from megatron_inserter.models.config import AdapterConfig
from megatron_inserter.models.qformer import QFormerAdapter

__all__ = ["AdapterConfig", "SpeechAdapter", "build_adapter"]


class SpeechAdapter(MegatronModule):
    def __init__(self, cfg: AdapterConfig, config, encoder_width: int, llm_width: int):
        super().__init__(config=config)
        self.cfg = cfg
        k = cfg.downsample
        if cfg.kind == "pool-linear":
            self.linear = tensor_parallel.ColumnParallelLinear(
                encoder_width, llm_width, config=config, init_method=config.init_method, bias=True,
                gather_output=True)
        else:
            ffn = cfg.ffn_hidden_size or llm_width
            self.linear_fc1 = tensor_parallel.ColumnParallelLinear(
                k * encoder_width, ffn, config=config, init_method=config.init_method, bias=True,
                gather_output=False)
            self.linear_fc2 = tensor_parallel.RowParallelLinear(
                ffn, llm_width, config=config, init_method=config.output_layer_init_method, bias=True,
                input_is_parallel=True, skip_bias_add=False)

    def downsample(self, h: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[n, t, d] -> [n, t // k, d] (average) or [n, t // k, k * d] (stack); lengths // k."""
        k = self.cfg.downsample
        n, t, d = h.shape
        t_out = t // k
        h = h[:, : t_out * k]
        if self.cfg.kind == "pool-linear":
            h = h.reshape(n, t_out, k, d).mean(dim=2)
        else:
            h = h.reshape(n, t_out, k * d)
        return h, torch.div(lengths, k, rounding_mode="floor")

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """[N, d_in] frames -> [N, llm_width]."""
        x = frames.unsqueeze(1)  # [N, 1, d]: megatron's [s, b, h] layout
        if self.cfg.kind == "pool-linear":
            out, _ = self.linear(x)
        else:
            out, _ = self.linear_fc1(x)
            out, _ = self.linear_fc2(F.gelu(out))
        return out.squeeze(1)


def build_adapter(cfg: AdapterConfig, config, encoder_width: int, llm_width: int, encoder_num_layers: int):
    """The adapter module of ``cfg.kind`` (``config``: the encoder's TransformerConfig)."""
    if cfg.kind == "qformer":
        return QFormerAdapter(cfg, config, encoder_width, llm_width, cfg.tapped_layers(encoder_num_layers))
    return SpeechAdapter(cfg, config, encoder_width, llm_width)
