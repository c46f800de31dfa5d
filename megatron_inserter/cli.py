"""The ``inserter`` command: one entry point, one module per command (imported only when used)."""

from __future__ import annotations

import importlib
import sys

# command -> (module with main(argv) -> int, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("megatron_inserter.data.synth.cli", "synthesize interleaved speech-text webdataset shards"),
    "train-tokenizer": ("megatron_inserter.data.indexed.tokenizer_cli", "train a SentencePiece tokenizer"),
    "preprocess": ("megatron_inserter.data.indexed.preprocess_cli", "shards/jsonl -> Megatron indexed datasets"),
    "train": ("megatron_inserter.training.cli", "pre-train (torchrun or srun)"),
    "demo": ("megatron_inserter.demo", "end-to-end CPU demo: synth -> preprocess -> train -> generate"),
    "convert": ("megatron_inserter.convert.cli", "Hugging Face <-> megatron-inserter checkpoints"),
    "generate": ("megatron_inserter.inference.cli", "generate from a speech+text prompt"),
    "eval": ("megatron_inserter.eval.cli", "SpeechInstructBench, ASR WER, audio QA, compare results"),
}


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def usage() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = ["usage: inserter <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`inserter <command> --help` describes a command's options."]
    return "\n".join(lines)


# megatron-core announces each missing GPU library on import; on a CPU machine that is the expected state.
_EXPECTED_WARNINGS = (r"Transformer Engine and Apex are not installed.*", r"Apex is not installed.*")


def main(argv: list[str] | None = None) -> int:
    import warnings

    if not _cuda_available():
        for message in _EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"inserter: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
