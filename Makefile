# Loopline's one list of tasks. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV := $(CURDIR)/.tools/bin/uv
VENV_STAMP := .venv/.synced
RUN := $(UV) run --frozen --no-sync
PYTEST_ARGS ?=

# uv uses the machine's python3 (3.11); it never downloads an interpreter.
export UV_PYTHON ?= python3.11
export UV_PYTHON_DOWNLOADS := never
export PYTHONDONTWRITEBYTECODE := 1
# uv sync compiles the venv's bytecode once: every later process starts seconds faster.
export UV_COMPILE_BYTECODE := 1
SERVE_PORT ?= 3000
# The settings' state directory (steps/core/settings.py), as make clean and make mlflow-ui see it.
STATE_DIR := $(or $(strip $(LOOPLINE_STATE_DIR)),.loopline)

.PHONY: help setup demo test test-unit check fmt clean render render-check validate lock-serving mlflow-ui bench-serving bench-drift bench-training bench-image serve loadtest fuzz system-packages stack-up stack-down canary-drill canary-status

# A task's text may name $(SERVE_PORT): help prints the value this make would use.
help: ## List the tasks
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -v port='$(SERVE_PORT)' \
		'BEGIN {FS = ":.*?## "}; {gsub(/\$$\(SERVE_PORT\)/, port, $$2); printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

$(UV):
	python3 scripts/bootstrap_uv.py $(dir $(UV))

$(VENV_STAMP): $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen
	@touch $@

setup: $(VENV_STAMP) ## Install uv and the locked virtualenv (.venv)

# A PATH lookup per tool when all are present; apt-get (as root) only for what is missing.
system-packages: ## Install the Debian packages the commands and tests run (apt-get, as root)
	@python3 scripts/system_packages.py

demo: system-packages $(VENV_STAMP) ## Generate demo data if needed, then run the retrain workflow locally: train, evaluate, register, build, containerize (arm64 image, pushed to the local registry), deploy to the local stack, promote
	$(RUN) loopline demo

test: system-packages $(VENV_STAMP) ## Run the whole test suite (unit and integration)
	$(RUN) pytest $(PYTEST_ARGS)

test-unit: system-packages $(VENV_STAMP) ## Run the fast tests only (no services started)
	$(RUN) pytest -m "not integration" $(PYTEST_ARGS)

check: $(VENV_STAMP) ## Lint, format check, type check and the import contract
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy pipelines steps serving scripts tests
	$(RUN) lint-imports

fmt: $(VENV_STAMP) ## Apply ruff's fixes and formatting
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

mlflow-ui: $(VENV_STAMP) ## Open the MLflow UI on the local store (http://127.0.0.1:5000)
	$(RUN) mlflow ui --backend-store-uri sqlite:///$(abspath $(STATE_DIR))/mlflow.db \
		--host 127.0.0.1 --port 5000

serve: system-packages $(VENV_STAMP) ## Serve the champion on 127.0.0.1:$(SERVE_PORT) (or MODEL_DIR=dir / MODEL_TAG=tag)
	$(RUN) python -m scripts.serve --port $(SERVE_PORT) $(if $(MODEL_DIR),--model-dir $(MODEL_DIR)) $(if $(MODEL_TAG),--model-tag $(MODEL_TAG)) $(if $(WORKERS),--workers $(WORKERS))

loadtest: system-packages $(VENV_STAMP) ## Locust, headless, against the locally served champion (USERS=32 DURATION=30)
	$(RUN) python -m scripts.loadtest --users $(or $(USERS),32) --duration-s $(or $(DURATION),30)

fuzz: system-packages $(VENV_STAMP) ## Schemathesis (positive and negative) against the locally served champion; fails on any 5xx (MODEL_DIR=dir, EXAMPLES=100)
	$(RUN) python -m scripts.fuzz --max-examples $(or $(EXAMPLES),100) $(if $(MODEL_DIR),--model-dir $(MODEL_DIR)) $(if $(MODEL_TAG),--model-tag $(MODEL_TAG))

render: $(VENV_STAMP) ## Render argo/*.yaml (and the generated k8s PrometheusRule) from pipelines/ and steps/platform/slo.py
	$(RUN) python -m pipelines.render

render-check: $(VENV_STAMP) ## Fail when argo/ or the generated k8s file differs from a fresh render
	$(RUN) python -m pipelines.render --check

validate: $(VENV_STAMP) ## Validate argo/ and k8s/ against their schemas, offline
	$(RUN) python -m scripts.validate_manifests

lock-serving: $(UV) ## Re-lock serving/requirements*.lock (amd64 + arm64) within uv.lock's versions
	$(UV) export --frozen --format requirements-txt --no-hashes --no-dev --no-emit-project -q > .tools/constraints.txt
	for lock in requirements requirements-sklearn; do \
		$(UV) pip compile serving/$$lock.in --universal --python-version 3.11 \
			-c .tools/constraints.txt --no-annotate --no-header -q -o serving/$$lock.lock || exit 1; \
	done

bench-serving: system-packages $(VENV_STAMP) ## Benchmark the service vs MLServer, KServe, FastAPI (~10 min; QUICK=1: ~4)
	$(RUN) python -m scripts.bench_serving $(if $(QUICK),--quick) $(BENCH_ARGS)

bench-training: $(VENV_STAMP) ## Held-out quality of the training defaults: demo data, Caravan, Default (~2 min)
	$(RUN) python -m scripts.bench_training $(BENCH_ARGS)

bench-image: system-packages $(VENV_STAMP) ## The model image: cold/cached build, sizes, same digest, start under QEMU (~10 min)
	$(RUN) python -m scripts.bench_image $(BENCH_ARGS)

bench-drift: $(VENV_STAMP) ## Time the drift check on 100k/1M/10M logged rows (~4 min first run)
	$(RUN) python -m scripts.bench_drift run $(BENCH_ARGS)

# The stack's processes and the image registry are stopped first: their pid files live in the
# state directory. A state directory that holds the repository, or is $HOME, is never removed.
clean: ## Stop the local stack, then remove the state dir (LOOPLINE_STATE_DIR, else .loopline) and caches
	@state="$$(realpath -m -- '$(STATE_DIR)')"; \
	case "$(CURDIR)/" in "$${state%/}/"*) refuse=1;; esac; \
	if [ -n "$$refuse" ] || [ "$$state" = "$$(realpath -m -- "$$HOME")" ]; then \
		echo "make clean: refusing to remove '$$state' (LOOPLINE_STATE_DIR='$(LOOPLINE_STATE_DIR)')" >&2; exit 2; \
	fi
	-if [ -f $(VENV_STAMP) ] && [ -d '$(STATE_DIR)' ]; then LOOPLINE_STATE_DIR='$(STATE_DIR)' $(RUN) loopline stack down; fi
	rm -rf '$(STATE_DIR)' .loopline/pycache .pytest_cache .mypy_cache .ruff_cache

stack-up: system-packages $(VENV_STAMP) ## Start the local serving stack (HAProxy, tracks, Prometheus, Locust) and keep it up
	$(RUN) loopline stack up

stack-down: $(VENV_STAMP) ## Stop every process of the local serving stack
	$(RUN) loopline stack down

canary-drill: system-packages $(VENV_STAMP) ## Canary drills on the local stand-in: healthy, 5xx, slow, wrong model, Prometheus down, no traffic (~5 min)
	$(RUN) python -m scripts.canary_drill $(DRILL_ARGS)

canary-status: $(VENV_STAMP) ## What each track serves, the weights, the canary's step and last decision
	$(RUN) loopline canary status
