"""A trained checkpoint, ready to generate: tokenizer + model at TP=PP=1 with the checkpoint's weights.

The checkpoint's own arguments say which preset, vocabulary and tokenizer it was trained with, so
``--load DIR`` is all a user gives. Weights load from a checkpoint saved at any TP/PP (dist checkpoints
reshard on load).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from megatron_inserter.data.tokenizers import build_tokenizer
from megatron_inserter.runtime import ParallelConfig, initialize_parallel
from megatron_inserter.training.arguments import TrainingArguments
from megatron_inserter.training.checkpointing import TrainState, checkpoint_args, load_checkpoint
from megatron_inserter.training.models import model_family, transformer_overrides


@dataclass
class LoadedModel:
    model: object  # InserterModel, eval mode
    tokenizer: object
    config: object  # InserterModelConfig
    args: TrainingArguments


def training_arguments(load_dir: str) -> TrainingArguments:
    saved = checkpoint_args(load_dir)
    known = {f.name for f in dataclasses.fields(TrainingArguments)}
    return TrainingArguments(**{k: v for k, v in saved.items() if k in known})


def load_for_inference(load_dir: str, tokenizer_model: str | None = None, bf16: bool | None = None,
                       initialize: bool = True) -> LoadedModel:
    """Collective over the data-parallel group when it is already initialized (``initialize=False``)."""
    args = training_arguments(load_dir)
    if args.model_type != "inserter":
        raise ValueError(f"{load_dir} holds a --model-type {args.model_type} checkpoint; generation from "
                         "speech needs an InSerter model")
    cuda = torch.cuda.is_available()
    use_bf16 = args.bf16 and cuda if bf16 is None else bf16
    args = dataclasses.replace(
        args, tensor_model_parallel_size=1, pipeline_model_parallel_size=1, context_parallel_size=1,
        num_layers_per_virtual_pipeline_stage=None, sequence_parallel=False, fp8_format=None, bf16=use_bf16,
        tokenizer_model=tokenizer_model or args.tokenizer_model)
    tokenizer = build_tokenizer(args.tokenizer_type, args.tokenizer_model)
    family = model_family(args, tokenizer)
    if initialize:
        initialize_parallel(ParallelConfig(seed=args.seed))
    (model,) = family.build_chunks(transformer_overrides(args, None), None)
    load_checkpoint(load_dir, [model], None, None, TrainState(), finetune=True)
    if cuda:
        model = model.cuda()
    if use_bf16:
        model = model.to(torch.bfloat16)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, config=family.config, args=args)
