"""Tests for serving/batcher.py: concurrent requests share one model call."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import pytest

from serving.batcher import MicroBatcher, Overloaded


class RecordingModel:
    """Probability = first feature / 100; records each call's row count; can be made slow."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls: list[int] = []
        self.delay_s = delay_s
        self.release = threading.Event()
        self.release.set()

    def __call__(self, features: np.ndarray) -> np.ndarray:
        self.release.wait(5)
        time.sleep(self.delay_s)
        self.calls.append(len(features))
        return features[:, 0].astype(np.float64) / 100


def _rows(*values: float) -> np.ndarray:
    return np.array([[v, 0.0] for v in values], dtype=np.float32)


def test_requests_arriving_during_a_call_are_scored_together() -> None:
    model = RecordingModel()
    batches: list[tuple[int, int]] = []

    async def scenario() -> list[np.ndarray]:
        batcher = MicroBatcher(
            model, max_rows=100, max_wait_ms=5_000, on_batch=lambda r, n: batches.append((r, n))
        )
        model.release.clear()  # the first call blocks until every other request is queued
        first = asyncio.create_task(batcher.predict(_rows(1)))
        await asyncio.sleep(0.05)
        others = [asyncio.create_task(batcher.predict(_rows(v, v + 1))) for v in (10, 20, 30)]
        await asyncio.sleep(0.05)
        model.release.set()
        return await asyncio.gather(first, *others)

    results = asyncio.run(scenario())
    assert model.calls == [1, 6]
    assert batches == [(1, 1), (3, 6)]
    assert [r.tolist() for r in results] == [[0.01], [0.1, 0.11], [0.2, 0.21], [0.3, 0.31]]


def test_a_batch_never_exceeds_max_rows_but_a_big_request_is_scored_whole() -> None:
    model = RecordingModel()

    async def scenario() -> None:
        batcher = MicroBatcher(model, max_rows=4, max_wait_ms=5_000)
        model.release.clear()
        blocker = asyncio.create_task(batcher.predict(_rows(0)))
        await asyncio.sleep(0.05)
        queued = [
            batcher.predict(_rows(*range(3))),
            batcher.predict(_rows(1, 2)),
            batcher.predict(_rows(*range(6))),
        ]
        tasks = [asyncio.create_task(q) for q in queued]
        await asyncio.sleep(0.05)
        model.release.set()
        await asyncio.gather(blocker, *tasks)

    asyncio.run(scenario())
    assert model.calls == [1, 3, 2, 6]


class SteppingClock:
    """A monotonic clock that only moves when the model scores: each call takes ``step_s``."""

    def __init__(self, step_s: float) -> None:
        self.now = 0.0
        self.step_s = step_s

    def __call__(self) -> float:
        return self.now

    def model(self, features: np.ndarray) -> np.ndarray:
        self.now += self.step_s
        return features[:, 0].astype(np.float64) / 100


def _outcomes(results: list[Any]) -> list[str]:
    return ["503" if isinstance(r, Overloaded) else "ok" for r in results]


def test_requests_delayed_by_one_slow_moment_are_still_answered() -> None:
    clock = SteppingClock(step_s=0.2)  # one call four times longer than max_wait
    entered, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def model(features: np.ndarray) -> np.ndarray:
        entered.set()
        release.wait(5)
        calls.append(len(features))
        return clock.model(features)

    async def scenario() -> list[Any]:
        batcher = MicroBatcher(model, max_rows=100, max_wait_ms=50, clock=clock)
        first = asyncio.create_task(batcher.predict(_rows(5)))
        while not entered.is_set():  # the first call has started
            await asyncio.sleep(0.001)
        late = asyncio.create_task(batcher.predict(_rows(6)))  # waits the call's 200 ms
        await asyncio.sleep(0)
        release.set()
        done = list(await asyncio.gather(first, late, return_exceptions=True))
        done.append(await batcher.predict(_rows(7)))  # the queue is short again
        return done

    results = asyncio.run(scenario())
    assert _outcomes(results) == ["ok", "ok", "ok"]
    assert [r.tolist() for r in results] == [[0.05], [0.06], [0.07]]
    assert calls == [1, 1, 1]  # the late request waited for the slow call, alone


def test_a_queue_standing_beyond_max_wait_is_refused_as_overloaded_then_recovers() -> None:
    clock = SteppingClock(step_s=0.06)  # every call longer than max_wait: the queue only grows

    async def scenario() -> tuple[list[Any], np.ndarray]:
        batcher = MicroBatcher(
            clock.model, max_rows=1, max_wait_ms=50, overload_after_ms=100, clock=clock
        )
        queued = [asyncio.create_task(batcher.predict(_rows(v))) for v in range(1, 6)]
        done = list(await asyncio.gather(*queued, return_exceptions=True))
        return done, await batcher.predict(_rows(9))

    results, after = asyncio.run(scenario())
    # Waits of 0, 60 and 120 ms are scored (standing for 0 and 60 ms, under the 100 ms
    # interval); at 180 ms the queue has stood for 120 ms: the rest is refused at once.
    assert _outcomes(results) == ["ok", "ok", "ok", "503", "503"]
    assert "longer than 50 ms for 100 ms" in str(results[3])
    assert after.tolist() == [0.09]


def test_a_model_error_reaches_every_request_of_the_batch() -> None:
    def broken(features: np.ndarray) -> np.ndarray:
        raise RuntimeError("model exploded")

    async def scenario() -> list[Any]:
        batcher = MicroBatcher(broken, max_rows=100, max_wait_ms=1_000)
        results = await asyncio.gather(
            batcher.predict(_rows(1)), batcher.predict(_rows(2)), return_exceptions=True
        )
        return list(results)

    results = asyncio.run(scenario())
    assert [str(r) for r in results] == ["model exploded", "model exploded"]


def test_close_refuses_queued_requests() -> None:
    model = RecordingModel()

    async def scenario() -> Any:
        batcher = MicroBatcher(model, max_rows=100, max_wait_ms=5_000)
        model.release.clear()
        first = asyncio.create_task(batcher.predict(_rows(1)))
        await asyncio.sleep(0.05)
        queued = asyncio.create_task(batcher.predict(_rows(2)))
        await asyncio.sleep(0.01)
        await batcher.close()
        model.release.set()
        first.cancel()
        results = await asyncio.gather(queued, return_exceptions=True)
        return results[0]

    result = asyncio.run(scenario())
    assert isinstance(result, Overloaded)
    assert "shutting down" in str(result)


@pytest.mark.parametrize("max_rows", [1, 2])
def test_max_rows_one_or_two_still_scores_every_request(max_rows: int) -> None:
    model = RecordingModel()

    async def scenario() -> list[np.ndarray]:
        batcher = MicroBatcher(model, max_rows=max_rows, max_wait_ms=5_000)
        return await asyncio.gather(*(batcher.predict(_rows(v)) for v in (1, 2, 3)))

    results = asyncio.run(scenario())
    assert [r.tolist() for r in results] == [[0.01], [0.02], [0.03]]
    assert sum(model.calls) == 3
    assert max(model.calls) <= max_rows
