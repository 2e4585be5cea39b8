"""Progress reporting: the one protocol the use cases and the training loop call.

The CLI plugs in Rich bars, workers plug in nothing (:class:`NoProgress`). It lives at the
bottom of the package so every layer (``models`` included) reports through the same sink.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable


class ProgressSink(Protocol):
    """Creates a counter for one phase of work; calling it advances the bar."""

    def task(self, description: str, total: int) -> Callable[[int], None]:
        """Start a phase of ``total`` items; returns ``advance(n)``."""


@runtime_checkable
class StatusSink(ProgressSink, Protocol):
    """A sink that can also show a live status line (loss, images/s)."""

    def status(self, text: str) -> None:
        """Replace the status text of the newest task."""


class NoProgress:
    """A sink that shows nothing."""

    def task(self, description: str, total: int) -> Callable[[int], None]:
        """Return a no-op advance function."""
        return lambda n: None


def show_status(sink: ProgressSink, text: str) -> None:
    """Show ``text`` as ``sink``'s live status when it can show one."""
    if isinstance(sink, StatusSink):
        sink.status(text)


def deferred_task(
    sink: ProgressSink, label: str | Callable[[], str], total: int
) -> Callable[[int], None]:
    """``sink.task(label, total)`` opened on its first advance, so work that runs elsewhere
    (sent to workers) shows no bar; ``label`` may be a function, called then."""
    bar: Callable[[int], None] | None = None

    def advance(n: int) -> None:
        nonlocal bar
        if bar is None:
            bar = sink.task(label if isinstance(label, str) else label(), total)
        bar(n)

    return advance
