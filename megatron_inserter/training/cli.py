"""``inserter train``: pre-train under torchrun, slurm's srun (no wrapper) or as a single process.

    torchrun --nproc-per-node 8 -m megatron_inserter.cli train --config run.yaml --lr 3e-4
    srun inserter train --tensor-model-parallel-size 4 --pipeline-model-parallel-size 2 ...

Flags follow Megatron-LM's names (``inserter train --help`` lists them); ``--config FILE.yaml`` supplies
defaults with the same names in snake_case, and the command line wins.
"""

from __future__ import annotations

import logging
import os
import sys

from megatron_inserter.training.arguments import ArgumentError, parse_args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:
        from megatron_inserter.training.arguments import build_parser

        build_parser().print_help()
        return 0
    try:
        args = parse_args(argv)
    except ArgumentError as e:
        print(f"inserter train: error: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO if os.environ.get("RANK", "0") == "0" else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("megatron").setLevel(logging.WARNING)  # megatron-core's dataset/optimizer chatter
    from megatron_inserter.runtime import destroy_parallel
    from megatron_inserter.training.checkpointing import CheckpointError
    from megatron_inserter.training.trainer import train

    try:
        result = train(args)
    except (ArgumentError, CheckpointError, FileNotFoundError) as e:
        print(f"inserter train: error: {e}", file=sys.stderr)
        return 2 if isinstance(e, ArgumentError) else 1
    finally:
        destroy_parallel()
    if result.checkpoint:
        print(f"checkpoint: {result.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
