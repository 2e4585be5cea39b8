"""Progress reporting the use cases call; the CLI plugs in Rich bars, workers plug in nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class ProgressSink(Protocol):
    """Creates a counter for one phase of work; calling it advances the bar."""

    def task(self, description: str, total: int) -> Callable[[int], None]:
        """Start a phase of ``total`` items; returns ``advance(n)``."""


class NoProgress:
    """A sink that shows nothing."""

    def task(self, description: str, total: int) -> Callable[[int], None]:
        """Return a no-op advance function."""
        return lambda n: None
