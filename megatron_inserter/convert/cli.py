"""``inserter convert``: Hugging Face <-> megatron-inserter checkpoints.

    inserter convert hf-to-mcore --hf-dir Qwen2-Audio-7B --output ckpt/qwen2-audio [--target-tensor-parallel-size 4]
    inserter convert hf-to-mcore --llm Qwen2.5-7B --encoder whisper-large-v3 --output ckpt/inserter
    inserter convert mcore-to-hf --load runs/demo/train --output hf/demo [--llm-only]

hf-to-mcore writes a dist checkpoint that ``inserter train --load DIR --finetune`` reads at any TP/PP, with
``model_config.json`` (the model's shapes) next to it. mcore-to-hf reads the ``model_config.json`` every
converted or trained checkpoint carries and writes config.json + safetensors loadable by transformers
(Qwen2AudioForConditionalGeneration, or Qwen2ForCausalLM / LlamaForCausalLM with --llm-only).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from megatron_inserter.errors import UsageError
from megatron_inserter.flags import arg, run_subcommands
from megatron_inserter.models.config import ADAPTER_KINDS, INPUT_MODES

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local directories only: never reach a model hub

DTYPES = ["auto", "bf16", "fp16", "fp32"]
_SOURCE = "source (one of --hf-dir, or --llm with --encoder)"


@dataclass
class HfToMcoreFlags:
    hf_dir: str | None = arg(None, "a Qwen2 / Qwen2.5 / Llama 3 model or a whole Qwen2-Audio model", metavar="DIR",
                             group=_SOURCE)
    llm: str | None = arg(None, "language model directory, combined with --encoder and a fresh adapter",
                          metavar="DIR", group=_SOURCE)
    encoder: str | None = arg(None, "Whisper directory (WhisperModel / WhisperForConditionalGeneration)",
                              metavar="DIR", group=_SOURCE)
    output: str = arg(None, "checkpoint directory to create (must not exist)", required=True, metavar="DIR")
    target_tensor_parallel_size: int = arg(1, "largest tensor-parallel size planned (checks head counts, pads the "
                                              "vocabulary); the checkpoint loads at any TP/PP")
    dtype: str = arg("auto", "weight dtype written (auto: the source's)", choices=DTYPES)
    seed: int = arg(1234, "seed of the fresh adapter (--llm/--encoder)")
    audio_placeholder_id: int | None = arg(None, "<|AUDIO|> token id (--llm/--encoder; default: from the LLM's "
                                                 "tokenizer.json)")
    encoder_input_mode: str = arg("masked", "encoder input handling of the composed model", choices=INPUT_MODES)
    adapter: str = arg("pool-linear", "fresh adapter of the composed model (--llm/--encoder): pool-linear "
                                      "(Qwen2-Audio's), stack-mlp, or qformer (DeSTA2's: 64 queries per tapped "
                                      "encoder layer, 64 frames per 30 s window)", choices=ADAPTER_KINDS)


@dataclass
class McoreToHfFlags:
    load: str = arg(None, "checkpoint root (with latest_checkpointed_iteration.txt) or one iter_XXXXXXX directory",
                    required=True, metavar="DIR")
    output: str = arg(None, "Hugging Face directory to create (must not exist)", required=True, metavar="DIR")
    llm_only: bool = arg(False, "write the language model alone (Qwen2 / Llama) instead of the whole Qwen2-Audio")
    model_config: str | None = arg(None, "model_config.json describing the checkpoint (default: the one the "
                                         "checkpoint carries)", metavar="FILE")
    dtype: str = arg("auto", "weight dtype written (auto: the checkpoint's)", choices=DTYPES)
    max_shard_size: str = arg("5G", "split the safetensors files above this size (e.g. 5G, 500M, 1000000)",
                              metavar="SIZE")


def parse_size(text: str) -> int:
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    norm = text.strip().upper().removesuffix("B").removesuffix("I")
    try:
        size = int(float(norm[:-1]) * units[norm[-1]]) if norm[-1:] in units else int(norm)
    except (ValueError, IndexError):
        size = 0
    if size <= 0:
        raise UsageError(f"--max-shard-size {text!r} is not a size (e.g. 5G, 500M, 1000000)")
    return size


def hf_to_mcore(flags: HfToMcoreFlags) -> int:
    from megatron_inserter.convert import hf_to_mcore as convert

    if flags.hf_dir and (flags.llm or flags.encoder):
        raise UsageError("give either --hf-dir or --llm with --encoder, not both")
    tp = flags.target_tensor_parallel_size
    if flags.hf_dir:
        out = convert.convert(flags.hf_dir, flags.output, tp, flags.dtype)
    elif flags.llm and flags.encoder:
        out = convert.compose(flags.llm, flags.encoder, flags.output, tp, flags.dtype, seed=flags.seed,
                              audio_placeholder_id=flags.audio_placeholder_id,
                              encoder_input_mode=flags.encoder_input_mode, adapter=flags.adapter)
    else:
        raise UsageError("hf-to-mcore needs --hf-dir, or both --llm and --encoder")
    print(f"wrote {out}")
    return 0


def mcore_to_hf(flags: McoreToHfFlags) -> int:
    from megatron_inserter.convert import mcore_to_hf as export

    out = export.export(flags.load, flags.output, llm_only=flags.llm_only, dtype=flags.dtype,
                        max_shard_bytes=parse_size(flags.max_shard_size), model_config_path=flags.model_config)
    print(f"wrote {out}")
    return 0


COMMANDS = {
    "hf-to-mcore": (HfToMcoreFlags, hf_to_mcore, "Hugging Face directory -> dist checkpoint"),
    "mcore-to-hf": (McoreToHfFlags, mcore_to_hf, "dist checkpoint (converted or trained) -> Hugging Face directory"),
}


def main(argv: list[str] | None = None) -> int:
    return run_subcommands("inserter convert", COMMANDS, argv, description=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
