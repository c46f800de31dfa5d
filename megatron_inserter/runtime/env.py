"""Where this process sits in the job: rank, world size, local rank and the rendezvous address.

Read from torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) or, when a job
is started directly by slurm's ``srun``, from SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID and the first
host of SLURM_JOB_NODELIST, so multi-node jobs need no wrapper script.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Mapping

DEFAULT_MASTER_PORT = 29500


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    launcher: str  # "torchrun", "slurm" or "single"

    def export(self, environ: dict | None = None) -> None:
        """Write the torch.distributed env:// variables so ``init_process_group`` finds them."""
        env = os.environ if environ is None else environ
        env.update(
            RANK=str(self.rank),
            WORLD_SIZE=str(self.world_size),
            LOCAL_RANK=str(self.local_rank),
            MASTER_ADDR=self.master_addr,
            MASTER_PORT=str(self.master_port),
        )


def first_host(nodelist: str) -> str:
    """First host of a slurm node list: ``gpu[003-005,010],cpu1`` -> ``gpu003``."""
    nodelist = nodelist.strip()
    if not nodelist:
        raise ValueError("empty SLURM_JOB_NODELIST")
    # The first entry ends at the first comma that is not inside brackets.
    depth, end = 0, len(nodelist)
    for i, ch in enumerate(nodelist):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            end = i
            break
    entry = nodelist[:end]
    m = re.fullmatch(r"([^\[]*)\[([^\]]+)\](.*)", entry)
    if not m:
        return entry
    prefix, ranges, suffix = m.groups()
    first = ranges.split(",")[0].split("-")[0]
    return f"{prefix}{first}{suffix}"


def _int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError as e:
        raise ValueError(f"environment variable {name}={env[name]!r} is not an integer") from e


def resolve_dist_env(environ: Mapping[str, str] | None = None) -> DistEnv:
    """Resolve the distributed environment; torchrun's variables win over slurm's."""
    env = os.environ if environ is None else environ
    port = _int(env, "MASTER_PORT") if "MASTER_PORT" in env else DEFAULT_MASTER_PORT
    if "RANK" in env and "WORLD_SIZE" in env:
        return DistEnv(
            rank=_int(env, "RANK"),
            world_size=_int(env, "WORLD_SIZE"),
            local_rank=_int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else 0,
            master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
            master_port=port,
            launcher="torchrun",
        )
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
        if "MASTER_ADDR" in env:
            addr = env["MASTER_ADDR"]
        elif nodelist:
            addr = first_host(nodelist)
        else:
            raise ValueError("slurm launch without SLURM_JOB_NODELIST or MASTER_ADDR: cannot find the master")
        if "MASTER_PORT" not in env and "SLURM_JOB_ID" in env:
            # A per-job port so two jobs sharing a node do not collide.
            port = 20000 + _int(env, "SLURM_JOB_ID") % 20000
        return DistEnv(
            rank=_int(env, "SLURM_PROCID"),
            world_size=_int(env, "SLURM_NTASKS"),
            local_rank=_int(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0,
            master_addr=addr,
            master_port=port,
            launcher="slurm",
        )
    return DistEnv(0, 1, 0, env.get("MASTER_ADDR", "127.0.0.1"), port, "single")
