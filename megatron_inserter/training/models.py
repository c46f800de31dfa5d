"""The model a run trains, behind one interface: InSerter (speech encoder + adapter + LLM) or the LLM alone.

    family = model_family(args, tokenizer)           # configs only: works before process groups exist
    chunks = family.build_chunks(transformer_overrides(args, vp), vp)
    loss = family.forward(chunk, batch)              # per-token losses [b, s] on the last stage

``--reset-attention-mask`` / ``--reset-position-ids`` give a family ``documents`` (``models.documents``): each
micro-batch's document layout comes from its tokens, on every pipeline stage that has the batch.
    flops = family.step_flops(seq_length, num_sequences, clip_lengths)   # model FLOPs of a training step
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from megatron_inserter.data.frames import FrameSpec
from megatron_inserter.models.context_parallel import slice_batch_for_cp
from megatron_inserter.models.documents import DocumentOptions, run_language_model
from megatron_inserter.models.llm import LLMConfig, build_gpt, build_pipeline_chunks, transformer_config
from megatron_inserter.training.arguments import ArgumentError, TrainingArguments


@dataclass
class GPTFamily:
    """``--model-type gpt``: the preset's language model on text (speech spans are plain tokens)."""

    llm: LLMConfig
    spec: FrameSpec  # the preset's, so both model types read the same samples from the same data
    with_audio: bool = False
    documents: DocumentOptions | None = None
    documents_as_thd: bool | None = None  # None: THD when Transformer Engine runs (see models.documents)

    @property
    def num_layers(self) -> int:
        return self.llm.num_layers

    @property
    def frame_spec(self) -> FrameSpec:
        return self.spec

    def build_chunks(self, overrides: dict, vp: int | None) -> list:
        config = transformer_config(self.llm, **overrides)
        tp = overrides.get("tensor_model_parallel_size", 1)
        return build_pipeline_chunks(partial(build_gpt, self.llm, config, tensor_model_parallel_size=tp), vp)

    def forward(self, model, batch: dict | None):
        if batch is None:  # a middle pipeline stage: the input arrives from the previous stage
            return model(None, None, None)
        if self.documents is not None:
            from megatron_inserter.models.specs import use_transformer_engine

            te = use_transformer_engine()
            thd = (te if self.documents_as_thd is None else self.documents_as_thd) and \
                self.documents.reset_attention_mask
            return run_language_model(model, batch["tokens"], batch["position_ids"], batch["labels"],
                                      self.documents.layout(batch["tokens"]), thd, te)
        batch = slice_batch_for_cp(batch)  # GPTModel takes this rank's part of the sequence
        return model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"])

    def step_flops(self, seq_length: int, num_sequences: int, clip_lengths: list[int]) -> float:
        from megatron_inserter.models.flops import llm_forward_flops

        return 3 * llm_forward_flops(self.llm, seq_length, num_sequences)


@dataclass
class InserterFamily:
    """``--model-type inserter``: megatron_inserter.models.InserterModel from a named preset."""

    config: object  # models.InserterModelConfig (vocabulary, placeholder id and freeze switches set)
    with_audio: bool = True
    documents: DocumentOptions | None = None

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
        from megatron_inserter.models.builder import build_model_chunks

        return build_model_chunks(self.config, **overrides)

    def forward(self, model, batch: dict | None):
        if batch is None:
            return model(None, None, None)
        layout = None if self.documents is None else self.documents.layout(batch["tokens"])
        return model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"],
                     audio=batch.get("audio"), audio_lengths=batch.get("audio_lengths"), documents=layout)

    def step_flops(self, seq_length: int, num_sequences: int, clip_lengths: list[int]) -> float:
        from megatron_inserter.models.flops import training_flops

        parts = training_flops(self.config, seq_length, num_sequences, clip_lengths)
        return parts["llm"] + parts["encoder"]


def document_options(args: TrainingArguments, eod_id: int) -> DocumentOptions | None:
    """The document switches of the run, refused where they cannot hold (named flags, one line)."""
    from megatron_inserter.models.specs import use_transformer_engine

    options = DocumentOptions(eod_id, args.reset_attention_mask, args.reset_position_ids)
    if not options.active:
        return None
    if args.context_parallel_size > 1:
        raise ArgumentError("--reset-attention-mask / --reset-position-ids do not run with --context-parallel-size "
                            f"{args.context_parallel_size} (THD packing under context parallelism needs padded "
                            "documents); use --context-parallel-size 1")
    if options.reset_position_ids and not options.reset_attention_mask and use_transformer_engine():
        raise ArgumentError("--reset-position-ids without --reset-attention-mask is not supported with Transformer "
                            "Engine (its fused RoPE takes one position per sequence index); add "
                            "--reset-attention-mask")
    if args.pipeline_model_parallel_size > 2:
        raise ArgumentError("--reset-attention-mask / --reset-position-ids need the tokens on every pipeline stage; "
                            f"middle stages of --pipeline-model-parallel-size {args.pipeline_model_parallel_size} "
                            "read no data: use a pipeline-parallel size of at most 2")
    return options


def model_family(args: TrainingArguments, tokenizer):
    """The run's model family: the preset with the tokenizer's vocabulary, the encoder input mode, the freeze
    and document flags applied."""
    import dataclasses

    from megatron_inserter.models.presets import resolve

    try:
        config = resolve(args.model_preset).with_tokenizer(tokenizer)
        if args.encoder_input_mode is not None:
            config = config.replace(encoder=dataclasses.replace(config.encoder, input_mode=args.encoder_input_mode))
    except ValueError as e:
        raise ArgumentError(f"--model-preset {args.model_preset!r}: {e}") from None
    documents = document_options(args, tokenizer.eod_id)
    if args.model_type == "gpt":
        return GPTFamily(config.llm, config.frame_spec(), documents=documents)
    return InserterFamily(config.replace(freeze_encoder=args.freeze_encoder, freeze_adapter=args.freeze_adapter,
                                         freeze_llm=args.freeze_llm), documents=documents)


def transformer_overrides(args: TrainingArguments, vp: int | None) -> dict:
    """TransformerConfig fields set by the command line (parallelism and precision)."""
    out = {
        "tensor_model_parallel_size": args.tensor_model_parallel_size,
        "pipeline_model_parallel_size": args.pipeline_model_parallel_size,
        "virtual_pipeline_model_parallel_size": vp,
        "context_parallel_size": args.context_parallel_size,
        "sequence_parallel": args.sequence_parallel,
        "pipeline_dtype": torch.bfloat16 if args.bf16 else torch.float32,
        "bf16": args.bf16,
        "params_dtype": torch.float32,  # fp32 master copies; Float16Module casts the compute copy
    }
    if args.fp8_format:
        out.update(fp8=args.fp8_format)
    return out
