"""``inserter demo`` command line (see the package docstring for the stages)."""

from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass, replace

import megatron_inserter.demo as demo_package
from megatron_inserter.errors import UsageError
from megatron_inserter.flags import arg, run_command


@dataclass
class DemoFlags:
    workdir: str = arg("runs/demo", "where every stage writes", metavar="DIR")
    smoke: bool = arg(False, "a much smaller run (16 documents, 8 steps)")
    train_iters: int = arg(None, "training steps (300; with --smoke 8)")
    num_docs: int = arg(None, "use the first N corpus documents (all of them when not given)")
    force: bool = arg(False, "delete the work directory and start over")


def _single_process_rendezvous() -> None:
    """A one-process gloo group on a free port, unless a launcher already set the job up."""
    if "RANK" in os.environ or "SLURM_PROCID" in os.environ:
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ["MASTER_PORT"] = str(s.getsockname()[1])


def run(flags: DemoFlags) -> int:
    from megatron_inserter.demo.stages import SMOKE, STAGES, Demo, DemoConfig

    overrides = {k: v for k, v in (("train_iters", flags.train_iters), ("num_docs", flags.num_docs)) if v is not None}
    if any(v < 1 for v in overrides.values()):
        raise UsageError("--train-iters and --num-docs must be >= 1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    demo = Demo(flags.workdir, replace(SMOKE if flags.smoke else DemoConfig(), **overrides))
    error = demo.check_config(flags.force)
    if error:
        raise UsageError(error)
    _single_process_rendezvous()
    t0 = time.perf_counter()
    outputs = {}
    try:
        for name in STAGES:
            outputs[name] = demo.stage(name, getattr(demo, name))
    finally:
        from megatron_inserter.runtime import destroy_parallel

        destroy_parallel()
    from megatron_inserter.demo.report import build_summary, format_summary

    summary = build_summary(demo, outputs, time.perf_counter() - t0)
    print(format_summary(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command("inserter demo", DemoFlags, run, argv, description=demo_package.__doc__)


if __name__ == "__main__":
    sys.exit(main())
