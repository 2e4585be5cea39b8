"""``platform experiment unseen``: metric learning's precision drop on never-trained classes."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from embplat.cli.output import (
    best_rejection,
    comma_list,
    console,
    fmt_metric,
    print_json,
    progress_bars,
)
from embplat.cli.train import JsonOpt, with_metric_options
from embplat.cli.training_run import StatusBars, metric_config, train_config

experiment_app = typer.Typer(no_args_is_help=True, help="Experiments that train and compare.")
Opt = typer.Option


def register(app: typer.Typer) -> None:
    """Attach this group to the root app."""
    app.add_typer(experiment_app, name="experiment")


@experiment_app.command("unseen")
@with_metric_options
def unseen_cmd(
    ctx: typer.Context,
    holdout: Annotated[int | None, Opt(help="hold out the last N classes")] = None,
    unseen: Annotated[str | None, Opt(help="comma-separated classes to hold out")] = None,
    name: Annotated[str | None, Opt(help="base of the model names (default unseen-N)")] = None,
    json_out: JsonOpt = False,
    **options: Any,
) -> None:
    """Train on all seen classes and again without the held-out ones; compare precision@1.

    Both models are evaluated on every class (valid queries against the train split, so the
    held-out classes are enrolled but never trained on); the drop is all-classes minus
    without-held-out precision@1.
    """
    from embplat.pipelines.experiment import unseen_experiment

    config = train_config(ctx, metric_config({**options, "name": name}))
    with progress_bars(not json_out) as bars:
        result = unseen_experiment(
            ctx.obj.context(),
            config,
            holdout=holdout,
            unseen=comma_list(unseen),
            progress=StatusBars(bars.progress),
        )
    if json_out:
        print_json(result)
        return
    console.print(drop_table(result))
    drop = result["drop"]
    console.print(
        "mean precision@1 drop: held-out classes "
        f"[bold]{fmt_metric(drop['mean_drop_unseen'])}[/], "
        f"other classes {fmt_metric(drop['mean_drop_seen'])}, all classes "
        f"[bold]{fmt_metric(drop['mean_drop_all'])}[/] (recorded in the catalog)"
    )
    console.print(open_set_line(result))


def open_set_line(result: dict[str, Any]) -> str:
    """The model trained without the held-out classes, with them not enrolled either."""
    open_set = result["open_set"]
    best = best_rejection(open_set["curve"])
    text = (
        f"held-out classes not enrolled, answered unknown by {result['models']['without']}: "
        f"knn_accuracy@10 of the other classes among themselves "
        f"{fmt_metric(open_set['seen_accuracy'])}; "
        f"ROC AUC known vs unknown by vote share {fmt_metric(open_set['auroc_share'])}, "
        f"by nearest score {fmt_metric(open_set['auroc_score'])}"
    )
    return f"{text}; {best}" if best else text


def drop_table(result: dict[str, Any]) -> Table:
    """Per-class precision@1 of both models and the drop, held-out classes marked."""
    full, without = result["models"]["all"], result["models"]["without"]
    table = Table(
        "class",
        f"P@1 {full}",
        f"P@1 {without}",
        "drop",
        title=f"{result['loss']}: held out {', '.join(result['held_out'])}",
        title_justify="left",
    )
    for name, row in result["drop"]["per_class"].items():
        label = f"[bold]{name}[/] (held out)" if row["unseen"] else name
        table.add_row(
            label,
            fmt_metric(row["all_classes"]),
            fmt_metric(row["without_unseen"]),
            fmt_metric(row["drop"]),
        )
    metrics = result["metrics"]
    for key in ("precision_at_1", "mean_average_precision_at_r", "knn_accuracy@10"):
        table.add_row(
            f"[dim]{key}[/]",
            fmt_metric(metrics[full].get(key)),
            fmt_metric(metrics[without].get(key)),
        )
    groups = result["groups"]
    for group in ("seen", "held_out"):
        for key in ("knn_accuracy@10", "precision_at_1"):
            a, b = groups[full][group][key], groups[without][group][key]
            drop = None if a is None or b is None else a - b
            table.add_row(
                f"[dim]{key}, {group.replace('_', '-')} classes[/]",
                fmt_metric(a),
                fmt_metric(b),
                fmt_metric(drop),
            )
    return table
