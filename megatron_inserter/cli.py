"""The ``inserter`` command: one entry point, one module per command (imported only when used).

Every command declares its flags as a dataclass (``megatron_inserter.flags``) and reports errors as one
line ``inserter <command>: error: ...``; ``--debug`` (anywhere on the line, or ``INSERTER_DEBUG=1``) shows
the traceback instead. ``inserter <command> --help`` imports neither torch nor megatron-core.
"""

from __future__ import annotations

import difflib
import glob
import importlib
import os
import sys

# command -> (module with main(argv) -> int, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("megatron_inserter.data.synth.cli", "synthesize interleaved speech-text webdataset shards"),
    "train-tokenizer": ("megatron_inserter.data.indexed.tokenizer_cli", "train a SentencePiece tokenizer"),
    "preprocess": ("megatron_inserter.data.indexed.preprocess_cli", "shards/jsonl -> Megatron indexed datasets"),
    "train": ("megatron_inserter.training.cli", "pre-train (torchrun or srun)"),
    "plan": ("megatron_inserter.training.plan_cli", "will a training run fit in GPU memory, how long will it take"),
    "demo": ("megatron_inserter.demo.cli", "end-to-end CPU demo: synth -> preprocess -> train -> generate"),
    "convert": ("megatron_inserter.convert.cli", "Hugging Face <-> megatron-inserter checkpoints"),
    "generate": ("megatron_inserter.inference.cli", "generate from a speech+text prompt"),
    "eval": ("megatron_inserter.eval.cli", "SpeechInstructBench, ASR WER, audio QA, compare results"),
    "desta": ("megatron_inserter.desta.cli", "DeSTA2 alignment data: seed transcripts, the LLM's own answers"),
    "synth-filter": ("megatron_inserter.data.synth.filter_cli", "check synthesized shards by ASR round trip"),
}


def usage() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = ["usage: inserter <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`inserter <command> --help` describes a command's options; --debug shows tracebacks of errors."]
    return "\n".join(lines)


def unknown_command(name: str) -> str:
    """The error line for a command that does not exist, with the closest one when there is one."""
    close = difflib.get_close_matches(name, list(COMMANDS), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else f"; choose from {', '.join(COMMANDS)}"
    return f"inserter: error: unknown command {name!r}{hint}"


def gpu_visible() -> bool:
    """Whether this process could see an NVIDIA GPU, decided without importing torch (so --help stays fast)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return os.path.exists("/dev/nvidiactl") or bool(glob.glob("/dev/nvidia[0-9]*"))


# megatron-core announces each missing GPU library on import; on a CPU machine that is the expected state.
_EXPECTED_WARNINGS = (r"Transformer Engine and Apex are not installed.*", r"Apex is not installed.*")
# megatron-core warns about its own default value of TransformerConfig.cuda_graph_scope on every model build.
_MEGATRON_DEFAULT_WARNINGS = (r"full scope is deprecated.*",)
# torch deprecations that megatron-core's checkpoint loading triggers inside both libraries.
_DEPRECATION_NOISE = (r"megatron\.core\.dist_checkpointing\..*", r"torch\.distributed\.checkpoint\..*")


def main(argv: list[str] | None = None) -> int:
    import warnings

    expected = _MEGATRON_DEFAULT_WARNINGS + (() if gpu_visible() else _EXPECTED_WARNINGS)
    for message in expected:
        warnings.filterwarnings("ignore", message=message, category=UserWarning)
    for module in _DEPRECATION_NOISE:
        warnings.filterwarnings("ignore", category=FutureWarning, module=module)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--debug"]:  # `inserter --debug CMD ...` is `inserter CMD ... --debug`
        argv = argv[1:] + ["--debug"]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(unknown_command(name), file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    try:
        return int(module.main(rest) or 0)
    except BrokenPipeError:  # `inserter ... | head`: the reader has gone, nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
