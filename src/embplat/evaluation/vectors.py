"""Labelled vectors of an evaluation: point ids, class names, paths and (N, D) vectors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embplat.errors import ConfigError


@dataclass(frozen=True)
class SplitVectors:
    """The embedded images of some splits: point ids, class names, paths, (N, D) vectors.

    ``vectors`` may be (N, 0) where only the ids and classes are needed (search through
    an index by id).
    """

    ids: list[str]
    classes: list[str]
    paths: list[str]
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def labels(self, names: Sequence[str]) -> np.ndarray:
        """(N,) int labels: positions of the class names in ``names``."""
        pos = {n: i for i, n in enumerate(names)}
        return np.array([pos[c] for c in self.classes], dtype=np.int64)

    def where(self, keep: np.ndarray) -> SplitVectors:
        """The rows where the (N,) bool mask ``keep`` is True."""
        rows = np.flatnonzero(keep)
        return SplitVectors(
            [self.ids[i] for i in rows],
            [self.classes[i] for i in rows],
            [self.paths[i] for i in rows],
            self.vectors[rows],
        )

    def __add__(self, other: SplitVectors) -> SplitVectors:
        return SplitVectors(
            self.ids + other.ids,
            self.classes + other.classes,
            self.paths + other.paths,
            np.concatenate([self.vectors, other.vectors]),
        )


def hold_out(
    queries: SplitVectors, refs: SplitVectors, unknown: Sequence[str]
) -> tuple[SplitVectors, SplitVectors, SplitVectors]:
    """Queries and references without the ``unknown`` classes, and those classes' queries.

    Raises:
        ConfigError: an ``unknown`` class has no query, or nothing known would be left.
    """
    if not unknown:
        return queries, refs, queries.where(np.zeros(len(queries), dtype=bool))
    absent = sorted(set(unknown) - set(queries.classes))
    if absent:
        raise ConfigError(
            f"--unknown classes {absent} have no query in this split; classes here: "
            f"{', '.join(sorted(set(queries.classes)))}"
        )
    is_unknown = np.isin(queries.classes, list(unknown))
    kept_refs = refs.where(~np.isin(refs.classes, list(unknown)))
    if is_unknown.all() or not len(kept_refs):
        raise ConfigError(f"--unknown {', '.join(unknown)} leaves nothing known to evaluate")
    return queries.where(~is_unknown), kept_refs, queries.where(is_unknown)
