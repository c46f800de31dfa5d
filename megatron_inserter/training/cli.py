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

from megatron_inserter.errors import InserterError, UsageError
from megatron_inserter.flags import run_command
from megatron_inserter.training.arguments import PROG, TrainingArguments
from megatron_inserter.training.flag_checks import blend_problem, split_problem


def run(args: TrainingArguments) -> int:
    problems = [p for p in (blend_problem(args.data_path), split_problem(args.split, args.skip_train)) if p]
    if problems:  # before torch and megatron-core take seconds to import
        raise UsageError("invalid flags: " + "; ".join(problems))
    logging.basicConfig(level=logging.INFO if os.environ.get("RANK", "0") == "0" else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("megatron").setLevel(logging.WARNING)  # megatron-core's dataset/optimizer chatter
    from torch.distributed import DistNetworkError

    from megatron_inserter.runtime import destroy_parallel
    from megatron_inserter.training.load_checks import check_load
    from megatron_inserter.training.trainer import train

    try:
        if args.load:
            check_load(args.load, args.model_type)
        result = train(args)
    except DistNetworkError as e:
        where = f"{os.environ.get('MASTER_ADDR', '127.0.0.1')}:{os.environ.get('MASTER_PORT', '29500')}"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InserterError(f"cannot open the process-group rendezvous at {where} ({first}); another run on this "
                            f"machine may hold the port: set MASTER_PORT to a free port or launch with "
                            f"torchrun") from e
    finally:
        destroy_parallel()
    if result.checkpoint:
        print(f"checkpoint: {result.checkpoint}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(PROG, TrainingArguments, run, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
