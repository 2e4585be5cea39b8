"""Use case: zero-shot evaluation of a visual-semantic model (ZSL and GZSL).

Images come from the model's own collection (pending ones are embedded first); label vectors
from the word vectors the model was trained against.

- ZSL: test-split images of unseen classes (testclasses), classified among the unseen labels
  only; per-class top-1 and top-5 (top-k with k = min(5, number of unseen labels)).
- GZSL: valid-split images of the model's training classes and test-split images of the
  unseen classes, classified among *all* those labels; seen, unseen and H.
- Calibrated stacking: the images are cut in two halves by their content hash; gamma is
  chosen on one half (the calibration half: the best H) and H with and without it is
  reported on the other half, so gamma never sees the images it is scored on.
- Stored calibration: GZSL with the gamma chosen at training time from the seen classes
  only (what ``label_images`` applies by default), on all the held-out images above.
- Hubness corrections: ZSL and uncalibrated GZSL with each label's scores rescored against
  every image of the model's space (CSLS, inverted softmax), as ``classify --space semantic
  --hubness`` scores them, so a label near every image stops taking both unseen classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from embplat.catalog import repo
from embplat.errors import DataError
from embplat.evaluation.hubness import HUBNESS_METHODS
from embplat.evaluation.metrics import confusion
from embplat.evaluation.plots import confusion_figure, save_png
from embplat.evaluation.zeroshot import (
    calibrated_summary,
    gzsl_accuracy,
    gzsl_predictions,
    image_counts,
    rounded,
    zsl_summary,
)
from embplat.pipelines.context import Context
from embplat.pipelines.semantic import label_space, semantic_model
from embplat.pipelines.semantic_scores import image_points, label_scores, stored_gamma
from embplat.pipelines.train import embed_catalog
from embplat.progress import ProgressSink


def evaluate_zero_shot(
    ctx: Context,
    *,
    model: str | None = None,
    calibrate: bool = True,
    plots: bool = True,
    progress: ProgressSink | None = None,
) -> dict[str, Any]:
    """ZSL top-1/top-5 on unseen classes; GZSL seen/unseen/H without calibration, with the
    gamma stored at training time, and (``calibrate``) with a gamma chosen on half the images.

    Raises:
        NotFoundError: no such (or no) visual-semantic model.
        DataError: the catalog holds no held-out images of the model's classes.
    """
    name = semantic_model(ctx, model)
    embed_catalog(ctx, name, progress)
    with ctx.sessions() as session:
        config = repo.get_model(session=session, name=name).config
        roles = repo.class_roles(session=session)
    seen = list(config["data"]["classes"])
    vecs, classes, hashes = _held_out(ctx, name, seen, roles)
    unseen = sorted({c for c in classes if c not in seen})
    names = seen + unseen
    labels = label_space(ctx, name).matrix(names)
    scores = vecs @ labels.T
    y = np.array([names.index(c) for c in classes], dtype=np.int64)
    seen_cols = np.array([n in seen for n in names])
    report: dict[str, Any] = {
        "model": name,
        "vectors": (config.get("vectors") or {}).get("origin"),
        "seen_classes": seen,
        "unseen_classes": unseen,
        "zsl": zsl_summary(scores, y, seen_cols, names),
        "gzsl": {**rounded(gzsl_accuracy(scores, y, seen_cols)), **image_counts(y, seen_cols)},
        "calibrated": calibrated_summary(scores, y, seen_cols, hashes) if calibrate else None,
        "stored_calibration": _stored(name, config, scores, y, seen_cols),
        "hubness": _hubness(ctx, name, vecs, labels, y, seen_cols, names),
        "plots": [],
    }
    if plots:
        report["plots"] = _plots(ctx, name, scores, y, names, report)
    return report


def _stored(
    model: str, config: dict[str, Any], scores: np.ndarray, y: np.ndarray, seen_cols: np.ndarray
) -> dict[str, Any]:
    """GZSL seen/unseen/H with the model's stored gamma (0 and a note without one)."""
    gamma, notes = stored_gamma(model, config)
    found = config.get("gzsl_calibration") or {}
    return {
        "gamma": gamma,
        "method": found.get("method"),
        **rounded(gzsl_accuracy(scores, y, seen_cols, gamma=gamma)),
        "notes": notes,
    }


def _hubness(
    ctx: Context,
    model: str,
    vecs: np.ndarray,
    labels: np.ndarray,
    y: np.ndarray,
    seen_cols: np.ndarray,
    names: list[str],
) -> dict[str, dict[str, Any]]:
    """Per correction: ZSL top-1 (and per class) and GZSL seen/unseen/H without gamma, the
    labels scored against all of the space's images (what ``label_images`` uses)."""
    pool = image_points(ctx, ctx.spaces.space(model)).vectors
    out: dict[str, dict[str, Any]] = {}
    for method in (m for m in HUBNESS_METHODS if m != "none"):
        scores = label_scores(vecs, labels, seen_cols, hubness=method, reference=pool)
        zsl = zsl_summary(scores, y, seen_cols, names)
        out[method] = {
            "zsl_top1": zsl["top1"] if zsl else None,
            "zsl_per_class_top1": zsl["per_class_top1"] if zsl else {},
            "gzsl": rounded(gzsl_accuracy(scores, y, seen_cols)),
        }
    return out


def _held_out(
    ctx: Context, model: str, seen: list[str], roles: dict[str, str]
) -> tuple[np.ndarray, list[str], list[str]]:
    """Unit vectors (N, D), class names and sha256 of valid images of ``seen`` classes and
    test images of unseen classes."""
    space = ctx.spaces.space(model)
    with ctx.sessions() as session:
        rows = repo.embedded_images(
            session=session, collection_id=space.collection_id, splits=["valid", "test"]
        )
    keep = [
        r
        for r in rows
        if (r[1] == "valid" and r[2] in seen) or (r[1] == "test" and roles.get(r[2]) == "unseen")
    ]
    if not keep:
        raise DataError(
            f"no held-out images for {model}: valid images of its classes or test images of "
            "unseen classes; ingest an AwA2 tree with testclasses.txt"
        )
    vectors, payloads = space.index.get([r[3] for r in keep])
    return (
        np.asarray(vectors, dtype=np.float32),
        [r[2] for r in keep],
        [str(p.get("sha256", "")) for p in payloads],
    )


def _plots(
    ctx: Context,
    model: str,
    scores: np.ndarray,
    y: np.ndarray,
    names: list[str],
    report: dict[str, Any],
) -> list[str]:
    out = ctx.home / "models" / model
    seen_cols = np.array([n in report["seen_classes"] for n in names])
    paths: list[Path] = []
    gammas = [("gzsl", 0.0)]
    if report["calibrated"]:
        gammas.append(("gzsl_calibrated", report["calibrated"]["gamma"]))
    if report["stored_calibration"]["method"]:
        gammas.append(("gzsl_stored", report["stored_calibration"]["gamma"]))
    for tag, gamma in gammas:
        matrix = confusion(y, gzsl_predictions(scores, seen_cols, gamma), range(len(names)))
        figure = confusion_figure(names, matrix, f"{model} GZSL, all labels (gamma={gamma:g})")
        paths.append(save_png(figure, out / f"{tag}.png"))
    return [str(p) for p in paths]
