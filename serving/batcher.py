"""In-process micro-batching: concurrent requests of one worker are scored in one model call.

While the model scores one batch (in a thread, so the event loop keeps reading requests), the
requests arriving meanwhile queue up; the next batch takes all of them, up to ``max_rows`` rows.
At low load a request is scored alone at once (no added wait); under load batches grow by
themselves.

Overload is a standing queue, not one slow moment, as in CoDel (Nichols and Jacobson, "Controlling
Queue Delay", 2012): the requests of a batch are refused :class:`Overloaded` (the service
answers HTTP 503) only when even the least-waiting request of every batch has queued longer than
``max_wait_ms`` for ``overload_after_ms``. A pause of the whole process (a full garbage
collection, the host descheduling it) delays the requests queued meanwhile, and they are still
answered: refusing them would only turn a late answer into an error, and the next batch finds
the queue short again. Under a load the worker cannot keep up with, refusals drain the queue
until requests are scored within ``max_wait_ms`` again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger("loopline.batcher")

ScoreFn = Callable[[np.ndarray], np.ndarray]
BatchObserver = Callable[[int, int], None]
Clock = Callable[[], float]
OVERLOAD_AFTER_MS = 100.0  # CoDel's interval


class Overloaded(Exception):
    """A request waited longer than the batcher's ``max_wait_ms`` for its turn."""


@dataclass
class _Job:
    features: np.ndarray
    future: asyncio.Future[np.ndarray]
    enqueued_s: float


class MicroBatcher:
    """Queues feature matrices and scores them together with ``score``."""

    def __init__(
        self,
        score: ScoreFn,
        *,
        max_rows: int,
        max_wait_ms: float,
        overload_after_ms: float = OVERLOAD_AFTER_MS,
        on_batch: BatchObserver | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        """Prepare the batcher; its loop starts with the first request.

        Args:
            score: maps an ``(n, features)`` float32 matrix to ``n`` probabilities.
            max_rows: most rows scored in one call (a larger request is scored alone).
            max_wait_ms: the queueing a request may see (the target of the overload rule).
            overload_after_ms: how long every batch must have waited beyond ``max_wait_ms``
                before requests are refused as overloaded.
            on_batch: called with (requests, rows) of every batch scored, e.g. for metrics.
            clock: monotonic seconds (tests pass their own).
        """
        self._score = score
        self._max_rows = max_rows
        self._max_wait_s = max_wait_ms / 1000
        self._overload_after_s = overload_after_ms / 1000
        self._standing_since: float | None = None
        self._clock = clock
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
            Overloaded: if the queue has stood beyond ``max_wait_ms`` (see the module).
        """
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._run())
        job = _Job(features, asyncio.get_running_loop().create_future(), self._clock())
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
        while self._queue:
            job = self._queue[0]
            if jobs and rows + len(job.features) > self._max_rows:
                break
            self._queue.popleft()
            if not job.future.done():  # else the caller went away
                jobs.append(job)
                rows += len(job.features)
        if jobs and self._overloaded(least_wait_s=self._clock() - jobs[-1].enqueued_s):
            for job in jobs:
                job.future.set_exception(
                    Overloaded(
                        f"requests queued longer than {self._max_wait_s * 1000:.0f} ms for "
                        f"{self._overload_after_s * 1000:.0f} ms"
                    )
                )
            return []
        return jobs

    def _overloaded(self, least_wait_s: float) -> bool:
        """Whether the queue has stood: every batch's least wait over target for the interval."""
        now = self._clock()
        if least_wait_s <= self._max_wait_s:
            self._standing_since = None
            return False
        if self._standing_since is None:
            self._standing_since = now
        return now - self._standing_since >= self._overload_after_s

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
