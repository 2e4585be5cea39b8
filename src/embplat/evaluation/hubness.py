"""Hubness correction for cross-modal similarity matrices: CSLS and the inverted softmax.

In a shared image–label space some points are near everything ("hubs": an image close to
every label, a label close to every image), so they top every ranking. Both corrections
rescore a similarity matrix ``sims`` (N, M) — rows one side (images), columns the other
(labels) — before ranking along ``rank_axis``: 1 ranks the columns of each row (classify an
image among labels), 0 ranks the rows of each column (search images by a label).

- CSLS (Conneau et al., 2018): ``2·s(i, j) − r_row(i) − r_col(j)``, where ``r_row(i)`` is the
  mean similarity of row i to its ``k`` nearest columns and ``r_col(j)`` that of column j to
  its ``k`` nearest rows. A row near every column gets a large ``r_row`` and is demoted.
- Inverted softmax (Smith et al., 2017): a softmax with inverse temperature ``beta`` taken
  over the axis *not* ranked, so every item on the other side spreads one unit of
  probability; returned as ``log p / beta`` (cosine-like scale, same ranking).

Pure functions over arrays, ties resolved by the caller's stable sort.
"""

from __future__ import annotations

import numpy as np

from embplat.errors import ConfigError

#: The accepted ``hubness`` values of the use cases.
HUBNESS_METHODS = ("none", "csls", "isoftmax")
#: Neighbourhood size of CSLS (capped at the other side's size).
CSLS_K = 10
#: Inverse temperature of the inverted softmax.
ISOFTMAX_BETA = 10.0


def check_hubness(method: str) -> str:
    """``method`` if known. Raises ConfigError listing the choices."""
    if method not in HUBNESS_METHODS:
        raise ConfigError(
            f"unknown hubness correction {method!r}; choose one of: {', '.join(HUBNESS_METHODS)}"
        )
    return method


def _top_k_mean(sims: np.ndarray, k: int, axis: int) -> np.ndarray:
    """Mean of the ``k`` largest values along ``axis`` (k capped at that axis' length)."""
    k = max(1, min(k, sims.shape[axis]))
    part = -np.partition(-sims, k - 1, axis=axis)
    return np.take(part, range(k), axis=axis).mean(axis=axis)


def csls(sims: np.ndarray, k: int = CSLS_K) -> np.ndarray:
    """Cross-domain similarity local scaling of an (N, M) similarity matrix.

    Args:
        sims: (N, M) cosine similarities, rows one side, columns the other.
        k: neighbourhood size on each side.

    Returns:
        (N, M) float32 ``2·sims − r_row[:, None] − r_col[None, :]``.
    """
    s = np.asarray(sims, dtype=np.float32)
    if s.size == 0:
        return s.copy()
    r_row = _top_k_mean(s, k, axis=1)
    r_col = _top_k_mean(s, k, axis=0)
    return 2 * s - r_row[:, None] - r_col[None, :]


def inverted_softmax(
    sims: np.ndarray, *, rank_axis: int, beta: float = ISOFTMAX_BETA
) -> np.ndarray:
    """Log of the inverted softmax of (N, M) ``sims``, divided by ``beta``.

    The softmax runs over the axis that is *not* ranked: ranking labels for each image
    (``rank_axis=1``) normalises each label over the images, so a label near every image
    loses probability.

    Returns:
        (N, M) float32 ``log_softmax(beta · sims, axis=1 − rank_axis) / beta``.
    """
    s = np.asarray(sims, dtype=np.float64) * beta
    if s.size == 0:
        return s.astype(np.float32)
    axis = 1 - rank_axis
    top = s.max(axis=axis, keepdims=True)
    lse = top + np.log(np.exp(s - top).sum(axis=axis, keepdims=True))
    return ((s - lse) / beta).astype(np.float32)


def correct_hubness(
    sims: np.ndarray,
    method: str,
    *,
    rank_axis: int,
    k: int = CSLS_K,
    beta: float = ISOFTMAX_BETA,
) -> np.ndarray:
    """``sims`` rescored by ``method`` (``none`` returns them unchanged) for ranking along
    ``rank_axis`` (1: columns of each row; 0: rows of each column).

    Raises:
        ConfigError: an unknown method.
    """
    check_hubness(method)
    if rank_axis not in (0, 1):
        raise ConfigError(f"rank_axis must be 0 or 1, got {rank_axis}")
    if method == "csls":
        return csls(sims, k)
    if method == "isoftmax":
        return inverted_softmax(sims, rank_axis=rank_axis, beta=beta)
    return np.asarray(sims, dtype=np.float32)
