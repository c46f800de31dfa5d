"""The model a run trains, behind one interface: InSerter (speech encoder + adapter + LLM) or the LLM alone.

    family = model_family(args, tokenizer)           # configs only: works before process groups exist
    chunks = family.build_chunks(transformer_overrides, vp)
    loss = family.forward(chunk, batch)              # per-token losses [b, s] on the last stage
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from megatron_inserter.models.frames import FrameSpec
from megatron_inserter.models.llm import LLMConfig, build_gpt, transformer_config
from megatron_inserter.training.arguments import ArgumentError, TrainingArguments
from megatron_inserter.training.flops import EncoderShape, TransformerShape


def _stage_flags(vp_stage: int | None):
    from megatron.core import parallel_state as ps

    return (ps.is_pipeline_first_stage(ignore_virtual=False, vp_stage=vp_stage),
            ps.is_pipeline_last_stage(ignore_virtual=False, vp_stage=vp_stage))


@dataclass
class GPTFamily:
    """``--model-type gpt``: the preset's language model on text (speech spans are plain tokens)."""

    llm: LLMConfig
    with_audio: bool = False

    @property
    def num_layers(self) -> int:
        return self.llm.num_layers

    @property
    def frame_spec(self) -> FrameSpec:
        return FrameSpec()

    def build_chunks(self, overrides: dict, vp: int | None) -> list:
        config = transformer_config(self.llm, **overrides)
        chunks = []
        for i in range(vp or 1):
            stage = i if vp else None
            pre, post = _stage_flags(stage)
            chunks.append(build_gpt(self.llm, config, pre_process=pre, post_process=post, vp_stage=stage,
                                    tensor_model_parallel_size=overrides.get("tensor_model_parallel_size", 1)))
        return chunks

    def forward(self, model, batch: dict | None):
        if batch is None:  # a middle pipeline stage: the input arrives from the previous stage
            return model(None, None, None)
        return model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"])

    def freeze(self, chunks, args: TrainingArguments) -> None:
        pass

    def flops_shapes(self) -> tuple[TransformerShape, EncoderShape | None]:
        return TransformerShape.of_llm(self.llm), None


@dataclass
class InserterFamily:
    """``--model-type inserter``: megatron_inserter.models.InserterModel from a named preset."""

    config: object  # models.InserterModelConfig
    with_audio: bool = True

    @property
    def llm(self) -> LLMConfig:
        return self.config.llm

    @property
    def num_layers(self) -> int:
        return self.config.llm.num_layers

    @property
    def frame_spec(self) -> FrameSpec:
        return self.config.frame_spec()

    def build_chunks(self, overrides: dict, vp: int | None) -> list:
        from megatron_inserter.models import build_model_chunks

        return build_model_chunks(self.config, overrides, vp)

    def forward(self, model, batch: dict | None):
        if batch is None:
            return model(None, None, None)
        return model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"],
                     audio=batch.get("audio"), audio_lengths=batch.get("audio_lengths"))

    def freeze(self, chunks, args: TrainingArguments) -> None:
        parts = {"encoder": args.freeze_encoder, "adapter": args.freeze_adapter, "llm": args.freeze_llm}
        for chunk in chunks:
            for part, frozen in parts.items():
                module = getattr(chunk, part, None)
                if frozen and module is not None:
                    for p in module.parameters():
                        p.requires_grad_(False)

    def flops_shapes(self) -> tuple[TransformerShape, EncoderShape | None]:
        enc = self.config.encoder
        shape = TransformerShape(enc.num_layers, enc.hidden_size, enc.ffn_hidden_size, enc.num_attention_heads,
                                 enc.num_attention_heads, enc.hidden_size // enc.num_attention_heads,
                                 gated_mlp=False)
        spec = self.frame_spec
        encoder = EncoderShape(shape, enc.num_mel_bins, spec.hop_length, spec.conv_stride,
                               adapter_in=enc.hidden_size * spec.adapter_downsample,
                               adapter_out=self.config.llm.hidden_size, adapter_downsample=spec.adapter_downsample)
        return TransformerShape.of_llm(self.config.llm), encoder


def model_family(args: TrainingArguments, tokenizer):
    """The run's model family with the vocabulary set from the tokenizer."""
    try:
        from megatron_inserter.models import InserterModelConfig
    except ImportError:  # TEMPORARY until models presets land
        return GPTFamily(LLMConfig(num_layers=2, hidden_size=64, ffn_hidden_size=128, num_attention_heads=4,
                                   num_query_groups=2, vocab_size=tokenizer.vocab_size, max_position_embeddings=4096))
    try:
        config = InserterModelConfig.from_name(args.model_preset)
    except (KeyError, ValueError) as e:
        raise ArgumentError(f"--model-preset {args.model_preset!r}: {e}") from None
    config = replace(config, llm=replace(config.llm, vocab_size=tokenizer.vocab_size))
    if args.model_type == "gpt":
        return GPTFamily(config.llm)
    return InserterFamily(config)


def transformer_overrides(args: TrainingArguments, vp: int | None) -> dict:
    """TransformerConfig fields set by the command line (parallelism and precision)."""
    out = dict(
        tensor_model_parallel_size=args.tensor_model_parallel_size,
        pipeline_model_parallel_size=args.pipeline_model_parallel_size,
        virtual_pipeline_model_parallel_size=vp,
        context_parallel_size=args.context_parallel_size,
        sequence_parallel=args.sequence_parallel,
        pipeline_dtype=torch.bfloat16 if args.bf16 else torch.float32,
        bf16=args.bf16,
        params_dtype=torch.float32,  # fp32 master copies; Float16Module casts the compute copy
    )
    if args.fp8_format:
        out.update(fp8=args.fp8_format)
    return out
