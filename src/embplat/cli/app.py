"""The ``platform`` command: builds Settings once, then dispatches to command groups."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.exc import DatabaseError
from typer.core import TyperGroup

from embplat.cli.output import error_line
from embplat.config import Settings, load_settings
from embplat.errors import EmbplatError
from embplat.pipelines.context import Context


class _Group(TyperGroup):
    """Turns project errors into one red line and exit code 2, never a traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except EmbplatError as exc:
            error_line(str(exc))
            raise typer.Exit(2) from None
        except DatabaseError as exc:  # a catalog damaged past the pages the schema check reads
            from embplat.catalog.db import catalog_failure

            url = ctx.obj.settings.catalog_url if isinstance(ctx.obj, State) else "the catalog"
            error_line(str(catalog_failure(url, exc)))
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            error_line("interrupted; everything committed so far is kept, re-run to resume")
            raise typer.Exit(130) from None


app = typer.Typer(
    cls=_Group,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    help="embplat: labelled images → a searchable embedding space (kNN classify, search).",
)


@dataclass
class State:
    """What the callback builds once: settings, and the context on first use."""

    settings: Settings
    _ctx: Context | None = field(default=None, repr=False)

    def context(self) -> Context:
        """The use-case context (opens the catalog on first call)."""
        if self._ctx is None:
            from embplat.workers.context import build_context

            self._ctx = build_context(self.settings)
        return self._ctx

    def close(self) -> None:
        """Flush the index if it was opened."""
        if self._ctx is not None:
            self._ctx.close()


@app.callback()
def main_callback(
    ctx: typer.Context,
    home: Annotated[Path | None, typer.Option(help="data home [env EMBPLAT_HOME]")] = None,
    catalog_url: Annotated[str | None, typer.Option(help="SQLAlchemy URL of the catalog")] = None,
    backend: Annotated[str | None, typer.Option(help="index: auto|nmslib|exact|qdrant")] = None,
    encoder: Annotated[str | None, typer.Option(help="image encoder (see `encoders`)")] = None,
    weights: Annotated[str | None, typer.Option(help="weights name or local .pth")] = None,
    image_size: Annotated[int | None, typer.Option(help="encoder input side in pixels")] = None,
    device: Annotated[str | None, typer.Option(help="auto|cpu|cuda[:N]")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
) -> None:
    """Settings precedence: these flags > environment (EMBPLAT_*) > .env > defaults."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = load_settings(
            **{
                "home": home,
                "catalog.url": catalog_url,
                "index.backend": backend,
                "embed.encoder": encoder,
                "embed.weights": weights,
                "embed.image_size": image_size,
                "embed.device": device,
            }
        )
    except EmbplatError as exc:
        error_line(str(exc))
        raise typer.Exit(2) from None
    state = State(settings)
    ctx.obj = state
    ctx.call_on_close(state.close)


def _register_groups() -> None:
    from embplat.cli import (
        admin,
        datasets,
        doctor,
        evaluate,
        experiment,
        images,
        ingest,
        models,
        query,
        train,
        vectors,
        worker,
    )

    for module in (
        ingest,
        images,
        query,
        evaluate,
        admin,
        doctor,
        worker,
        train,
        models,
        vectors,
        experiment,
    ):
        module.register(app)
    app.add_typer(datasets.app, name="datasets", help="Build sample datasets from local files.")


_register_groups()


def main() -> None:
    """Console-script entry point."""
    app()
