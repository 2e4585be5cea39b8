"""Cross-modal retrieval metrics (image ↔ caption), pure functions over scores or hits.

The Karpathy protocol: every caption queries the images (text→image; one right image) and
every image queries the captions (image→text; several right captions, typically 5 — the
rank of the best-placed one counts). Reported: R@1/5/10 (fraction of queries whose right
item ranks within K), and the median and mean rank of the right item (1 = first).

Ties are broken pessimistically: a wrong item scoring *equal* to the right one ranks above
it, so a model scoring everything alike ranks last, not first.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Sequence

import numpy as np

KS = (1, 5, 10)


def text_to_image_ranks(
    scores: np.ndarray, image_of_text: np.ndarray, chunk: int = 4096
) -> np.ndarray:
    """Rank of each caption's right image among all images.

    Args:
        scores: (I, C) similarity of image i to caption c; higher = better match.
        image_of_text: (C,) int, the right image of each caption.
        chunk: captions per step (bounds memory at (I, chunk) booleans).

    Returns:
        (C,) int64 ranks, 1 = the right image first.
    """
    scores, owners = _check(scores, image_of_text)
    ranks = np.empty(len(owners), dtype=np.int64)
    for start in range(0, len(owners), chunk):
        block = scores[:, start : start + chunk]
        right = block[owners[start : start + chunk], np.arange(block.shape[1])]
        # images scoring at least as well as the right one, the right one included
        ranks[start : start + chunk] = (block >= right[None, :]).sum(axis=0)
    return ranks


def image_to_text_ranks(
    scores: np.ndarray, image_of_text: np.ndarray, chunk: int = 1024
) -> np.ndarray:
    """Rank of each image's best-placed right caption among all captions.

    Args:
        scores: (I, C) similarity of image i to caption c; higher = better match.
        image_of_text: (C,) int, the image each caption describes.
        chunk: images per step (bounds memory at (chunk, C) booleans).

    Returns:
        (I,) int64 ranks, 1 = a right caption first. An image without captions gets C + 1.
    """
    scores, owners = _check(scores, image_of_text)
    n_images, n_texts = scores.shape
    ranks = np.empty(n_images, dtype=np.int64)
    for start in range(0, n_images, chunk):
        block = scores[start : start + chunk]
        right = owners[None, :] == np.arange(start, start + len(block))[:, None]
        best = np.where(right, block, -np.inf).max(axis=1)
        wrong_above = ((block >= best[:, None]) & ~right).sum(axis=1)
        ranks[start : start + chunk] = np.where(right.any(axis=1), wrong_above + 1, n_texts + 1)
    return ranks


def ranks_from_hits(
    hits: Sequence[Sequence[Hashable]],
    relevant: Sequence[Collection[Hashable]],
    *,
    n_candidates: int,
) -> np.ndarray:
    """Rank of the first relevant id in each query's ranked hit list (e.g. an index search).

    Args:
        hits: per query, the ids returned, best first.
        relevant: per query, the ids that count as right.
        n_candidates: how many items could have been returned; a query whose hits hold no
            relevant id gets this rank (the worst), so search with k = n_candidates for exact
            mean and median ranks.

    Returns:
        (Q,) int64 ranks, 1 = a relevant id first.
    """
    if len(hits) != len(relevant):
        raise ValueError(f"{len(hits)} hit lists for {len(relevant)} queries")
    ranks = np.full(len(hits), n_candidates, dtype=np.int64)
    for q, (ids, right) in enumerate(zip(hits, relevant, strict=True)):
        for pos, item in enumerate(ids, 1):
            if item in right:
                ranks[q] = pos
                break
    return ranks


def rank_summary(ranks: np.ndarray, ks: Sequence[int] = KS, prefix: str = "") -> dict[str, float]:
    """``{prefix}r1``, ``r5``, ``r10`` (fraction of ranks ≤ K), ``median_rank``, ``mean_rank``;
    NaN everywhere for no queries."""
    ranks = np.asarray(ranks)
    empty = not len(ranks)
    out = {f"{prefix}r{k}": float("nan") if empty else float((ranks <= k).mean()) for k in ks}
    out[f"{prefix}median_rank"] = float("nan") if empty else float(np.median(ranks))
    out[f"{prefix}mean_rank"] = float("nan") if empty else float(ranks.mean())
    return out


def crossmodal_metrics(
    scores: np.ndarray, image_of_text: np.ndarray, ks: Sequence[int] = KS
) -> dict[str, float]:
    """Both directions' R@K and ranks (``i2t_*``, ``t2i_*``) and ``rsum``, the sum of the
    R@K of both (the usual model-selection number; max ``2 * len(ks)``).

    Args:
        scores: (I, C) similarity of image i to caption c; higher = better match.
        image_of_text: (C,) int, the image each caption describes.
    """
    out = rank_summary(image_to_text_ranks(scores, image_of_text), ks, "i2t_")
    out |= rank_summary(text_to_image_ranks(scores, image_of_text), ks, "t2i_")
    out["rsum"] = float(sum(out[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in ks))
    return out


def _check(scores: np.ndarray, image_of_text: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float32)
    owners = np.asarray(image_of_text, dtype=np.int64)
    if scores.ndim != 2 or owners.shape != (scores.shape[1],):
        raise ValueError(f"scores {scores.shape} need one image id per column, got {owners.shape}")
    if len(owners) and (owners.min() < 0 or owners.max() >= scores.shape[0]):
        raise ValueError(
            f"image ids {owners.min()}..{owners.max()} outside 0..{scores.shape[0] - 1}"
        )
    return scores, owners
