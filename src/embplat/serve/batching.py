"""Classify requests that arrive together go through the encoder together.

While the model thread works on one batch, the requests that arrive queue up; when it is
free, everything queued with the same options becomes the next batch (one
``Platform.classify_many`` call, one forward pass). Nothing waits for company: a lone
request runs at once, so batching adds no latency at one client and raises throughput under
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
    """

    run: BatchCall
    max_items: int = 64
    _queue: asyncio.Queue[_Request] | None = field(default=None, repr=False)
    _task: asyncio.Task[None] | None = field(default=None, repr=False)
    batches: int = 0

    async def submit(self, items: Sequence[Any], names: Sequence[str], **options: Any) -> list[Any]:
        """Answers for ``items`` (in order), computed in a batch with any concurrent request
        of the same ``options``; the batched call's exception is raised to each of them."""
        if self._queue is None or self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._serve(self._queue))
        key = tuple(sorted(options.items()))
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(key, items, names, future))
        return await future

    async def close(self) -> None:
        """Stop taking batches (pending requests are cancelled)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _serve(self, queue: asyncio.Queue[_Request]) -> None:
        waiting: list[_Request] = []
        while True:
            if not waiting:
                waiting.append(await queue.get())
            while not queue.empty():  # everything that arrived meanwhile
                waiting.append(queue.get_nowait())
            batch, waiting = self._take(waiting)
            await self._answer(batch)

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
