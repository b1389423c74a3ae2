"""The ``loopline`` command: one entry point over every step and operator command."""

from __future__ import annotations

from steps.cli_support import new_app

app = new_app("Loopline: retrain, ship and guard tabular models with Argo Workflows.")
