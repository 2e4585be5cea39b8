"""``platform evaluate``: kNN accuracy and retrieval metrics of a split through the index."""

from __future__ import annotations

from pathlib import Path
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
from embplat.errors import ConfigError


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
    beam: Annotated[
        str, typer.Option(help="captioning model: comma-separated beam widths scored")
    ] = "1,3,5",
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Precision@1, recall@k, MAP@R, kNN accuracy and a per-class report for one split.

    With --model or --report: the full evaluation of that model (default the active
    encoder): exact search and the index side by side, kNN accuracy@1/@10, NMI/AMI, an
    open-set accuracy/coverage curve (test-split classes and --unknown ones as unknown),
    metrics recorded in the catalog (`platform models compare`). With --zero-shot: a
    visual-semantic model's ZSL and GZSL accuracies instead. With a matching model: R@1/5/10
    and median/mean rank image→text and text→image on the test split, exact and through
    the index, recorded. With a captioning model: BLEU-1..4 on the test split at each
    --beam width and the top-5 token accuracy, recorded.
    """
    from embplat.pipelines.evaluate import EvaluationRequest, evaluate

    request = EvaluationRequest(
        split=split,
        reference=reference,
        k=k,
        weighted=weighted,
        model=model,
        unknown=tuple(comma_list(unknown)),
        report=report,
        projection=projection,
        zero_shot=zero_shot,
        calibrate=calibrate,
        plots=plots,
        beams=_beams(beam),
    )
    with progress_bars(not json_out) as bars:
        r = evaluate(ctx.obj.context(), request, bars)
    if json_out:
        print_json(r)
    elif "beams" in r:
        _print_captioning(r)
    elif "index_similarity" in r:
        _print_crossmodal(r)
    elif zero_shot:
        _print_zero_shot(r)
    elif request.complete:
        _print_full(r)
    else:
        _print_knn(r)


def _print_knn(m: dict[str, Any]) -> None:
    summary = Table(
        "metric",
        "value",
        title=f"{m['model']} · {m['split']} vs {m['reference']}",
        title_justify="left",
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
            fmt_metric(value),
        )
    console.print(summary)
    console.print(_per_class(m["per_class"], ()))


def _print_full(r: dict[str, Any]) -> None:
    console.print(_exact_vs_index(r))
    console.print(_per_class(r["per_class"], ("precision_at_1",)))
    best = best_rejection(r["open_set"])
    if best is not None:
        accept_all = fmt_metric(r["open_set"][0]["accuracy"])
        console.print(f"open set: accepting everything, accuracy {accept_all}; {best}")
    head = r.get("softmax")
    if head:
        console.print(
            f"[bold]softmax head[/]: accuracy {fmt_metric(head['accuracy'])} on "
            f"{head['images']} images (kNN above: the backbone's features)"
        )
        console.print(head["classification_report"], markup=False, highlight=False)
    console.print(f"{r['recorded']} metrics recorded for {r['model']} ({r['recorded_as']})")
    if r["report"]:
        console.print(f"report: {r['report']}")


def _per_class(rows: dict[str, dict[str, float]], extra: tuple[str, ...]) -> Table:
    """precision, recall, F1 and support of each class, after the ``extra`` columns."""
    columns = (*extra, "precision", "recall", "f1-score")
    table = Table("class", *(c.replace("-score", "").replace("_at_", "@") for c in columns))
    table.add_column("support")
    for name, row in rows.items():
        table.add_row(name, *(fmt_metric(row[c], 3) for c in columns), str(int(row["support"])))
    return table


def _exact_vs_index(r: dict[str, Any]) -> Table:
    """Exact search and the index's search side by side, with the difference."""
    title = f"{r['model']} · {r['split']} vs {r['reference']} · {r['queries']} queries"
    table = Table("metric", "exact", f"index ({r['index']})", "Δ", title=title)
    table.title_justify = "left"
    ann = r.get("ann") or {"metrics": {}, "delta": {}}
    for key, value in r["metrics"].items():
        table.add_row(
            key,
            fmt_metric(value),
            fmt_metric(ann["metrics"].get(key)),
            fmt_metric(ann["delta"].get(key)),
        )
    for key, value in (ann.get("agreement") or {}).items():
        table.add_row(f"index vs exact {key}", "", fmt_metric(value), "")
    return table


def _print_crossmodal(r: dict[str, Any]) -> None:
    """Both directions' R@K and ranks, exact (the model's similarity) and through the index."""
    title = f"{r['model']} · {r['split']} · {r['images']} images, {r['captions']} captions"
    table = Table("metric", f"exact ({r['loss']})", "index (cosine)", title=title)
    table.title_justify = "left"
    for key, value in r["metrics"].items():
        table.add_row(key, fmt_metric(value), fmt_metric(r["index"].get(key)))
    console.print(table)
    console.print(f"{r['recorded']} metrics recorded for {r['model']} ({r['split']})")


def _print_zero_shot(r: dict[str, Any]) -> None:
    table = Table("metric", "value", title=f"{r['model']} · zero-shot", title_justify="left")
    zsl, g = r["zsl"], r["gzsl"]
    if zsl:
        table.add_row(f"ZSL top-1 among {zsl['labels']} unseen labels", fmt_metric(zsl["top1"]))
        table.add_row(f"ZSL top-{zsl['top5_k']}", fmt_metric(zsl["top5"]))
    table.add_row(
        f"GZSL seen / unseen / H ({g['seen_images']}+{g['unseen_images']} images)",
        f"{fmt_metric(g['seen'])} / {fmt_metric(g['unseen'])} / {fmt_metric(g['H'])}",
    )
    c = r["calibrated"]
    if c:
        for tag, m in (("without", c["without"]), (f"with gamma={c['gamma']:g}", c["with"])):
            table.add_row(
                f"GZSL on the eval half, {tag} calibration",
                f"{fmt_metric(m['seen'])} / {fmt_metric(m['unseen'])} / {fmt_metric(m['H'])}",
            )
    for method, h in r.get("hubness", {}).items():
        if zsl:
            table.add_row(f"ZSL top-1, hubness {method}", fmt_metric(h["zsl_top1"]))
        m = h["gzsl"]
        table.add_row(
            f"GZSL seen / unseen / H, hubness {method}",
            f"{fmt_metric(m['seen'])} / {fmt_metric(m['unseen'])} / {fmt_metric(m['H'])}",
        )
    console.print(table)
    for name, acc in (zsl or {}).get("per_class_top1", {}).items():
        console.print(f"  {name}: ZSL top-1 {fmt_metric(acc, 3)}")
    for path in r["plots"]:
        console.print(f"plot: {path}")


def _beams(text: str) -> tuple[int, ...]:
    try:
        beams = tuple(int(b) for b in comma_list(text))
    except ValueError:
        raise ConfigError(f"--beam {text!r}: give widths such as 1,3,5") from None
    if not beams:
        raise ConfigError("--beam: give at least one width, e.g. 3")
    return beams


def _print_captioning(r: dict[str, Any]) -> None:
    """BLEU per beam width, top-5 accuracy and a few generated captions."""
    table = Table("beam", "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "s", title=r["model"])
    for beam, s in r["beams"].items():
        bleu = [fmt_metric(s[f"bleu{n}"]) for n in range(1, 5)]
        table.add_row(str(beam), *bleu, f"{s['seconds']:.1f}")
    console.print(table)
    console.print(
        f"{r['images']} {r['split']} images, {r['references']} reference captions; "
        f"top-5 token accuracy {fmt_metric(r['top5'])}"
    )
    for e in r["examples"]:
        console.print(
            f"{Path(e['path']).name}: {e['caption']}  [dim](e.g. {e['references'][0]})[/]"
        )
