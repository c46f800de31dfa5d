"""``inserter train``: pre-train under torchrun, slurm's srun (no wrapper) or as a single process.

    torchrun --nproc-per-node 8 -m megatron_inserter.cli train --config run.yaml --lr 3e-4
    srun inserter train --tensor-model-parallel-size 4 --pipeline-model-parallel-size 2 ...

Flags follow Megatron-LM's names (``inserter train --help`` lists them); ``--config FILE.yaml`` supplies
defaults with the same names in snake_case, and the command line wins. A bad flag, dataset, tokenizer or
checkpoint stops the run with one line naming it (``--debug`` shows the traceback).
"""

from __future__ import annotations

import logging
import os
import sys

from megatron_inserter.errors import DataError
from megatron_inserter.flags import run_command
from megatron_inserter.training.arguments import PROG, TrainingArguments


def run(args: TrainingArguments) -> int:
    logging.basicConfig(level=logging.INFO if os.environ.get("RANK", "0") == "0" else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("megatron").setLevel(logging.WARNING)  # megatron-core's dataset/optimizer chatter
    from megatron_inserter.runtime import destroy_parallel
    from megatron_inserter.training.checkpointing import CheckpointError
    from megatron_inserter.training.trainer import train

    try:
        result = train(args)
    except CheckpointError as e:
        raise DataError(str(e)) from e
    finally:
        destroy_parallel()
    if result.checkpoint:
        print(f"checkpoint: {result.checkpoint}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(PROG, TrainingArguments, run, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
