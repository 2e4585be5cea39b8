"""The explicit objects every use case receives: catalog sessions, spaces, job runner, options.

Built from ``Settings`` by ``embplat.workers.context.build_context`` (the CLI and the Celery
workers share it), so nothing below reads configuration itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from embplat.config import default_decode_threads
from embplat.jobs.runner import InProcessRunner, JobRunner
from embplat.pipelines.spaces import Space, Spaces

__all__ = ["Context", "EmbedOptions", "IngestOptions", "Space", "Spaces"]


@dataclass(frozen=True)
class EmbedOptions:
    """How images are batched through the encoder."""

    batch_size: int = 32
    num_workers: int = field(default_factory=default_decode_threads)
    commit_every: int = 256


@dataclass(frozen=True)
class IngestOptions:
    """How ingest validates and splits images."""

    valid_fraction: float = 0.1
    max_pixels: int = 40_000_000
    batch_size: int = 256


@dataclass
class Context:
    """Everything a use case needs, passed explicitly (dependency injection).

    Attributes:
        sessions: the catalog.
        spaces: encoders and their indexes, each opened once.
        runner: where jobs' tasks run (here, or on workers); chosen once, when built.
        embed, ingest: batching and validation options.
        home: data home (checkpoints, plots, active word vectors).
    """

    sessions: sessionmaker[Session]
    spaces: Spaces
    runner: JobRunner = field(default=None)  # type: ignore[assignment]
    embed: EmbedOptions = field(default_factory=EmbedOptions)
    ingest: IngestOptions = field(default_factory=IngestOptions)
    home: Path = Path(".embplat")

    def __post_init__(self) -> None:
        if self.runner is None:
            self.runner = InProcessRunner(self.sessions)

    def close(self) -> None:
        """Flush and close the indexes that were opened."""
        self.spaces.close()
