"""A training run killed with SIGKILL while it saves checkpoints leaves no process behind: its checkpoint
writers, the server of megatron-core's checkpoint-result queue, the multiprocessing resource tracker and
its data-loader workers all go with it."""

import os
import signal
import subprocess
import sys
import time

from megatron_inserter.training.checkpointing import read_tracker
from tests.training.runs import common_flags


def _process_group(pgid: int) -> dict[int, str]:
    """Live (non-zombie) processes of a process group: pid -> command line."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, _ppid, group = stat[stat.rindex(")") + 2:].split()[:3]
        if int(group) == pgid and state != "Z":
            found[int(entry)] = cmdline
    return found


def _wait_for(condition, seconds: float, proc, log) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if proc.poll() is not None:
            log.seek(0)
            raise AssertionError(f"training exited with {proc.returncode}:\n{log.read()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {seconds:.0f}s")
        time.sleep(0.2)


def test_sigkill_during_checkpointing_leaves_no_orphans(tmp_path, corpus):
    tok, prefix = corpus
    ckpt = str(tmp_path / "ckpt")
    argv = common_flags(tok, prefix, model_type="gpt", train_iters=100000, save=ckpt, save_interval=1,
                        num_workers=1, log_interval=1000)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    with open(tmp_path / "train.log", "w+") as log:
        proc = subprocess.Popen([sys.executable, "-m", "megatron_inserter.cli", "train", *argv], env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            # A checkpoint every step: after the second is published the run is saving again, or about to.
            _wait_for(lambda: (read_tracker(ckpt) or 0) >= 2, 300, proc, log)
            helpers = {pid: cmd for pid, cmd in _process_group(proc.pid).items() if pid != proc.pid}
            assert any("resource_tracker" in cmd for cmd in helpers.values()), helpers
            assert any("spawn_main" in cmd for cmd in helpers.values()), helpers  # the result-queue server
            assert any("megatron_inserter.cli" in cmd for cmd in helpers.values()), helpers  # the loader worker

            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            deadline = time.monotonic() + 10
            while _process_group(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _process_group(proc.pid) == {}
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if _process_group(proc.pid):
                os.killpg(proc.pid, signal.SIGKILL)  # the group this test started; never left behind
