"""``platform models list|show|embed``: trained models, their lineage and their index."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from embplat.cli.output import console, fmt_metric, print_json, progress_bars
from embplat.models.train_config import frozen_phase

models_app = typer.Typer(no_args_is_help=True, help="Trained models: list, lineage, embed.")


def register(app: typer.Typer) -> None:
    """Attach this group to the root app."""
    app.add_typer(models_app, name="models")


def _info(record: Any) -> dict[str, Any]:
    info = {
        "name": record.name,
        "kind": record.kind,
        "encoder": record.encoder,
        "weights": record.weights,
        "dim": record.dim,
        "image_size": record.image_size,
        "created_at": record.created_at,
        **(record.config or {}),
    }
    return {**info, "registered": registered_as(info)}


def registered_as(info: dict[str, Any]) -> str:
    """What a trained model's registered checkpoint is: its head on the frozen pretrained
    backbone, or a fine-tuned backbone (trained in some epoch up to the registered one),
    with the epoch and its phase; "" for a model without epochs (a pretrained encoder).

    A classifier answers ``classify`` with its softmax head, so its kNN features are the
    pretrained encoder's when its head was the only thing trained.
    """
    best = info.get("best_epoch")
    upto = [e for e in info.get("epochs") or [] if best is not None and e["epoch"] <= best]
    if not upto:
        return ""
    phase = next((e["phase"] for e in upto if e["epoch"] == best), upto[-1]["phase"])
    tuned = any(not frozen_phase(str(e["phase"])) for e in upto)
    head = "softmax head" if info.get("kind") == "classifier" else "head"
    what = f"{head} + fine-tuned backbone" if tuned else f"{head} on the frozen backbone"
    return f"{what}, epoch {best} ({phase})"


def _short(registered: str) -> str:
    """``registered_as``'s sentence for a table cell: ``frozen, epoch 2`` or
    ``fine-tuned, epoch 4``."""
    if not registered:
        return ""
    what = "fine-tuned" if "fine-tuned" in registered else "frozen"
    return f"{what}, {registered.split(', ', 1)[1].split(' (')[0]}"


@models_app.command("list")
def models_list(
    ctx: typer.Context,
    all_models: Annotated[bool, typer.Option("--all", help="include pretrained encoders")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Registered models: trained ones (and with --all the pretrained encoders)."""
    from embplat.catalog import repo

    with ctx.obj.context().sessions() as session:
        rows = [_info(m) for m in repo.list_models(session=session)]
    rows = [r for r in rows if all_models or r["kind"] != "encoder"]
    if json_out:
        print_json(rows)
        return
    table = Table("name", "kind", "encoder", "dim", "px", "registered", "metric", "classes")
    for r in rows:
        epochs: list[dict[str, Any]] = r.get("epochs", [])
        best = next((e for e in epochs if e["epoch"] == r.get("best_epoch")), {})
        metric = best.get("metric")
        table.add_row(
            r["name"],
            r["kind"],
            r["encoder"],
            str(r["dim"]),
            str(r["image_size"]),
            _short(r["registered"]),
            f"{r.get('metric', '')} {fmt_metric(metric)}" if metric is not None else "",
            str(len(r.get("data", {}).get("classes", []))) if r.get("data") else "",
        )
    console.print(table)


@models_app.command("show")
def models_show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="model name, e.g. devise-1")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A model's lineage: config, data seen, metrics per epoch, checkpoint, index, plots."""
    from embplat.catalog import repo
    from embplat.cli.training_run import epochs_table

    with ctx.obj.context().sessions() as session:
        info = _info(repo.get_model(session=session, name=name))
    if json_out:
        print_json(info)
        return
    for key in ("name", "kind", "encoder", "dim", "image_size", "checkpoint", "collection"):
        console.print(f"[bold]{key}[/]: {info.get(key)}")
    if info["registered"]:
        console.print(f"[bold]registered[/]: {info['registered']}")
    data = info.get("data") or {}
    if data:
        of = (
            f"of {', '.join(data['classes'])}"
            if data.get("classes")
            else f"with {data.get('train_captions', 0)} / {data.get('valid_captions', 0)} captions"
        )
        console.print(
            f"[bold]data[/]: {data['train_images']} train / {data['valid_images']} valid images "
            + of
        )
    if info.get("vectors"):
        console.print(f"[bold]word vectors[/]: {info['vectors']}")
    for line in _semantic_lines(info):
        console.print(line)
    if info.get("train_config"):
        console.print(f"[bold]config[/]: {info['train_config']}")
    if info.get("epochs"):
        console.print(epochs_table(info))
    for path in info.get("plots") or []:
        console.print(f"[bold]plot[/]: {path}")


def _semantic_lines(info: dict[str, Any]) -> list[str]:
    """A DeViSE model's ridge projection (alpha, how chosen, each alpha's split score) and
    stored GZSL calibration (gamma, each split's own best), for ``models show``."""
    lines = []
    projection = info.get("projection") or {}
    if projection.get("method") == "ridge":
        scores = ", ".join(f"{a}: {s:.3f}" for a, s in (projection.get("cv_scores") or {}).items())
        how = f"chosen over class splits ({scores})" if scores else projection.get("chosen")
        lines.append(f"[bold]projection[/]: ridge, alpha {projection['alpha']:g}, {how}")
    calibration = info.get("gzsl_calibration") or {}
    if calibration.get("gamma") is not None:
        folds = ", ".join(f"{g:g}" for g in calibration.get("fold_gammas") or [])
        lines.append(
            f"[bold]GZSL calibration[/]: gamma {calibration['gamma']:g}"
            + (f" (each split's own: {folds})" if folds else "")
        )
    return lines


@models_app.command("embed")
def models_embed(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="trained model name")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Embed cataloged images the model's index lacks (and refresh its label vectors)."""
    from embplat.catalog import repo
    from embplat.pipelines.ingest import embed_into_models
    from embplat.pipelines.semantic import SEMANTIC_KINDS, publish_label_vectors

    context = ctx.obj.context()
    with context.sessions() as session:
        kind = repo.get_model(session=session, name=name).kind
    with progress_bars(not json_out) as bars:
        info = embed_into_models(context, [name], bars)[name]
    labels = publish_label_vectors(context, name) if kind in SEMANTIC_KINDS else []
    result = {"model": name, **info, "labels": len(labels)}
    if json_out:
        print_json(result)
        return
    if info["queued"]:
        console.print(
            f"{name}: queued {info['queued']} images for the workers as job {info['job_id']}: "
            "follow with `platform jobs --watch`"
        )
        return
    console.print(f"{name}: {info['embedded']} images embedded, {len(labels)} label vectors")


@models_app.command("compare")
def models_compare(
    ctx: typer.Context,
    names: Annotated[list[str], typer.Argument(help="two or more model names")],
    split: Annotated[
        str | None, typer.Option(help="only metrics of this split (default: all)")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Recorded metrics of models side by side (`platform evaluate --model NAME` records)."""
    from embplat.catalog import repo
    from embplat.cli.output import warn_line

    with ctx.obj.context().sessions() as session:
        metrics = repo.model_metrics(session=session, names=names, split=split)
    if json_out:
        print_json(metrics)
        return
    for name, values in metrics.items():
        if not values:
            warn_line(f"{name} has no recorded metrics; run `platform evaluate --model {name}`")
    keys = list(dict.fromkeys(k for values in metrics.values() for k in values))
    table = Table("metric", *names, title=f"split {split}" if split else None)
    for key in keys:
        cells = [metrics[n].get(key) for n in names]
        table.add_row(key, *(fmt_metric(v) for v in cells))
    console.print(table)
