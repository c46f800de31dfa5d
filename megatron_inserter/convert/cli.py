"""``inserter convert``: Hugging Face <-> megatron-inserter checkpoints.

    inserter convert hf-to-mcore --hf-dir Qwen2-Audio-7B --output ckpt/qwen2-audio [--target-tensor-parallel-size 4]
    inserter convert hf-to-mcore --llm Qwen2.5-7B --encoder whisper-large-v3 --output ckpt/inserter
    inserter convert mcore-to-hf --load ckpt/run --output hf/run [--llm-only]

hf-to-mcore writes a dist checkpoint that ``inserter train --load DIR --finetune`` reads at any TP/PP, with
``model_config.json`` (the model's shapes) next to it. mcore-to-hf writes config.json + safetensors loadable by
transformers (Qwen2AudioForConditionalGeneration, or Qwen2ForCausalLM / LlamaForCausalLM with --llm-only).
"""

from __future__ import annotations

import argparse
import os
import sys

from megatron_inserter.convert.errors import ConversionError

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local directories only: never reach a model hub


def _size(text: str) -> int:
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    try:
        return int(float(text[:-1]) * units[text[-1]]) if text[-1:] in units else int(text)
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 5G, 500M, 1000000)") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="inserter convert", allow_abbrev=False,
                                description="Convert checkpoints between Hugging Face and megatron-inserter.")
    sub = p.add_subparsers(dest="direction", required=True)

    imp = sub.add_parser("hf-to-mcore", allow_abbrev=False, help="Hugging Face directory -> dist checkpoint")
    src = imp.add_argument_group("source (one of --hf-dir, or --llm with --encoder)")
    src.add_argument("--hf-dir", help="a Qwen2 / Qwen2.5 / Llama 3 model or a whole Qwen2-Audio model")
    src.add_argument("--llm", help="language model directory, combined with --encoder and a fresh adapter")
    src.add_argument("--encoder", help="Whisper directory (WhisperModel / WhisperForConditionalGeneration)")
    imp.add_argument("--output", required=True, help="checkpoint directory to create (must not exist)")
    imp.add_argument("--target-tensor-parallel-size", type=int, default=1,
                     help="largest tensor-parallel size planned (checks head counts, pads the vocabulary); "
                          "the checkpoint loads at any TP/PP (default: 1)")
    imp.add_argument("--dtype", choices=["auto", "bf16", "fp16", "fp32"], default="auto",
                     help="weight dtype written (default: auto, the source's)")
    imp.add_argument("--seed", type=int, default=1234, help="seed of the fresh adapter (--llm/--encoder)")
    imp.add_argument("--audio-placeholder-id", type=int, default=None,
                     help="<|AUDIO|> token id (--llm/--encoder; default: from the LLM's tokenizer.json)")
    imp.add_argument("--encoder-input-mode", choices=["masked", "window"], default="masked",
                     help="encoder input handling of the composed model (default: masked)")

    exp = sub.add_parser("mcore-to-hf", allow_abbrev=False, help="dist checkpoint -> Hugging Face directory")
    exp.add_argument("--load", required=True, help="checkpoint root (with latest_checkpointed_iteration.txt) or "
                                                   "one iter_XXXXXXX directory")
    exp.add_argument("--output", required=True, help="Hugging Face directory to create (must not exist)")
    exp.add_argument("--llm-only", action="store_true",
                     help="write the language model alone (Qwen2 / Llama) instead of the whole Qwen2-Audio")
    exp.add_argument("--model-config", default=None,
                     help="model_config.json describing the checkpoint (default: the one next to --load)")
    exp.add_argument("--dtype", choices=["auto", "bf16", "fp16", "fp32"], default="auto",
                     help="weight dtype written (default: auto, the checkpoint's)")
    exp.add_argument("--max-shard-size", type=_size, default="5G",
                     help="split the safetensors files above this size (default: 5G)")
    return p


def run(args: argparse.Namespace) -> str:
    from megatron_inserter.convert import hf_to_mcore, mcore_to_hf

    if args.direction == "mcore-to-hf":
        return mcore_to_hf.export(args.load, args.output, llm_only=args.llm_only, dtype=args.dtype,
                                  max_shard_bytes=args.max_shard_size, model_config_path=args.model_config)
    tp = args.target_tensor_parallel_size
    if args.hf_dir and (args.llm or args.encoder):
        raise ConversionError("give either --hf-dir or --llm with --encoder, not both")
    if args.hf_dir:
        return hf_to_mcore.convert(args.hf_dir, args.output, tp, args.dtype)
    if not (args.llm and args.encoder):
        raise ConversionError("hf-to-mcore needs --hf-dir, or both --llm and --encoder")
    return hf_to_mcore.compose(args.llm, args.encoder, args.output, tp, args.dtype, seed=args.seed,
                               audio_placeholder_id=args.audio_placeholder_id,
                               encoder_input_mode=args.encoder_input_mode)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        out = run(args)
    except ConversionError as e:
        print(f"inserter convert: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
