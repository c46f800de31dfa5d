"""A trained or converted checkpoint, ready to generate: tokenizer + model at TP=PP=1 with its weights.

The model is built from the ``model_config.json`` the checkpoint carries (its shapes and the vocabulary it
was built with); the checkpoint's own arguments name the tokenizer, so ``--load DIR`` is all a user gives.
Flags override only the runtime (precision) and the tokenizer. A converted checkpoint without training
arguments takes the tokenizer copied next to it (``hf_assets``). Weights load from a checkpoint saved at
any TP/PP (dist checkpoints reshard on load).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass

import torch

from megatron_inserter.data.tokenizers import build_tokenizer
from megatron_inserter.errors import UsageError
from megatron_inserter.models import config_file
from megatron_inserter.runtime import ParallelConfig, initialize_parallel
from megatron_inserter.training.arguments import TrainingArguments
from megatron_inserter.training.checkpointing import (
    CheckpointError,
    TrainState,
    checkpoint_args,
    load_checkpoint,
    model_config_path,
    resolve_load_dir,
)
from megatron_inserter.training.models import model_family, transformer_overrides

logger = logging.getLogger(__name__)
HF_ASSETS = "hf_assets"  # where conversion copies the source's tokenizer files


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


def model_of(load_dir: str, args: TrainingArguments) -> tuple[str, str]:
    """(model type, ``--model-preset`` value) of the checkpoint: its ``model_config.json``, or for a
    checkpoint saved before checkpoints carried one, the preset its arguments name."""
    found = model_config_path(load_dir)
    if found is None:
        logger.warning("%s has no %s; building the model from its arguments (--model-preset %s)", load_dir,
                       config_file.FILE_NAME, args.model_preset)
        return args.model_type, args.model_preset
    return config_file.read(found).model_type, found


def tokenizer_of(load_dir: str, args: TrainingArguments, tokenizer_model: str | None) -> tuple[str, str]:
    """(tokenizer type, path): ``tokenizer_model`` if given, else the training run's, else ``hf_assets``."""
    if tokenizer_model:
        kind = "huggingface" if os.path.isdir(tokenizer_model) else args.tokenizer_type
        return kind, tokenizer_model
    if args.tokenizer_model:
        return args.tokenizer_type, args.tokenizer_model
    ckpt = resolve_load_dir(load_dir) or load_dir
    for directory in (os.path.dirname(os.path.abspath(ckpt)), os.path.abspath(load_dir)):
        assets = os.path.join(directory, HF_ASSETS)
        if os.path.isfile(os.path.join(assets, "tokenizer.json")):
            return "huggingface", assets
    raise UsageError(f"{load_dir} names no tokenizer; pass --tokenizer-model (a SentencePiece .model file or a "
                     "Hugging Face tokenizer directory)")


def load_for_inference(load_dir: str, tokenizer_model: str | None = None, bf16: bool | None = None,
                       initialize: bool = True) -> LoadedModel:
    """Collective over the data-parallel group when it is already initialized (``initialize=False``)."""
    if resolve_load_dir(load_dir) is None:
        raise CheckpointError(f"--load {load_dir} holds no published checkpoint (no latest_checkpointed_iteration"
                              ".txt); give a training --save directory or a converted checkpoint")
    args = training_arguments(load_dir)
    model_type, preset = model_of(load_dir, args)
    if model_type != "inserter":
        raise UsageError(f"{load_dir} holds a --model-type {model_type} checkpoint; generation from speech needs "
                         "an InSerter model")
    tokenizer_type, tokenizer_path = tokenizer_of(load_dir, args, tokenizer_model)
    cuda = torch.cuda.is_available()
    use_bf16 = args.bf16 and cuda if bf16 is None else bf16
    args = dataclasses.replace(
        args, model_type=model_type, model_preset=preset, tensor_model_parallel_size=1,
        pipeline_model_parallel_size=1, context_parallel_size=1, num_layers_per_virtual_pipeline_stage=None,
        sequence_parallel=False, fp8_format=None, bf16=use_bf16, tokenizer_type=tokenizer_type,
        tokenizer_model=tokenizer_path)
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
