"""``inserter train`` arguments: one dataclass, Megatron-style flags generated from it, an optional YAML file.

    args = parse_args(["--config", "run.yaml", "--lr", "3e-4"])    # command line wins over the file

Every field of ``TrainingArguments`` is the flag ``--field-name`` and the YAML key ``field_name``. Booleans
take ``--flag`` / ``--no-flag`` (so a command line can undo a file's ``true``). Unknown flags, unknown YAML
keys, abbreviations and missing required values are errors naming the offending flag or key.
Cross-flag and environment checks (batch divisibility, CUDA-only features) live in ``validation``.
"""

import argparse
import os
import sys
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields


class ArgumentError(ValueError):
    """A bad flag, value or combination; the message names the flags involved and how to fix it."""


def _arg(default=MISSING, help: str = "", choices=None, required: bool = False):
    meta = {"help": help, "choices": choices, "required": required}
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata=meta)
    return field(default=None if default is MISSING else default, metadata=meta)


@dataclass
class TrainingArguments:
    # Model
    model_type: str = _arg("inserter", "inserter (speech encoder + adapter + LLM) or gpt (the LLM alone, text)",
                           choices=["inserter", "gpt"])
    model_preset: str = _arg("tiny", "named model preset (megatron_inserter.models presets)")
    # Parallelism
    tensor_model_parallel_size: int = _arg(1, "tensor-parallel size")
    pipeline_model_parallel_size: int = _arg(1, "pipeline-parallel size")
    num_layers_per_virtual_pipeline_stage: int = _arg(None, "LLM layers per virtual pipeline stage (interleaved)")
    sequence_parallel: bool = _arg(False, "sequence parallelism (needs tensor parallelism)")
    context_parallel_size: int = _arg(1, "context-parallel size (needs Transformer Engine on CUDA)")
    distributed_timeout_minutes: int = _arg(30, "timeout of collective operations")
    # Batches
    micro_batch_size: int = _arg(None, "samples per micro-batch and data-parallel rank", required=True)
    global_batch_size: int = _arg(None, "samples per optimizer step (default: micro batch x data parallel)")
    seq_length: int = _arg(None, "tokens per sample (speech placeholders included)", required=True)
    # Optimizer and schedule
    lr: float = _arg(None, "peak learning rate", required=True)
    min_lr: float = _arg(0.0, "learning rate at the end of the decay")
    lr_decay_style: str = _arg("cosine", "learning-rate decay",
                               choices=["constant", "linear", "cosine", "inverse-square-root"])
    lr_warmup_iters: int = _arg(0, "linear warm-up iterations")
    lr_decay_iters: int = _arg(None, "iterations of decay (default: --train-iters)")
    train_iters: int = _arg(None, "optimizer steps of the whole run", required=True)
    exit_interval: int = _arg(None, "stop (after a checkpoint with --save) when the iteration is a multiple")
    weight_decay: float = _arg(0.01, "AdamW weight decay")
    adam_beta1: float = _arg(0.9, "Adam beta1")
    adam_beta2: float = _arg(0.999, "Adam beta2")
    adam_eps: float = _arg(1e-8, "Adam epsilon")
    clip_grad: float = _arg(1.0, "gradient clipping by global norm (0 disables)")
    bf16: bool = _arg(False, "bf16 parameters and compute with fp32 master weights")
    fp8_format: str = _arg(None, "FP8 recipe (Transformer Engine on CUDA only)", choices=["e4m3", "hybrid"])
    use_distributed_optimizer: bool = _arg(False, "shard optimizer state over data-parallel ranks (CUDA)")
    # Checkpoints
    save: str = _arg(None, "checkpoint directory to write")
    load: str = _arg(None, "checkpoint directory (or one iter_XXXXXXX directory) to resume from")
    save_interval: int = _arg(None, "iterations between checkpoints (a final one is always written)")
    load_optim: bool = _arg(True, "restore the optimizer state on --load")
    load_rng: bool = _arg(True, "restore the random-number generator states on --load")
    finetune: bool = _arg(False, "load model weights only and start at iteration 0")
    # Evaluation
    skip_train: bool = _arg(False, "no training steps: validate once (after --load) and exit")
    eval_interval: int = _arg(1000, "iterations between validation runs")
    eval_iters: int = _arg(100, "global batches per validation run (0 disables validation)")
    # Data
    data_path: list = _arg([], "blend in Megatron syntax: PREFIX or WEIGHT PREFIX WEIGHT PREFIX ...")  # noqa: RUF009
    split: str = _arg("969,30,1", "train,valid,test proportions of each dataset")
    data_cache_path: str = _arg(None, "where sample indices are cached (default: next to the data)")
    num_workers: int = _arg(2, "data-loader worker processes per data-loading rank")
    tokenizer_type: str = _arg("sentencepiece", "sentencepiece or huggingface")
    tokenizer_model: str = _arg(None, "SentencePiece .model file or local Hugging Face tokenizer directory",
                                required=True)
    # Freezing
    freeze_encoder: bool = _arg(False, "do not train the speech encoder")
    freeze_adapter: bool = _arg(False, "do not train the adapter (projector)")
    freeze_llm: bool = _arg(False, "do not train the language model")
    # Logging
    log_interval: int = _arg(100, "iterations between log lines")
    tensorboard_dir: str = _arg(None, "write TensorBoard events here")
    log_dir: str = _arg(None, "metrics.jsonl, loss_curve.png and summary.json (default: SAVE/logs)")
    after_speech_window: int = _arg(16, "text targets after a speech span counted as 'after speech'")
    peak_tflops: float = _arg(None, "per-device peak TFLOP/s for MFU (default: known GPUs' bf16 dense peak)")
    seed: int = _arg(1234, "random seed")
    config: str = _arg(None, "YAML file of defaults (keys are flag names with underscores)")

    def to_dict(self) -> dict:
        return asdict(self)


_HINTS = typing.get_type_hints(TrainingArguments)
_FIELDS = {f.name: f for f in fields(TrainingArguments)}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _scalar_type(name: str):
    t = _HINTS[name]
    return {int: int, float: float, str: str, bool: bool, list: list}[t]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # raise instead of exiting, so callers decide how to report
        raise ArgumentError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="inserter train", allow_abbrev=False, argument_default=argparse.SUPPRESS,
                description="Pre-train an InSerter speech-text model (or a text GPT) on megatron-core.")
    for name, f in _FIELDS.items():
        kind = _scalar_type(name)
        help_text = f.metadata["help"] + ("" if f.metadata["required"] else f" (default: {_default(name)})")
        if kind is bool:
            p.add_argument(flag(name), action=argparse.BooleanOptionalAction, help=help_text)
        elif kind is list:
            p.add_argument(flag(name), nargs="+", metavar="STR", help=help_text)
        else:
            metavar = None if f.metadata["choices"] else {int: "N", float: "X", str: "STR"}[kind]
            p.add_argument(flag(name), type=kind, choices=f.metadata["choices"], metavar=metavar, help=help_text)
    return p


def _default(name: str):
    f = _FIELDS[name]
    return f.default_factory() if f.default_factory is not MISSING else f.default


def _coerce(name: str, value, origin: str):
    """A YAML value -> the field's type, or an error naming the key."""
    kind = _scalar_type(name)
    if value is None:
        return None
    try:
        if kind is bool:
            if not isinstance(value, bool):
                raise TypeError
            return value
        if kind is list:
            if isinstance(value, str):
                return value.split()
            if not isinstance(value, (list, tuple)):
                raise TypeError
            return [str(v) for v in value]
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise TypeError
        if kind is int and isinstance(value, bool):
            raise TypeError
        out = kind(value)
    except (TypeError, ValueError):
        raise ArgumentError(f"{origin}: {name}: {value!r} is not a valid {kind.__name__}") from None
    choices = _FIELDS[name].metadata["choices"]
    if choices and out not in choices:
        raise ArgumentError(f"{origin}: {name}: {out!r} is not one of {choices}")
    return out


def load_config_file(path: str) -> dict:
    import yaml

    if not os.path.isfile(path):
        raise ArgumentError(f"--config {path!r} does not exist")
    with open(path, encoding="utf-8") as fh:
        try:
            data = yaml.safe_load(fh) or {}
        except yaml.YAMLError as e:
            raise ArgumentError(f"--config {path!r} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ArgumentError(f"--config {path!r} must hold a mapping of flag names to values")
    unknown = sorted(k for k in data if str(k) not in _FIELDS or k == "config")
    if unknown:
        hint = [k for k in unknown if str(k).replace("-", "_") in _FIELDS]
        extra = f" (write {', '.join(str(k).replace('-', '_') for k in hint)} with underscores)" if hint else ""
        raise ArgumentError(f"--config {path!r}: unknown keys {unknown}{extra}")
    return {k: _coerce(k, v, f"--config {path!r}") for k, v in data.items()}


def parse_args(argv: list[str] | None = None) -> TrainingArguments:
    argv = sys.argv[1:] if argv is None else list(argv)
    given = vars(build_parser().parse_args(argv))
    values = {name: _default(name) for name in _FIELDS}
    if given.get("config"):
        values.update(load_config_file(given["config"]))
    values.update(given)
    missing = [flag(n) for n, f in _FIELDS.items() if f.metadata["required"] and values[n] in (None, [])]
    if not values["data_path"]:
        missing.append("--data-path")
    if missing:
        raise ArgumentError(f"missing required arguments: {', '.join(missing)} (on the command line or in --config)")
    return TrainingArguments(**values)
