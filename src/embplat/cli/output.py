"""Shared by the commands: the Rich console, progress bars, JSON, error lines, the formatting
of metric values, and the parsing of comma-separated option values."""

from __future__ import annotations

import json
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console()
err_console = Console(stderr=True)


class RichProgress:
    """A ``ProgressSink`` drawing one Rich bar per phase (on stderr, so --json stays clean)."""

    def __init__(self, progress: Progress):
        self.progress = progress

    def task(self, description: str, total: int) -> Callable[[int], None]:
        """Add a bar; returns ``advance(n)``."""
        task_id = self.progress.add_task(description, total=total)
        return lambda n: self.progress.advance(task_id, n)


@contextmanager
def progress_bars(enabled: bool = True) -> Iterator[RichProgress]:
    """Context with live progress bars (items/s shown via elapsed and remaining time)."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=not enabled,
        transient=False,
    )
    with progress:
        yield RichProgress(progress)


def print_json(data: Any) -> None:
    """Machine-readable output on stdout."""
    console.file.write(json.dumps(data, indent=2, default=str) + "\n")


def error_line(message: str) -> None:
    """One red line on stderr."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)


def warn_line(message: str) -> None:
    """One yellow line on stderr."""
    err_console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def fmt_metric(value: float | None, digits: int = 4) -> str:
    """A metric as shown in tables: ``digits`` decimals, a count (an integer) as it is, ``—``
    when it is undefined (None)."""
    if value is None:
        return "—"
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(value)
    return f"{float(value):.{digits}f}"


def comma_list(value: str | None) -> list[str]:
    """The items of a comma-separated option (``a, b,,c`` -> ``[a, b, c]``); [] for None."""
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def best_rejection(curve: Sequence[Mapping[str, Any]]) -> str | None:
    """The best point of an open-set accuracy/coverage curve as advice for
    ``classify --reject-below``; None for an empty curve."""
    from embplat.evaluation.open_set import best_threshold

    best = best_threshold(curve)
    if best is None:
        return None
    return (
        f"best open-set accuracy (vote share) {fmt_metric(best['open_set_accuracy'])} at "
        f"--reject-below {best['threshold']:.2f} (coverage {fmt_metric(best['coverage'])}, "
        f"unknowns caught {fmt_metric(best['unknown_rate'])})"
    )
