"""One writer at a time per index directory: an ``fcntl.flock`` on ``<directory>/.lock``.

A writer takes the lock at its first write and keeps it until that write is durable, so two
processes writing one directory interleave at flush granularity instead of overwriting each
other's commits. The kernel drops the lock when its holder dies, so a crashed writer never
blocks the next one. The lock file records the holder's pid and host for messages.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from embplat.errors import BusyError

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
#: Longest pause between two attempts while waiting for the lock.
_MAX_POLL_S = 0.25

#: Lock directories held in this process -> the thread holding each. A second handle on the
#: same directory in the same thread could never get the lock, so it fails at once.
_HELD: dict[str, int] = {}
_HELD_GUARD = threading.Lock()


class WriteLock:
    """The write lock of one index directory.

    Args:
        directory: the index directory (created on the first :meth:`acquire`).
        timeout: seconds :meth:`acquire` waits for another holder; 0 fails at once.
    """

    def __init__(self, directory: Path, timeout: float) -> None:
        self.directory = Path(directory)
        self.timeout = max(0.0, float(timeout))
        self._fd: int | None = None
        self._key = ""

    @property
    def held(self) -> bool:
        """True while this handle holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, waiting up to ``timeout`` seconds (no-op when already held).

        Raises:
            BusyError: another process (or another handle of this thread) holds it; the
                message names the directory and the holder.
        """
        if self._fd is not None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        key = str(self.directory.resolve())
        with _HELD_GUARD:
            if _HELD.get(key) == threading.get_ident():
                raise BusyError(
                    f"index {self.directory} is being written by another handle in this "
                    f"process (pid {os.getpid()}); flush or close that one first"
                )
        start = time.monotonic()
        delay = 0.01
        while (fd := self._try_lock()) is None:
            waited = time.monotonic() - start
            if waited >= self.timeout:
                raise BusyError(self._busy_message(waited))
            time.sleep(min(delay, self.timeout - waited))
            delay = min(2 * delay, _MAX_POLL_S)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        self._fd, self._key = fd, key
        with _HELD_GUARD:
            _HELD[key] = threading.get_ident()
        log.debug("write lock of %s taken by pid %d", self.directory, os.getpid())

    def release(self) -> None:
        """Drop the lock (no-op when not held)."""
        if self._fd is None:
            return
        with _HELD_GUARD:
            _HELD.pop(self._key, None)
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __del__(self) -> None:
        # a handle dropped without flush/close must not keep the directory locked
        with contextlib.suppress(Exception):  # modules may be torn down at interpreter exit
            self.release()

    def _try_lock(self) -> int | None:
        """A descriptor holding the lock, or None when someone else holds it."""
        path = self.directory / LOCK_FILE
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the directory was moved aside (quarantined) meanwhile: lock the new one
            os.close(fd)
            return self._try_lock()
        return fd

    def _busy_message(self, waited: float) -> str:
        holder = "another process"
        try:
            pid, host = (self.directory / LOCK_FILE).read_text(encoding="utf-8").split()[:2]
            holder = f"pid {pid} on host {host}"
        except (OSError, ValueError):
            pass
        after = f" (waited {waited:.0f}s)" if self.timeout else ""
        return f"index {self.directory} is being written by {holder}{after}; wait for it or stop it"


def begin_write(
    lock: WriteLock | None, *, stale: Callable[[], bool], reload: Callable[[], None]
) -> None:
    """Take ``lock`` before a handle's first write (no-op when held, or None for an index
    kept in memory), reloading first when another writer committed since this handle read.

    Args:
        lock: the index directory's write lock.
        stale: called with the lock held; True when the saved index changed meanwhile.
        reload: called with the lock held when ``stale()``; replaces the in-memory state.

    Raises:
        BusyError: another writer kept the lock past its timeout.
    """
    if lock is None or lock.held:
        return
    lock.acquire()
    try:
        if stale():
            log.debug("%s changed on disk; reloading before writing", lock.directory)
            reload()
    except BaseException:
        lock.release()
        raise
