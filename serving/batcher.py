"""In-process micro-batching: concurrent requests of one worker are scored in one model call.

While the model scores one batch (in a thread, so the event loop keeps reading requests), the
requests arriving meanwhile queue up; the next batch takes all of them, up to ``max_rows`` rows.
At low load a request is scored alone at once (no added wait); under load batches grow by
themselves. A request that waited longer than ``max_wait_ms`` before its batch started is
answered :class:`Overloaded` (the service turns it into HTTP 503) instead of piling up latency.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger("loopline.batcher")

ScoreFn = Callable[[np.ndarray], np.ndarray]
BatchObserver = Callable[[int, int], None]


class Overloaded(Exception):
    """A request waited longer than the batcher's ``max_wait_ms`` for its turn."""


@dataclass
class _Job:
    features: np.ndarray
    future: asyncio.Future[np.ndarray]
    enqueued_s: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """Queues feature matrices and scores them together with ``score``."""

    def __init__(
        self,
        score: ScoreFn,
        *,
        max_rows: int,
        max_wait_ms: float,
        on_batch: BatchObserver | None = None,
    ) -> None:
        """Prepare the batcher; its loop starts with the first request.

        Args:
            score: maps an ``(n, features)`` float32 matrix to ``n`` probabilities.
            max_rows: most rows scored in one call (a larger request is scored alone).
            max_wait_ms: longest queueing before a request is refused as overloaded.
            on_batch: called with (requests, rows) of every batch scored, e.g. for metrics.
        """
        self._score = score
        self._max_rows = max_rows
        self._max_wait_s = max_wait_ms / 1000
        self._on_batch = on_batch
        self._queue: deque[_Job] = deque()
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        # Batches run one at a time, so one dedicated thread scores them all (the event loop's
        # default pool is left to BentoML).
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scorer")

    async def predict(self, features: np.ndarray) -> np.ndarray:
        """Score ``features`` in the next batch.

        Returns:
            One probability per row.

        Raises:
            Overloaded: if the request queued longer than ``max_wait_ms``.
        """
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._run())
        job = _Job(features, asyncio.get_running_loop().create_future())
        self._queue.append(job)
        self._wake.set()
        return await job.future

    async def close(self) -> None:
        """Stop the batching loop (queued requests are refused as overloaded)."""
        if self._loop_task is not None:
            self._loop_task.cancel()
        while self._queue:
            self._queue.popleft().future.set_exception(Overloaded("service is shutting down"))
        self._executor.shutdown(wait=False)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                jobs = self._take_batch()
                if jobs:
                    await self._score_batch(jobs)

    def _take_batch(self) -> list[_Job]:
        jobs: list[_Job] = []
        rows = 0
        now = time.monotonic()
        while self._queue:
            job = self._queue[0]
            if jobs and rows + len(job.features) > self._max_rows:
                break
            self._queue.popleft()
            if job.future.done():  # the caller went away
                continue
            if now - job.enqueued_s > self._max_wait_s:
                job.future.set_exception(
                    Overloaded(f"queued longer than {self._max_wait_s * 1000:.0f} ms")
                )
                continue
            jobs.append(job)
            rows += len(job.features)
        return jobs

    async def _score_batch(self, jobs: list[_Job]) -> None:
        try:
            features = [job.features for job in jobs]
            batch = features[0] if len(jobs) == 1 else np.concatenate(features)
            loop = asyncio.get_running_loop()
            probabilities = await loop.run_in_executor(self._executor, self._score, batch)
        except Exception as err:  # noqa: BLE001 - every waiting request gets the model's error
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(err)
            return
        start = 0
        for job in jobs:
            end = start + len(job.features)
            if not job.future.done():
                job.future.set_result(probabilities[start:end])
            start = end
        if self._on_batch is not None:
            try:
                self._on_batch(len(jobs), len(batch))
            except Exception:
                logger.exception("batch observer failed")
