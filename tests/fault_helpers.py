"""Fault injection for the save-path tests: run a function in a forked child (a killable, rlimit-able process that
starts at once, having everything imported already) and collect how it ended."""

from __future__ import annotations

import os
import resource
import signal
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch


def fork(child: Callable[[], int]) -> int:
    """Run `child` in a forked process; returns its pid. The child exits with `child`'s return value, or 99 with
    the traceback on stderr; it never returns into pytest. The child computes on one thread."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            torch.set_num_threads(1)  # the parent's OpenMP thread pool does not survive fork: stay off it
            code = child()
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def wait(pid: int, timeout: float = 60.0) -> int:
    """The exit status of child `pid`, killing it if it outlives `timeout`: its exit code, or minus the signal."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def on_a_full_disk(action: Callable[[], object], limit: int, timeout: float = 60.0) -> str:
    """Run `action` in a forked child whose writes past `limit` bytes fail with EFBIG, as on a full disk
    (RLIMIT_FSIZE with SIGXFSZ ignored); returns the message of the OSError it raised. Fails the test when `action`
    returns normally or ends any other way."""
    with tempfile.NamedTemporaryFile(suffix=".txt", delete=False) as handle:
        report = Path(handle.name)

    def child() -> int:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        try:
            action()
        except OSError as e:
            resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            report.write_text(str(e))
            return 3
        return 0

    try:
        code = wait(fork(child), timeout)
        assert code == 3, f"the action under a {limit}-byte file size limit ended with {code}, not an OSError"
        return report.read_text()
    finally:
        report.unlink(missing_ok=True)
