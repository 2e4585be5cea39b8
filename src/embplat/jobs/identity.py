"""Which process runs a job: host, pid and process start time.

A job run in a process records that identity under ``params["runner"]``, so a job whose
process was killed can be told from one still running
(``embplat.pipelines.jobs.interrupt_dead_jobs``).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: The key of a job's ``params`` naming the process that runs it in-process.
RUNNER_KEY = "runner"


def _stat_fields(pid: int) -> list[str]:
    """Fields 3.. of ``/proc/<pid>/stat`` (state first), or [] where it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return []
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    return stat.rsplit(")", 1)[-1].split()


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux ``/proc``), or None.

    Together with the pid it names one process: a pid reused later has another start time.
    """
    fields = _stat_fields(pid)
    try:
        return int(fields[19])  # field 22 of proc(5): starttime
    except (IndexError, ValueError):
        return None


def this_runner() -> dict[str, Any]:
    """Identity of this process: ``{"host", "pid", "start"}`` (start None without /proc)."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": process_start(pid)}


def runner_alive(runner: Mapping[str, Any]) -> bool | None:
    """Whether the recorded process still runs: None when it ran on another host (unknown).

    A pid that is gone, a zombie, or reused by a process started at another time is dead.
    """
    if runner.get("host") != socket.gethostname():
        return None
    try:
        pid = int(runner["pid"])
    except (KeyError, TypeError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    if _zombie(pid):
        return False
    recorded, now = runner.get("start"), process_start(pid)
    return recorded is None or now is None or int(recorded) == now


def _zombie(pid: int) -> bool:
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] in {"Z", "X"}
