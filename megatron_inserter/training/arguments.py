"""``inserter train`` arguments: one dataclass whose fields are Megatron-style flags, an optional YAML file.

    args = parse_args(["--config", "run.yaml", "--lr", "3e-4"])    # command line wins over the file

Every field of ``TrainingArguments`` is the flag ``--field-name`` and the YAML key ``field_name``
(``megatron_inserter.flags``). Booleans take ``--flag`` / ``--no-flag`` (so a command line can undo a
file's ``true``). Unknown flags, unknown YAML keys, abbreviations and missing required values are
``UsageError`` naming the offending flag or key. Checks that need several flags or the machine (batch
divisibility, CUDA-only features) live in ``flag_checks``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from megatron_inserter.errors import UsageError
from megatron_inserter.flags import arg, flag_name, parse_flags
from megatron_inserter.flags import build_parser as _build_parser
from megatron_inserter.flags import load_config_file as _load_config_file

PROG = "inserter train"
DESCRIPTION = "Pre-train an InSerter speech-text model (or a text GPT) on megatron-core."

# A bad flag, value or combination; the message names the flags involved and how to fix it.
ArgumentError = UsageError


@dataclass
class TrainingArguments:
    # Model
    model_type: str = arg("inserter", "inserter (speech encoder + adapter + LLM) or gpt (the LLM alone, text)",
                          choices=["inserter", "gpt"])
    model_preset: str = arg("tiny", "named model preset (megatron_inserter.models presets)")
    encoder_input_mode: str = arg(None, "speech encoder input (default: the preset's): packed (clips share the "
                                  "encoder, each seeing only itself), masked (clips padded to the batch's "
                                  "longest) or window (every clip padded to 30 s, as Whisper)",
                                  choices=["packed", "masked", "window"])
    # Parallelism
    tensor_model_parallel_size: int = arg(1, "tensor-parallel size")
    pipeline_model_parallel_size: int = arg(1, "pipeline-parallel size")
    num_layers_per_virtual_pipeline_stage: int = arg(None, "LLM layers per virtual pipeline stage (interleaved)")
    sequence_parallel: bool = arg(False, "sequence parallelism (needs tensor parallelism)")
    context_parallel_size: int = arg(1, "context-parallel size (needs Transformer Engine on CUDA)")
    distributed_timeout_minutes: int = arg(30, "timeout of collective operations")
    # Batches
    micro_batch_size: int = arg(None, "samples per micro-batch and data-parallel rank", required=True)
    global_batch_size: int = arg(None, "samples per optimizer step (default: micro batch x data parallel)")
    seq_length: int = arg(None, "tokens per sample (speech placeholders included)", required=True)
    # Optimizer and schedule
    lr: float = arg(None, "peak learning rate", required=True)
    min_lr: float = arg(0.0, "learning rate at the end of the decay")
    lr_decay_style: str = arg("cosine", "learning-rate decay",
                              choices=["constant", "linear", "cosine", "inverse-square-root"])
    lr_warmup_iters: int = arg(0, "linear warm-up iterations")
    lr_decay_iters: int = arg(None, "iterations of decay (default: --train-iters)")
    train_iters: int = arg(None, "optimizer steps of the whole run", required=True)
    exit_interval: int = arg(None, "stop (after a checkpoint with --save) when the iteration is a multiple")
    weight_decay: float = arg(0.01, "AdamW weight decay")
    adam_beta1: float = arg(0.9, "Adam beta1")
    adam_beta2: float = arg(0.999, "Adam beta2")
    adam_eps: float = arg(1e-8, "Adam epsilon")
    clip_grad: float = arg(1.0, "gradient clipping by global norm (0 disables)")
    bf16: bool = arg(False, "bf16 parameters and compute with fp32 master weights")
    fp8_format: str = arg(None, "FP8 recipe (Transformer Engine on CUDA only)", choices=["e4m3", "hybrid"])
    use_distributed_optimizer: bool = arg(False, "shard optimizer state over data-parallel ranks (CUDA)")
    # Checkpoints
    save: str = arg(None, "checkpoint directory to write")
    load: str = arg(None, "checkpoint directory (or one iter_XXXXXXX directory) to resume from")
    save_interval: int = arg(None, "iterations between checkpoints (a final one is always written)")
    load_optim: bool = arg(True, "restore the optimizer state on --load")
    load_rng: bool = arg(True, "restore the random-number generator states on --load")
    finetune: bool = arg(False, "load model weights only and start at iteration 0")
    # Evaluation
    skip_train: bool = arg(False, "no training steps: validate once (after --load) and exit")
    eval_interval: int = arg(1000, "iterations between validation runs")
    eval_iters: int = arg(100, "global batches per validation run (0 disables validation)")
    # Data
    data_path: list = arg([], "blend in Megatron syntax: PREFIX ... or WEIGHT PREFIX WEIGHT PREFIX ...",  # noqa: RUF009
                          required=True, metavar="PATH")
    split: str = arg("969,30,1", "train,valid,test proportions of each dataset")
    data_cache_path: str = arg(None, "where sample indices are cached (default: next to the data)")
    num_workers: int = arg(2, "data-loader worker processes per data-loading rank")
    tokenizer_type: str = arg("sentencepiece", "sentencepiece or huggingface")
    tokenizer_model: str = arg(None, "SentencePiece .model file or local Hugging Face tokenizer directory",
                               required=True)
    reset_position_ids: bool = arg(False, "positions restart after every end-of-document token")
    reset_attention_mask: bool = arg(False, "no attention across the documents packed into a sample")
    eod_mask_loss: bool = arg(False, "no loss where the input is an end-of-document token")
    # Freezing
    freeze_encoder: bool = arg(False, "do not train the speech encoder")
    freeze_adapter: bool = arg(False, "do not train the adapter (projector)")
    freeze_llm: bool = arg(False, "do not train the language model")
    # Logging
    log_interval: int = arg(100, "iterations between log lines")
    tensorboard_dir: str = arg(None, "write TensorBoard events here")
    log_dir: str = arg(None, "metrics.jsonl, loss_curve.png and summary.json (default: SAVE/logs)")
    after_speech_window: int = arg(16, "text targets after a speech span counted as 'after speech'")
    peak_tflops: float = arg(None, "per-device peak TFLOP/s for MFU (default: known GPUs' bf16 dense peak)")
    seed: int = arg(1234, "random seed")
    # Memory plan (``inserter plan``), checked before training starts
    gpu_memory_gib: float = arg(None, "GPU memory to plan for (default: the GPU's own, or --gpu's for inserter "
                                      "plan; without CUDA the check runs only when this is given)")
    plan_check: bool = arg(True, "refuse to start when the memory plan says a GPU would run out of memory "
                                 "(--no-plan-check starts anyway)")
    config: str = arg(None, "YAML file of defaults (keys are flag names with underscores)")

    def to_dict(self) -> dict:
        return asdict(self)


def flag(name: str) -> str:
    """``micro_batch_size`` -> ``--micro-batch-size``."""
    return flag_name(name)


def build_parser():
    return _build_parser(TrainingArguments, PROG, DESCRIPTION)


def load_config_file(path: str) -> dict:
    """Flag values from a YAML file whose keys are field names."""
    return _load_config_file(path, TrainingArguments)


def parse_args(argv: Sequence[str] | None = None) -> TrainingArguments:
    import sys

    return parse_flags(TrainingArguments, sys.argv[1:] if argv is None else list(argv), PROG, DESCRIPTION)
