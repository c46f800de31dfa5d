"""Helper processes die with the process that started them: a run killed with SIGKILL leaves no orphans.

    Pool(n, initializer=die_with_parent, initargs=(os.getpid(),))   # preprocess, desta build workers
    install()                              # training: every later fork of this process dies with it
    checkpoint_writers_die_with_parent()   # training: before the first checkpoint save

A training process starts three kinds of helpers: data-loader workers and megatron-core's checkpoint
writers (forked), and the process that serves megatron-core's checkpoint-result queue (spawned, a
``multiprocessing`` manager, which also keeps the ``multiprocessing`` resource tracker alive through the
pipe it inherits). Each of them asks the kernel for SIGKILL when its parent dies (Linux
``PR_SET_PDEATHSIG``; elsewhere a thread that watches the parent pid), and exits at once if the parent
is already gone. The resource tracker then sees its pipe close and exits by itself.

The kernel ties ``PR_SET_PDEATHSIG`` to the thread that forked: the training process forks from its main
thread (data-loader start, synchronous checkpoint saves), which lives as long as the process.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1
_state = {"installed": False, "parent": None}


def die_with_parent(parent_pid: int) -> None:
    """In a child process: be killed when ``parent_pid`` (the process that started this one) dies."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            armed = ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent_pid,), name="parent-watch", daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(1)


def _after_fork_in_child() -> None:
    parent = _state["parent"]
    _state["parent"] = os.getpid()  # this process's own children watch this process
    if parent is not None:
        die_with_parent(parent)


def _before_fork() -> None:
    _state["parent"] = os.getpid()


def install() -> None:
    """Every process this one forks from now on dies with it (idempotent)."""
    if not _state["installed"]:
        _state["installed"] = True
        os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def checkpoint_writers_die_with_parent() -> None:
    """megatron-core keeps one checkpoint-result queue per process, served by a spawned manager it starts on
    its first save; start that manager here instead, with ``die_with_parent`` as its initializer, and make
    the forked writers die with this process too (idempotent). A megatron-core without that module-level
    queue is left alone."""
    install()
    try:
        from megatron.core.dist_checkpointing.strategies import filesystem_async
    except ImportError:
        return
    if getattr(filesystem_async, "_results_queue", "absent") is not None:
        return  # already started, or not this megatron-core's design
    from multiprocessing.managers import SyncManager

    manager = SyncManager(ctx=mp.get_context("spawn"))
    manager.start(die_with_parent, (os.getpid(),))
    filesystem_async._results_queue = manager.Queue()  # the proxy keeps the manager alive
