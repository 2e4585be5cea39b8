"""``platform doctor``: find and repair drift between the catalog and the indexes."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from embplat.cli.output import console, print_json


def register(app: typer.Typer) -> None:
    """Attach the command to the root app."""
    app.command("doctor")(doctor)


def doctor(
    ctx: typer.Context,
    repair: Annotated[bool, typer.Option("--repair", help="fix what is found")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Compare the catalog with every index (damaged or missing files, points missing or
    unrecorded, orphans, bad vectors, stale payloads, image files gone, dead jobs, and in
    server mode jobs whose batches stopped moving).

    With `--repair`: a damaged index is moved aside and its readable points salvaged,
    missing or broken points are embedded again, unrecorded points recorded, orphans and
    stale payloads fixed, images whose file is gone removed.

    Exit code: 0 when nothing is left to repair, 1 otherwise.
    """
    from embplat.pipelines.doctor import run_doctor

    settings = ctx.obj.settings
    stale_after = None
    if settings.server_mode:  # by then Celery itself would have redelivered a live batch
        stale_after = settings.celery.visibility_timeout + settings.celery.task_time_limit
    report = run_doctor(ctx.obj.context(), repair=repair, stale_after=stale_after)
    if json_out:
        print_json(report.as_dict())
    else:
        _print(report)
    if not report.healthy:
        raise typer.Exit(1)


def _print(report: object) -> None:
    from embplat.pipelines.doctor import DoctorReport

    assert isinstance(report, DoctorReport)
    for line in report.skipped:
        console.print(f"[dim]skipped {line}[/]")
    if report.findings:
        table = Table(title="findings")
        for col in ("where", "check", "count", "repaired", "what"):
            table.add_column(col, overflow="fold")
        for f in report.findings:
            mark = "[green]yes[/]" if f.resolved else ("[red]no[/]" if report.repair else "—")
            table.add_row(f.where, f.check, str(f.count), mark, f.message)
        console.print(table)
    for name, counts in report.collections.items():
        console.print(
            f"{name}: {counts['points']} image points, {counts['recorded']} recorded, "
            f"{counts['pending']} pending"
        )
    if report.healthy:
        verb = "repaired" if report.findings else "healthy"
        console.print(f"[green]{verb}[/]: catalog and indexes agree")
    elif not report.repair:
        console.print("[yellow]drift found[/]: run `platform doctor --repair`")
    else:
        console.print("[red]some drift could not be repaired[/] (see the table)")
