"""Run a function in N spawned gloo processes and hand back what each rank returned.

    results = run_distributed(fn, world_size=4, args=(...,))   # results[rank] = fn(rank, world_size, *args)

Each child gets a fresh free port, RANK/WORLD_SIZE/MASTER_* in its environment and a CPU-only torch
(CUDA hidden), so the code under test starts exactly as it would under torchrun. A child that raises
sends its traceback back and the parent re-raises it; a hang is killed after ``timeout`` seconds.
``fn`` must be importable (defined at module level).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import traceback
from typing import Any, Callable


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child(fn, rank, world_size, port, args, kwargs, queue):
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), CUDA_VISIBLE_DEVICES="",
        OMP_NUM_THREADS="1",
    )
    try:
        import torch

        torch.set_num_threads(1)
        out = fn(rank, world_size, *args, **kwargs)
        queue.put((rank, True, out))
    except BaseException:  # noqa: BLE001 - everything goes back to the parent
        queue.put((rank, False, traceback.format_exc()))
    finally:
        try:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
        except Exception:
            pass


class DistributedTestError(RuntimeError):
    pass


def run_distributed(fn: Callable[..., Any], world_size: int, *args, timeout: float = 300.0, **kwargs) -> list:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [
        ctx.Process(target=_child, args=(fn, r, world_size, port, args, kwargs, queue), daemon=False)
        for r in range(world_size)
    ]
    for p in procs:
        p.start()
    results: dict[int, Any] = {}
    errors: list[str] = []
    import queue as queue_mod
    import time

    deadline = time.monotonic() + timeout
    try:
        while len(results) + len(errors) < world_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DistributedTestError(
                    f"timed out after {timeout:.0f}s; ranks that answered: {sorted(results)}"
                )
            try:
                rank, ok, payload = queue.get(timeout=min(remaining, 1.0))
            except queue_mod.Empty:
                dead = [i for i, p in enumerate(procs) if p.exitcode not in (None, 0)]
                if dead and not errors and all(i not in results for i in dead):
                    # A child died without reporting (segfault, os._exit): stop waiting for the rest.
                    time.sleep(1.0)
                    if queue.empty():
                        raise DistributedTestError(f"ranks {dead} died with exit codes "
                                                   f"{[procs[i].exitcode for i in dead]}")
                continue
            if ok:
                results[rank] = payload
            else:
                errors.append(f"--- rank {rank} ---\n{payload}")
                break  # the others may now wait forever on a collective
    finally:
        for p in procs:
            p.join(timeout=5 if not errors else 0.5)
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    if errors:
        raise DistributedTestError("a rank failed:\n" + "\n".join(errors))
    return [results[r] for r in range(world_size)]
