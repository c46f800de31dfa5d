"""``inserter demo`` command line (see the package docstring for the stages)."""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from dataclasses import replace

import megatron_inserter.demo as demo_package
from megatron_inserter.demo.stages import SMOKE, STAGES, Demo, DemoConfig


def _single_process_rendezvous() -> None:
    """A one-process gloo group on a free port, unless a launcher already set the job up."""
    if "RANK" in os.environ or "SLURM_PROCID" in os.environ:
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ["MASTER_PORT"] = str(s.getsockname()[1])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="inserter demo", description=demo_package.__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default="runs/demo", help="where every stage writes (default: runs/demo)")
    p.add_argument("--smoke", action="store_true", help="a much smaller run (16 documents, 8 steps)")
    p.add_argument("--train-iters", type=int, default=None, help="training steps (default: 300; smoke: 8)")
    p.add_argument("--num-docs", type=int, default=None, help="use N corpus documents (default: all)")
    p.add_argument("--force", action="store_true", help="delete the work directory and start over")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {k: v for k, v in (("train_iters", args.train_iters), ("num_docs", args.num_docs)) if v is not None}
    if any(v < 1 for v in overrides.values()):
        print("inserter demo: error: --train-iters and --num-docs must be >= 1", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    demo = Demo(args.workdir, replace(SMOKE if args.smoke else DemoConfig(), **overrides))
    error = demo.check_config(args.force)
    if error:
        print(f"inserter demo: error: {error}", file=sys.stderr)
        return 2
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


if __name__ == "__main__":
    sys.exit(main())
