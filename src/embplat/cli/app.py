"""The ``platform`` command: builds Settings once, then dispatches to command groups."""

from __future__ import annotations

import errno
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeGuard

import typer
from typer.core import TyperGroup

from embplat.cli.output import error_line
from embplat.errors import ConfigError, EmbplatError

if TYPE_CHECKING:  # imported when used: `--help` must not pay for them (tests/cli/test_startup)
    from sqlalchemy.exc import DatabaseError

    from embplat.config import Settings
    from embplat.pipelines.context import Context


#: Exit codes: a failed operation (bad data, a missing item, a service down), a usage error
#: (a bad option, value or configuration: Click's own usage errors exit 2 too), Ctrl-C.
EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def exit_code(exc: BaseException) -> int:
    """:data:`EXIT_USAGE` for a configuration or value the user must change, else
    :data:`EXIT_FAILED`."""
    return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILED


class _Group(TyperGroup):
    """Turns project errors into one red line and an exit code (:func:`exit_code`), never a
    traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except EmbplatError as exc:
            _mark_failed(ctx)
            error_line(str(exc))
            raise typer.Exit(exit_code(exc)) from None
        except OSError as exc:
            if not _storage_error(exc):
                raise
            _mark_failed(ctx)
            error_line(_storage_message(exc))
            raise typer.Exit(EXIT_FAILED) from None
        except Exception as exc:
            if not _database_error(exc):
                raise
            # a catalog damaged past the pages the schema check reads
            from embplat.catalog.db import catalog_failure

            url = ctx.obj.settings.catalog_url if isinstance(ctx.obj, State) else "the catalog"
            error_line(str(catalog_failure(url, exc)))
            raise typer.Exit(EXIT_FAILED) from None
        except KeyboardInterrupt:
            error_line("interrupted; everything committed so far is kept, re-run to resume")
            raise typer.Exit(EXIT_INTERRUPTED) from None


def _database_error(exc: Exception) -> TypeGuard[DatabaseError]:
    """An SQLAlchemy ``DatabaseError``, checked without importing SQLAlchemy: a command that
    never imported it cannot have raised one."""
    sa_exc = sys.modules.get("sqlalchemy.exc")
    return sa_exc is not None and isinstance(exc, sa_exc.DatabaseError)


def _mark_failed(ctx: Any) -> None:
    """Tell the closing ``State`` the command already printed its error."""
    if isinstance(ctx.obj, State):
        ctx.obj.failed = True


def _storage_message(exc: OSError) -> str:
    return (
        f"cannot write {exc.filename or 'the data home'}: {exc.strerror}; everything "
        "committed so far is kept: fix it, then re-run (or `platform doctor`)"
    )


def _storage_error(exc: OSError) -> bool:
    """A fault of the disk the user can fix (permissions, full or read-only file system)."""
    return isinstance(exc, PermissionError) or exc.errno in {
        errno.ENOSPC,
        errno.EROFS,
        errno.EDQUOT,
    }


app = typer.Typer(
    cls=_Group,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    help="embplat: labelled images → a searchable embedding space (kNN classify, search).",
)


@dataclass
class State:
    """What the callback builds once: settings, and the context on first use."""

    settings: Settings
    #: set once the command failed and printed its error line
    failed: bool = False
    _ctx: Context | None = field(default=None, repr=False)

    def context(self) -> Context:
        """The use-case context (opens the catalog on first call)."""
        if self._ctx is None:
            from embplat.workers.context import build_context

            self._ctx = build_context(self.settings)
        return self._ctx

    def close(self) -> None:
        """Flush the index if it was opened; a failure is one line and exit code 1 (none
        when the command already failed and said why)."""
        if self._ctx is None:
            return
        context, self._ctx = self._ctx, None
        try:
            context.close()
        except (EmbplatError, OSError) as exc:
            if isinstance(exc, OSError) and not _storage_error(exc):
                raise
            if not self.failed:
                error_line(_storage_message(exc) if isinstance(exc, OSError) else str(exc))
            raise typer.Exit(EXIT_FAILED) from None


def _print_version(value: bool) -> None:
    if value:
        from embplat import __version__

        typer.echo(f"embplat {__version__}")
        raise typer.Exit()


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
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """Settings precedence: these flags > environment (EMBPLAT_*) > .env > defaults."""
    from embplat.config import load_settings

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
        raise typer.Exit(exit_code(exc)) from None
    state = State(settings)
    ctx.obj = state
    ctx.call_on_close(state.close)


def _register_groups() -> None:
    from embplat.cli import (
        admin,
        captions,
        datasets,
        doctor,
        evaluate,
        experiment,
        images,
        ingest,
        models,
        query,
        serve,
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
        serve,
    ):
        module.register(app)
    app.add_typer(datasets.app, name="datasets", help="Build sample datasets from local files.")
    app.add_typer(
        captions.app, name="captions", help="Captions of an image; generate and index them."
    )
    app.command("caption")(captions.caption_cmd)


_register_groups()


def main() -> None:
    """Console-script entry point."""
    app()
