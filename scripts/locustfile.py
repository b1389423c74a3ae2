"""Locust load for the Loopline service: realistic churn rows, mostly single-row predictions.

Rows come from the project's own generator (``steps.ml.synthetic.churn_frame``), a fresh
seeded pool per user, so requests carry the value mix, missing values and categories the model
sees in production. Run by ``make loadtest`` (``scripts/loadtest.py``), or directly:
``locust -f scripts/locustfile.py --host http://127.0.0.1:3000``.
"""

from __future__ import annotations

import itertools
import random

from locust import FastHttpUser, between, task

from scripts.loadtest import row_pool

BATCH_ROWS = 20


class ServiceUser(FastHttpUser):
    """One client: single-row predictions, with an occasional batch of 20."""

    wait_time = between(0.0, 0.01)

    def on_start(self) -> None:
        """Build this user's row pool (seeded by a per-user random draw)."""
        self._rows = row_pool(seed=random.randrange(1_000_000))
        self._cycle = itertools.cycle(self._rows)

    @task(20)
    def predict(self) -> None:
        """POST one row to /predict."""
        self.client.post("/predict", json=next(self._cycle), name="/predict")

    @task(1)
    def predict_batch(self) -> None:
        """POST a batch of rows to /predict_batch."""
        batch = [next(self._cycle) for _ in range(BATCH_ROWS)]
        self.client.post("/predict_batch", json=batch, name="/predict_batch")
