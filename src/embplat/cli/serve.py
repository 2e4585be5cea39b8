"""``platform serve``: the HTTP service (FastAPI + uvicorn) with the search page at ``/``."""

from __future__ import annotations

from typing import Annotated

import typer

from embplat.cli.output import console
from embplat.errors import ConfigError


def register(app: typer.Typer) -> None:
    """Attach this command to the root app."""
    app.command("serve")(serve)


def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option(help="address to bind [env EMBPLAT_SERVE_HOST, 127.0.0.1]")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="port [env EMBPLAT_SERVE_PORT, 8000]")
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="allow a non-loopback address without an API key")
    ] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Serve classify, search, classes, jobs and models over HTTP, with a search page at `/`
    and the OpenAPI docs at `/docs`. The encoder is loaded once, at start-up.

    With `EMBPLAT_SERVE_API_KEY` set every call but the page and the probes needs the
    header `X-API-Key`; without one the service binds only to loopback unless `--insecure`.
    """
    try:
        import uvicorn

        from embplat.api import Platform
        from embplat.serve.app import ServeOptions, create_app
        from embplat.serve.security import is_loopback
    except ImportError as exc:
        raise ConfigError(
            f"platform serve needs the serve extra ({exc.name} is missing): "
            "pip install 'embplat[serve]'"
        ) from exc

    settings = ctx.obj.settings
    opts = settings.serve
    host, port = host or opts.host, opts.port if port is None else port
    key = opts.api_key.get_secret_value() if opts.api_key else None
    if not key and not is_loopback(host) and not insecure:
        raise ConfigError(
            f"refusing to serve on {host} without an API key: set EMBPLAT_SERVE_API_KEY, "
            "bind 127.0.0.1, or pass --insecure"
        )
    options = ServeOptions(
        api_key=key,
        cors_origins=tuple(opts.cors_origins),
        max_upload_bytes=opts.max_upload_bytes,
        max_images=opts.max_images,
        max_pixels=min(opts.max_pixels, settings.ingest.max_pixels),
        max_k=opts.max_k,
    )
    app = create_app(Platform(settings=settings), options)
    console.print(f"embplat serving on http://{host}:{port}/ (API docs at /docs)")
    uvicorn.run(app, host=host, port=port, log_level=log_level, workers=1)
