"""KServe peer: a ``kserve.Model`` serving the benchmark's XGBoost Booster.

Runs in ``.bench/venvs/kserve`` (kserve 0.21 ships no xgbserver on PyPI)::

    python kserve_server.py --model_name churn --model_dir DIR --http_port PORT \
        --enable_grpc false --enable_latency_logging false --host 127.0.0.1

``POST /v1/models/NAME:predict`` with ``{"instances": [[f0, f1, ...]]}`` (encoded float32 rows)
answers ``{"predictions": [p, ...]}``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import kserve
import numpy as np
import uvicorn
import xgboost
from kserve import model_server


class BoosterModel(kserve.Model):  # type: ignore[misc]
    """Loads ``model.ubj`` from a model directory and scores encoded rows with it."""

    def __init__(self, name: str, model_dir: Path) -> None:
        """Remember where the model is; :meth:`load` reads it."""
        super().__init__(name)
        self._path = model_dir / "model.ubj"
        self._booster = xgboost.Booster()

    def load(self) -> bool:
        """Load the booster and mark the model ready."""
        self._booster.load_model(self._path)
        self.ready = True
        return True

    def predict(self, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        """Return ``{"predictions": [P(positive) per instance]}``."""
        rows = np.asarray(payload["instances"], dtype=np.float32)
        return {"predictions": self._booster.inplace_predict(rows).tolist()}


def _bind_to(host: str) -> None:
    # KServe 0.21 hard-codes uvicorn's host to 0.0.0.0; the benchmark binds every server to
    # loopback, so wrap uvicorn.Config (as KServe's REST server sees it) to override the host.
    original = uvicorn.Config

    def config(app: Any, **kwargs: Any) -> uvicorn.Config:
        kwargs["host"] = host
        return original(app, **kwargs)

    kserve.protocol.rest.server.uvicorn.Config = config


def main() -> None:
    """Parse KServe's own flags plus ``--model_dir`` and ``--host``, then serve."""
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args, _ = parser.parse_known_args()
    _bind_to(args.host)
    model = BoosterModel(args.model_name, args.model_dir)
    model.load()
    server = kserve.ModelServer()
    # Every server in the benchmark runs without per-request log lines (Loopline turns its access
    # log off); KServe's timing middleware and uvicorn's access log write one each otherwise.
    for name in ("kserve.trace", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start([model])


if __name__ == "__main__":
    main()
