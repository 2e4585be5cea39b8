"""``platform evaluate``: kNN accuracy and retrieval metrics of a split through the index."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from embplat.cli.output import best_rejection, console, print_json, progress_bars
from embplat.cli.output import fmt_metric as _f


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
    model: Annotated[
        str | None, typer.Option("--model", help="a trained model (`platform models list`)")
    ] = None,
    zero_shot: Annotated[
        bool, typer.Option("--zero-shot", help="DeViSE: ZSL on testclasses, GZSL seen/unseen/H")
    ] = False,
    calibrate: Annotated[
        bool, typer.Option(help="zero-shot: also report H with calibrated stacking")
    ] = True,
    plots: Annotated[bool, typer.Option(help="zero-shot: save confusion-matrix PNGs")] = True,
    report: Annotated[
        Path | None, typer.Option(help="write a self-contained HTML report (implies the full run)")
    ] = None,
    projection: Annotated[str, typer.Option(help="report's 2-D map: auto|pca|umap")] = "auto",
    unknown: Annotated[
        str | None,
        typer.Option(
            help="comma-separated classes treated as never enrolled: their queries should be "
            "answered unknown (open-set curve; implies the full run)"
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Precision@1, recall@k, MAP@R, kNN accuracy and a per-class report for one split.

    With --model or --report: the full evaluation of that model (default the active
    encoder): exact search and the index side by side, kNN accuracy@1/@10, NMI/AMI, an
    open-set accuracy/coverage curve (test-split classes and --unknown ones as unknown),
    metrics recorded in the catalog (`platform models compare`). With --zero-shot: a
    visual-semantic model's ZSL and GZSL accuracies instead.
    """
    if zero_shot:
        _zero_shot(ctx, model, calibrate, plots, json_out)
        return
    from embplat.pipelines.query import check_split

    check_split(split)
    check_split(reference, "--reference")
    ref = reference or ("test" if split == "test" else "train")
    held = [c.strip() for c in (unknown or "").split(",") if c.strip()]
    if model is not None or report is not None or held:
        _full(ctx, model, split, ref, k, weighted, report, projection, held, json_out)
        return
    from embplat.pipelines.evaluate import evaluate_split

    with progress_bars(not json_out) as bars:
        m = evaluate_split(
            ctx.obj.context(),
            split=split,
            reference=ref,
            k=k,
            weighted=weighted,
            progress=bars,
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


def _full(
    ctx: typer.Context,
    model: str | None,
    split: str,
    reference: str,
    k: int,
    weighted: bool,
    report: Path | None,
    projection: str,
    unknown: list[str],
    json_out: bool,
) -> None:
    from embplat.pipelines.evaluate_model import evaluate_model

    ks = (1, k) if k > 1 else (1,)
    with progress_bars(not json_out) as bars:
        r = evaluate_model(
            ctx.obj.context(),
            model=model,
            split=split,
            reference=reference,
            ks=ks,
            weighted=weighted,
            report=report,
            projection=projection,
            unknown=unknown,
            progress=bars,
        )
    if json_out:
        print_json(r)
        return
    console.print(_exact_vs_index(r))
    per_class = Table("class", "precision@1", "precision", "recall", "f1", "support")
    for name, row in r["per_class"].items():
        cells = (row["precision_at_1"], row["precision"], row["recall"], row["f1-score"])
        per_class.add_row(name, *(f"{x:.3f}" for x in cells), str(int(row["support"])))
    console.print(per_class)
    best = best_rejection(r["open_set"])
    if best is not None:
        accept_all = _f(r["open_set"][0]["accuracy"])
        console.print(f"open set: accepting everything, accuracy {accept_all}; {best}")
    console.print(f"{r['recorded']} metrics recorded for {r['model']} ({r['recorded_as']})")
    if r["report"]:
        console.print(f"report: {r['report']}")


def _exact_vs_index(r: dict[str, Any]) -> Table:
    """Exact search and the index's search side by side, with the difference."""
    title = f"{r['model']} · {r['split']} vs {r['reference']} · {r['queries']} queries"
    table = Table("metric", "exact", f"index ({r['index']})", "Δ", title=title)
    table.title_justify = "left"
    ann = r.get("ann") or {"metrics": {}, "delta": {}}
    for key, value in r["metrics"].items():
        table.add_row(key, f"{value:.4f}", _f(ann["metrics"].get(key)), _f(ann["delta"].get(key)))
    for key, value in (ann.get("agreement") or {}).items():
        table.add_row(f"index vs exact {key}", "", f"{value:.4f}", "")
    return table


def _zero_shot(
    ctx: typer.Context, model: str | None, calibrate: bool, plots: bool, json_out: bool
) -> None:
    from embplat.pipelines.zeroshot import evaluate_zero_shot

    with progress_bars(not json_out) as bars:
        r = evaluate_zero_shot(
            ctx.obj.context(), model=model, calibrate=calibrate, plots=plots, progress=bars
        )
    if json_out:
        print_json(r)
        return
    table = Table("metric", "value", title=f"{r['model']} · zero-shot", title_justify="left")
    zsl, g = r["zsl"], r["gzsl"]
    if zsl:
        table.add_row(f"ZSL top-1 among {zsl['labels']} unseen labels", _f(zsl["top1"]))
        table.add_row(f"ZSL top-{zsl['top5_k']}", _f(zsl["top5"]))
    table.add_row(
        f"GZSL seen / unseen / H ({g['seen_images']}+{g['unseen_images']} images)",
        f"{_f(g['seen'])} / {_f(g['unseen'])} / {_f(g['H'])}",
    )
    c = r["calibrated"]
    if c:
        for tag, m in (("without", c["without"]), (f"with gamma={c['gamma']:g}", c["with"])):
            table.add_row(
                f"GZSL on the eval half, {tag} calibration",
                f"{_f(m['seen'])} / {_f(m['unseen'])} / {_f(m['H'])}",
            )
    console.print(table)
    for name, acc in (zsl or {}).get("per_class_top1", {}).items():
        console.print(f"  {name}: ZSL top-1 {acc:.3f}")
    for path in r["plots"]:
        console.print(f"plot: {path}")
