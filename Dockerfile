# syntax=docker/dockerfile:1.7
# Loopline's pipeline images: every step CLI (`python -m steps.<name>`) on the locked
# dependencies, as a non-root user. Two targets:
#
#   pipeline                (default) train, evaluate, register, build, ...
#     docker buildx build --platform linux/arm64,linux/amd64 \
#       -t ghcr.io/loopline/pipeline:0.1.0 --push .
#   pipeline-image-builder  the same plus the daemonless image builder's tools, for the
#                           containerize step
#     docker buildx build --platform linux/arm64 --target pipeline-image-builder \
#       -t ghcr.io/loopline/pipeline-image-builder:0.1.0 --push .
#
# The tag follows pyproject's version (pipelines/templates.py PIPELINE_VERSION).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# uv builds the virtualenv here; the venv holds its own locked uv too (pyproject.toml), which the
# build step's `bentoml build` runs. Keep both at scripts/bootstrap_uv.py's UV_VERSION.
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# The builder runs as the target platform, not $BUILDPLATFORM: the virtualenv holds compiled
# wheels (numpy, xgboost, scikit-learn) that must match the platform the image runs on. Build
# arm64 natively on an arm64 builder, or under emulation.
FROM ${PYTHON_IMAGE} AS builder
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
# Dependencies first, in their own layer: rebuilt only when the lock file changes.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --no-install-project
COPY pipelines ./pipelines
COPY steps ./steps
COPY serving ./serving
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

# Same base as the builder: the venv's interpreter links to this image's /usr/local/bin/python.
FROM ${PYTHON_IMAGE} AS base
RUN groupadd --system --gid 10001 loopline \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/loopline \
       --shell /usr/sbin/nologin loopline
WORKDIR /app
# Root-owned and read-only for the runtime user; state goes to the user's home.
COPY --from=builder /app/.venv /app/.venv
COPY pyproject.toml README.md ./
COPY pipelines ./pipelines
COPY steps ./steps
COPY serving ./serving
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LOOPLINE_STATE_DIR=/home/loopline/.loopline

# The containerize step's image, an ordinary restricted pod: no daemon, no privileges, no user
# namespace. mmdebstrap extracts the Debian packages of the model image (chrootless, no
# maintainer scripts), skopeo pushes it, and proot runs it for the smoke test, through
# qemu-user-static when its platform differs from the node's.
FROM base AS pipeline-image-builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends mmdebstrap proot qemu-user-static skopeo \
    && rm -rf /var/lib/apt/lists/*
USER 10001:10001
CMD ["python", "-m", "steps.containerize", "--help"]

# Last, so a plain `docker build .` produces it.
FROM base AS pipeline
USER 10001:10001
CMD ["loopline", "--help"]
