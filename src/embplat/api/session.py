"""The base of :class:`~embplat.api.Platform`: settings, the use-case context, the lock.

One object holds one ``Context`` (catalog, spaces, job runner) built from the same
``Settings`` as the CLI (``EMBPLAT_*``, ``.env``, then the arguments given here), so a
notebook, a script, the CLI's ``classify``/``search`` and ``platform serve`` share the same
behaviour and data home. The encoder is built once, on first use (or :meth:`warm`), and kept.

Every call that uses the encoder or an index takes one re-entrant lock: they are used by one
thread at a time, so a server may call one ``Platform`` from many threads.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from embplat.config import Settings, load_settings
from embplat.errors import ConfigError

if TYPE_CHECKING:
    from embplat.pipelines.context import Context

#: Keyword arguments of ``Platform()`` and the setting each one sets (the CLI's root flags).
SETTING_OF = {
    "catalog_url": "catalog.url",
    "backend": "index.backend",
    "encoder": "embed.encoder",
    "weights": "embed.weights",
    "image_size": "embed.image_size",
    "device": "embed.device",
}


class PlatformBase:
    """Settings, the context built from them on first use, and the lock.

    Args:
        home: the data home (default: ``EMBPLAT_HOME`` or ``./.embplat``).
        settings: complete settings; otherwise read like the CLI's (environment, ``.env``).
        context: an open use-case context built from ``settings`` to work on (the CLI's);
            its owner closes it, :meth:`close` leaves it open.
        **options: the CLI's root flags: ``catalog_url``, ``backend``, ``encoder``,
            ``weights``, ``image_size``, ``device``.

    Raises:
        ConfigError: a setting is invalid or an option unknown.
    """

    def __init__(
        self,
        home: str | Path | None = None,
        *,
        settings: Settings | None = None,
        context: Context | None = None,
        **options: Any,
    ) -> None:
        unknown = sorted(set(options) - set(SETTING_OF))
        if unknown:
            raise ConfigError(f"unknown Platform options {unknown}; known: {sorted(SETTING_OF)}")
        if context is not None and settings is None:
            raise ConfigError("Platform(context=...) needs the settings it was built from")
        overrides = {SETTING_OF[key]: value for key, value in options.items()}
        self.settings = settings or load_settings(
            home=Path(home) if home is not None else None, **overrides
        )
        self._ctx: Context | None = context
        self._owns_context = context is None
        self._lock = threading.RLock()

    @property
    def context(self) -> Context:
        """The use-case context (opens the catalog on first use)."""
        with self._lock:
            if self._ctx is None:
                from embplat.workers.context import build_context

                self._ctx = build_context(self.settings)
            return self._ctx

    def warm(self) -> float:
        """Build the active encoder and open its index now; returns the seconds it took."""
        start = time.perf_counter()
        with self._lock:
            self.context.spaces.space()
        return time.perf_counter() - start

    def close(self) -> None:
        """Flush and close the opened indexes (of a context this object built); the object
        can be used again afterwards."""
        with self._lock:
            if self._ctx is not None and self._owns_context:
                context, self._ctx = self._ctx, None
                context.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ready(self) -> dict[str, Any]:
        """Whether the catalog answers and the active index is open: their counts.

        Raises:
            ServiceUnavailableError, EmbplatError: one of them does not answer.
        """
        from sqlalchemy import text

        with self.context.sessions() as session:
            session.execute(text("select 1"))
        with self._lock:
            space = self.context.spaces.space()
            return {"catalog": "ok", "index": space.index.name, "points": space.index.count(None)}
