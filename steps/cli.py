"""The ``loopline`` command: one entry point over every step and operator command."""

from __future__ import annotations

from steps import data, demo, drift, evaluate, register, train
from steps.cli_support import new_app
from steps.localrun.cli import run_command

app = new_app("Loopline: retrain, ship and guard tabular models with Argo Workflows.")
app.command("demo")(demo.demo)
app.command("train")(train.main)
app.command("evaluate")(evaluate.main)
app.command("register")(register.main)
app.command("drift")(drift.main)
app.add_typer(data.app, name="data")
app.add_typer(register.model_app, name="model")
app.command("run")(run_command)
