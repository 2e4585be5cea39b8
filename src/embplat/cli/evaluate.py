"""``platform evaluate``: kNN accuracy and retrieval metrics of a split through the index."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from embplat.cli.output import console, print_json, progress_bars
from embplat.pipelines.evaluate import evaluate_split


def register(app: typer.Typer) -> None:
    """Attach this command to the root app."""
    app.command("evaluate")(evaluate_cmd)


def evaluate_cmd(
    ctx: typer.Context,
    split: Annotated[str, typer.Option(help="queries: valid|test|train")] = "valid",
    reference: Annotated[
        str | None, typer.Option(help="searched split (default train; test → itself)")
    ] = None,
    k: Annotated[int, typer.Option("--k", help="neighbours in the vote")] = 10,
    weighted: Annotated[bool, typer.Option(help="similarity-weighted votes")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Precision@1, recall@k, MAP@R, kNN accuracy and a per-class report for one split."""
    ref = reference or ("test" if split == "test" else "train")
    with progress_bars(not json_out) as bars:
        m = evaluate_split(
            ctx.obj.context(), split=split, reference=ref, k=k, weighted=weighted, progress=bars
        )
    if json_out:
        print_json(m)
        return
    summary = Table(
        "metric", "value", title=f"{m['model']} · {split} vs {ref}", title_justify="left"
    )
    for key in (
        "queries",
        "references",
        "accuracy",
        "precision_at_1",
        "r_precision",
        "mean_average_precision_at_r",
        *[x for x in m if x.startswith("recall@")],
    ):
        value = m[key]
        summary.add_row(
            f"kNN accuracy (k={m['k']})" if key == "accuracy" else key,
            f"{value:.4f}" if isinstance(value, float) else str(value),
        )
    console.print(summary)
    per_class = Table("class", "precision", "recall", "f1", "support")
    for name, r in m["per_class"].items():
        per_class.add_row(
            name,
            *(f"{r[x]:.3f}" for x in ("precision", "recall", "f1-score")),
            str(int(r["support"])),
        )
    console.print(per_class)
