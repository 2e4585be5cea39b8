"""Classify requests that arrive together go through the encoder together.

While the model thread works on one batch, the requests that arrive wait; when it is free,
everything waiting with the same options becomes the next batch (one
``Platform.classify_many`` call, one forward pass). Nothing waits for company: a request
that finds the batcher idle runs its batch at once, in its own task (no queue, no hand-off
to another task), so batching adds no latency at one client and raises throughput under
concurrency.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Request:
    key: tuple[tuple[str, Any], ...]
    items: Sequence[Any]
    names: Sequence[str]
    future: asyncio.Future[list[Any]]


#: ``run(items, names, options)`` -> one answer per item, in order.
BatchCall = Callable[[list[Any], list[str], dict[str, Any]], Awaitable[list[Any]]]


@dataclass
class Batcher:
    """Groups concurrent requests with equal options into one call of ``run``.

    Attributes:
        run: the batched call (e.g. ``classify_many`` on the model thread).
        max_items: most items in one batch (a request is never split).
        batches: calls of ``run`` so far.
    """

    run: BatchCall
    max_items: int = 64
    batches: int = 0
    _waiting: list[_Request] = field(default_factory=list, repr=False)
    _busy: bool = field(default=False, repr=False)
    _drain: asyncio.Task[None] | None = field(default=None, repr=False)

    async def submit(self, items: Sequence[Any], names: Sequence[str], **options: Any) -> list[Any]:
        """Answers for ``items`` (in order), computed in a batch with any concurrent request
        of the same ``options``; the batched call's exception is raised to each of them."""
        loop = asyncio.get_running_loop()
        request = _Request(tuple(sorted(options.items())), items, names, loop.create_future())
        if self._busy:
            self._waiting.append(request)
            return await request.future
        self._busy = True
        try:
            await self._answer([request])
        finally:
            self._hand_on()
        return request.future.result()

    async def close(self) -> None:
        """Stop taking batches (waiting requests are cancelled)."""
        if self._drain is not None:
            self._drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain
            self._drain = None
        for request in self._waiting:
            request.future.cancel()
        self._waiting.clear()
        self._busy = False

    def _hand_on(self) -> None:
        """After a request's own batch: the requests that arrived meanwhile are served by a
        task of their own, so that request's answer is not held back; else idle again."""
        if self._waiting:
            self._drain = asyncio.get_running_loop().create_task(self._serve())
        else:
            self._busy = False

    async def _serve(self) -> None:
        while self._waiting:
            batch, self._waiting = self._take(self._waiting)
            await self._answer(batch)
        self._busy, self._drain = False, None

    def _take(self, waiting: list[_Request]) -> tuple[list[_Request], list[_Request]]:
        """The oldest request with every later one of its options that fits, and the rest."""
        key, size = waiting[0].key, 0
        batch: list[_Request] = []
        rest: list[_Request] = []
        for request in waiting:
            fits = not batch or size + len(request.items) <= self.max_items
            if request.key == key and fits:
                batch.append(request)
                size += len(request.items)
            else:
                rest.append(request)
        return batch, rest

    async def _answer(self, batch: list[_Request]) -> None:
        items = [item for r in batch for item in r.items]
        names = [name for r in batch for name in r.names]
        self.batches += 1
        try:
            answers = await self.run(items, names, dict(batch[0].key))
        except Exception as exc:
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(exc)
            return
        start = 0
        for request in batch:
            end = start + len(request.items)
            if not request.future.done():
                request.future.set_result(answers[start:end])
            start = end
