"""The classify batcher: concurrent requests with equal options share one call, in order;
a lone request is not delayed nor handed to another task; errors reach every request of the
failed batch."""

from __future__ import annotations

import asyncio

import pytest

from embplat.serve.batching import Batcher


class _Model:
    """A batched call that records its batches and takes ``delay`` seconds each."""

    def __init__(self, delay: float = 0.05, fail_on: str | None = None):
        self.calls: list[tuple[list[str], dict]] = []
        self.delay, self.fail_on = delay, fail_on

    async def __call__(self, items, names, options):
        self.calls.append((list(names), dict(options)))
        await asyncio.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError(f"cannot read {self.fail_on}")
        return [f"{item}@k{options['k']}" for item in items]


def test_concurrent_requests_share_batches_and_get_their_own_answers():
    model = _Model()
    batcher = Batcher(model, max_items=64)

    async def main():
        first = asyncio.create_task(batcher.submit(["a"], ["a"], k=5))
        await asyncio.sleep(0.01)  # the first batch is running: the next ones queue up
        rest = [batcher.submit([f"b{i}", f"c{i}"], [f"b{i}", f"c{i}"], k=5) for i in range(3)]
        other = batcher.submit(["d"], ["d"], k=7)  # other options: a batch of its own
        out = await asyncio.gather(first, *rest, other)
        await batcher.close()
        return out

    out = asyncio.run(main())
    assert out[0] == ["a@k5"]
    assert out[1:4] == [[f"b{i}@k5", f"c{i}@k5"] for i in range(3)]
    assert out[4] == ["d@k7"]
    assert [names for names, _ in model.calls] == [
        ["a"],
        ["b0", "c0", "b1", "c1", "b2", "c2"],
        ["d"],
    ]


def test_a_lone_request_runs_at_once():
    model = _Model(delay=0.0)
    batcher = Batcher(model)

    async def main():
        loop = asyncio.get_running_loop()
        start = loop.time()
        out = await batcher.submit(["x"], ["x"], k=1)
        took = loop.time() - start
        await batcher.close()
        return out, took

    out, took = asyncio.run(main())
    assert out == ["x@k1"] and took < 0.05


def test_a_request_that_finds_the_batcher_idle_runs_in_its_own_task():
    tasks = []

    async def run(items, names, options):
        tasks.append(asyncio.current_task())
        await asyncio.sleep(0.02)
        return list(items)

    batcher = Batcher(run)

    async def main():
        lone = await batcher.submit(["x"], ["x"], k=1)
        own = asyncio.current_task()
        first = asyncio.create_task(batcher.submit(["a"], ["a"], k=1))
        await asyncio.sleep(0.005)  # the first runs: the next two wait, then share a batch
        rest = await asyncio.gather(
            batcher.submit(["b"], ["b"], k=1), batcher.submit(["c"], ["c"], k=1)
        )
        await batcher.close()
        return lone, own, first, await first, rest

    lone, own, first, first_answer, rest = asyncio.run(main())
    assert (lone, first_answer, rest) == (["x"], ["a"], [["b"], ["c"]])
    assert tasks[0] is own and tasks[1] is first and len(tasks) == 3
    assert tasks[2] not in (own, first)  # the waiting ones are served by a task of their own


def test_batches_respect_max_items_without_splitting_a_request():
    model = _Model()
    batcher = Batcher(model, max_items=3)

    async def main():
        first = asyncio.create_task(batcher.submit(["a"], ["a"], k=1))
        await asyncio.sleep(0.01)
        queued = [batcher.submit([f"{i}x", f"{i}y"], [f"{i}x", f"{i}y"], k=1) for i in range(3)]
        await asyncio.gather(first, *queued)
        await batcher.close()

    asyncio.run(main())
    sizes = [len(names) for names, _ in model.calls]
    assert sizes == [1, 2, 2, 2] and all(size <= 3 for size in sizes)


def test_an_error_reaches_each_request_of_its_batch_only():
    model = _Model(fail_on="bad")
    batcher = Batcher(model)

    async def main():
        first = asyncio.create_task(batcher.submit(["ok0"], ["ok0"], k=1))
        await asyncio.sleep(0.01)
        bad = batcher.submit(["bad"], ["bad"], k=1)
        mate = batcher.submit(["ok1"], ["ok1"], k=1)
        results = await asyncio.gather(first, bad, mate, return_exceptions=True)
        later = await batcher.submit(["ok2"], ["ok2"], k=1)  # the batcher goes on
        await batcher.close()
        return results, later

    results, later = asyncio.run(main())
    assert results[0] == ["ok0@k1"]
    assert all(isinstance(r, ValueError) for r in results[1:])
    assert later == ["ok2@k1"]


@pytest.mark.parametrize("n", [1, 5])
def test_answers_come_back_in_order_whatever_the_grouping(n):
    batcher = Batcher(_Model(delay=0.001))

    async def main():
        jobs = [batcher.submit([f"{i}"], [f"{i}"], k=2) for i in range(n * 4)]
        out = await asyncio.gather(*jobs)
        await batcher.close()
        return out

    assert asyncio.run(main()) == [[f"{i}@k2"] for i in range(n * 4)]
