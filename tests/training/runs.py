"""Entry points the training tests run in spawned processes (through tests.harness.run_distributed)."""

from __future__ import annotations


def common_flags(tok: str, prefix: str, **overrides) -> list[str]:
    flags = {
        "--model-type": "gpt", "--micro-batch-size": "2", "--global-batch-size": "4", "--seq-length": "48",
        "--lr": "3e-3", "--min-lr": "3e-4", "--lr-warmup-iters": "2", "--train-iters": "6",
        "--tokenizer-model": tok, "--split": "90,10,0", "--eval-iters": "0", "--log-interval": "1",
        "--num-workers": "0", "--seed": "1234",
    }
    flags.update({f"--{k.replace('_', '-')}": str(v) for k, v in overrides.items()})
    argv = [x for k, v in flags.items() for x in ((k,) if v == "" else (k, v))]
    return argv + ["--data-path", "0.6", prefix, "0.4", prefix + "_asr"]


def _teardown() -> None:
    """Leave the process group so the next run in this process can start its own: every rank moves to a
    fresh rendezvous port chosen by rank 0 (the old store may outlive the group and hold stale keys)."""
    import os

    import torch.distributed as dist

    from megatron_inserter.runtime import destroy_parallel
    from tests.harness import free_port

    if dist.is_initialized():
        port = [free_port() if dist.get_rank() == 0 else None]
        dist.broadcast_object_list(port, src=0)
        os.environ["MASTER_PORT"] = str(port[0])
    destroy_parallel()


def train_history(rank, world_size, argv) -> list[dict]:
    return train_result(rank, world_size, argv)["history"]


def train_histories(rank, world_size, argvs) -> list[list[dict]]:
    """Several runs one after another in this process (each sets up and tears down its process groups)."""
    return [train_history(rank, world_size, argv) for argv in argvs]


def train_results(rank, world_size, argvs) -> list[dict]:
    return [train_result(rank, world_size, argv) for argv in argvs]


def train_result(rank, world_size, argv):
    from megatron_inserter.training.arguments import parse_args
    from megatron_inserter.training.trainer import train

    try:
        result = train(parse_args(argv))
    finally:
        _teardown()
    return {"history": result.history, "validation": result.validation, "checkpoint": result.checkpoint,
            "loss_plot": result.loss_plot}
