"""Running a recipe from the CLI: options to a recipe config, live bars, the result table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer
from rich.progress import TaskID
from rich.table import Table

from embplat.cli.output import (
    RichProgress,
    comma_list,
    console,
    fmt_metric,
    print_json,
    progress_bars,
)


class StatusBars(RichProgress):
    """Rich bars whose newest bar also shows a live status (loss, images/s)."""

    _task: TaskID | None = None
    _label = ""

    def task(self, description: str, total: int) -> Callable[[int], None]:
        """Add a bar; returns ``advance(n)``."""
        task_id = self.progress.add_task(description, total=total)
        self._task, self._label = task_id, description
        return lambda n: self.progress.advance(task_id, n)

    def status(self, text: str) -> None:
        """Append ``text`` to the newest bar's description."""
        if self._task is not None:
            self.progress.update(self._task, description=f"{self._label} [dim]{text}[/]")


def metric_config(options: dict[str, Any]) -> dict[str, Any]:
    """CLI options → ``MetricConfig`` fields: ``epochs`` are the unfrozen epochs; the LR
    defaults to 1e-3 for Adam and 1e-2 for SGD."""
    out = dict(options)
    out["unfreeze_epochs"] = out.pop("epochs")
    if out.get("lr") is None:
        out["lr"] = 1e-2 if out.get("optimizer") == "sgd" else 1e-3
    return out


def train_config(ctx: typer.Context, options: dict[str, Any]) -> dict[str, Any]:
    """A recipe's config dict from CLI options and the settings (encoder, device...)."""
    settings = ctx.obj.settings
    config = {k: v for k, v in options.items() if v is not None}
    if "encoder" not in config:  # the configured encoder, with its weights
        config["encoder"] = settings.embed.encoder
        if settings.embed.weights:
            config["weights"] = settings.embed.weights
    if settings.embed.image_size and "image_size" not in config:
        config["image_size"] = settings.embed.image_size
    if "classes" in config:
        config["classes"] = comma_list(config["classes"])
    config["device"] = settings.embed.device
    config["num_workers"] = settings.embed.num_workers
    return config


def run_recipe(ctx: typer.Context, recipe: str, options: dict[str, Any], json_out: bool) -> None:
    """Train ``recipe`` (in process with live bars, or queued for a worker) and print the
    registered model's epochs and summary."""
    from embplat.catalog import repo
    from embplat.pipelines.training_jobs import submit_training

    config = train_config(ctx, options)
    context = ctx.obj.context()
    with progress_bars(not json_out) as bars:
        out = submit_training(context, recipe, config, StatusBars(bars.progress))
    if out["queued"]:  # a GPU worker trains it, under this fixed name
        if json_out:
            print_json({**out, "task": out["queued"]})
        else:
            console.print(
                f"queued {recipe} training of {out['model']} as job {out['job']} (task "
                f"{out['queued']}): follow with `platform jobs --watch`, then "
                "`platform models list`"
            )
        return
    name = out["model"]
    with context.sessions() as session:
        record = repo.get_model(session=session, name=name)
        info = {"name": record.name, "kind": record.kind, "dim": record.dim, **record.config}
    if json_out:
        print_json(info)
        return
    console.print(epochs_table(info))
    data = info["data"]
    seen = (
        f"{data['train_captions']} captions of {data['train_images']} train images"
        if "train_captions" in data
        else f"{data['train_images']} train images of {len(data['classes'])} classes"
    )
    where = f" → index {info['collection']}" if info.get("collection") else ""
    untrained = f", untrained {info['baseline']}" if "baseline" in info else ""
    console.print(
        f"[bold green]{name}[/]: best epoch {info['best_epoch']} "
        f"({info['metric']}{untrained}), {seen}{where}"
    )
    for path in info.get("plots") or []:
        console.print(f"plot: {context.home / path}")


def epochs_table(info: dict[str, Any]) -> Table:
    """Per-epoch loss, metric and speed of a registered model (the best epoch starred)."""
    table = Table(
        "epoch", "phase", "loss", info.get("metric", "metric"), "img/s", "s", title=info["name"]
    )
    for e in info.get("epochs", []):
        star = " *" if e["epoch"] == info.get("best_epoch") else ""
        table.add_row(
            f"{e['epoch']}{star}",
            e["phase"],
            fmt_metric(e["loss"]),
            fmt_metric(e["metric"]),
            f"{e['images_per_s']:.1f}",
            f"{e['seconds']:.0f}",
        )
    return table
