"""Plain FastAPI peer: one uvicorn worker, the XGBoost Booster, Loopline's FeatureSpec.

Runs in ``.bench/venvs/fastapi`` with the repository on ``PYTHONPATH`` (for
``serving.features``, which needs only NumPy and pydantic)::

    python fastapi_app.py --model-dir DIR --port PORT

``POST /predict`` takes the same raw row as Loopline's ``/predict`` and answers
``{"probability": p}``: the same encoding and scoring, without validation against the spec,
batching or inference logging. It shows what the framework around the model costs.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
import xgboost
from fastapi import FastAPI

from serving.features import FeatureSpec


def create_app(model_dir: Path) -> FastAPI:
    """Return the app; the model loads before the server accepts connections."""
    booster = xgboost.Booster()
    spec = FeatureSpec.load(model_dir)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        booster.load_model(model_dir / "model.ubj")
        yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    # async def with the model call inline: scoring one row takes ~0.5 ms, less than a hop to
    # the thread pool a plain ``def`` endpoint would take.
    @app.post("/predict")
    async def predict(row: dict[str, Any]) -> dict[str, float]:
        probability = booster.inplace_predict(spec.encode_rows([row]))[0]
        return {"probability": float(probability)}

    return app


def main() -> None:
    """Serve the app on the given loopback port until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.model_dir),
        host=args.host,
        port=args.port,
        workers=1,
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
