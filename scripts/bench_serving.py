"""Benchmark Loopline's service against MLServer, KServe and plain FastAPI (``make bench-serving``).

Usage::

    python -m scripts.bench_serving            # full run, ~10-15 min
    python -m scripts.bench_serving --quick    # 3 s steps, one cold restart: a harness check

One model file (trained with the project's own code, cached under ``.bench/model``), one load
generator (wrk with ``scripts/bench/bench.lua``), one server at a time on 127.0.0.1. For each
server: the best req/s at p99 <= 50 ms over rising connection counts, p50/p99 at paced
rates (200 and 1,000 req/s by default) and at the highest rate again with a second client
(:mod:`scripts.bench.pacer`), cold start to readiness and the process tree's RSS after load. Writes
``reports/bench-serving.{md,json,png}`` and prints the table; judges Loopline's targets.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TypeVar

import httpx
import numpy as np
import typer
from rich.progress import Progress, TaskID

from scripts.bench.errors import BenchError
from scripts.bench.model import ModelRecipe, RequestPool, model_dir, reference_probabilities
from scripts.bench.model import request_pool as make_request_pool
from scripts.bench.pacer import paced_run
from scripts.bench.plot import write_plot
from scripts.bench.procfs import tree_memory
from scripts.bench.results import (
    BenchConfig,
    BenchReport,
    FixedRateResult,
    Policy,
    ProcessEntry,
    ServerResult,
    StepResult,
    best_under_slo,
    evaluate_targets,
    markdown_report,
)
from scripts.bench.servers import (
    BENCH_DIR,
    PEER_VENVS,
    REPO,
    SERVER_NAMES,
    RunningServer,
    ServerPlan,
    ensure_venv,
    plan_server,
    request_body,
    response_probability,
    running,
)
from scripts.bench.wrk import run_wrk, wrk_binary
from steps.core.cli_support import console, new_app, reports_errors
from steps.core.errors import ConfigError

POOL_ROWS = 1000
POOL_SEED = 99
CHECKED_ROWS = 20
PROBABILITY_TOLERANCE = 1e-6
WARMUP_CONNECTIONS = 8
REPORT_NAME = "bench-serving"

app = new_app("Benchmark Loopline's service against MLServer, KServe and plain FastAPI.")


@dataclass(frozen=True)
class LoadPlan:
    """How long and how hard each server is driven."""

    connections: list[int]
    step_s: float
    warmup_s: float
    rates_rps: list[float]
    rate_connections: int
    rate_s: float
    cold_starts: int
    ready_timeout_s: float
    loopline_workers: int
    omp_threads: int | None


def parse_servers(text: str) -> list[str]:
    """Return the server names of a comma-separated list, in the benchmark's fixed order.

    Raises:
        ConfigError: naming an unknown server.
    """
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(SERVER_NAMES))
    if unknown or not names:
        raise ConfigError(
            f"--servers: unknown {', '.join(unknown) or '(empty list)'}; expected a "
            f"comma-separated subset of {','.join(SERVER_NAMES)}"
        )
    return [name for name in SERVER_NAMES if name in names]


def parse_connections(text: str) -> list[int]:
    """Return the connection counts of a comma-separated list, ascending.

    Raises:
        ConfigError: if an item is not a positive integer.
    """
    return _positive_list(text, int, "--connections", "integers like 1,2,4,8")


def parse_rates(text: str) -> list[float]:
    """Return the paced rates of a comma-separated list, ascending.

    Raises:
        ConfigError: if an item is not a positive number.
    """
    return _positive_list(text, float, "--rates", "numbers like 200,1000")


Number = TypeVar("Number", int, float)


def _positive_list(text: str, kind: type[Number], option: str, form: str) -> list[Number]:
    try:
        values = sorted({kind(item) for item in text.split(",") if item.strip()})
    except ValueError as err:
        raise ConfigError(f"{option} must be {form}; got {text!r}") from err
    if not values or values[0] <= 0:
        raise ConfigError(f"{option} must be positive {form}; got {text!r}")
    return values


def check_answers(server: RunningServer, pool: RequestPool, expected: np.ndarray) -> None:
    """Send the first rows of the pool one by one; every answer must match the reference.

    Raises:
        BenchError: naming the row, the answer and the expected probability.
    """
    plan = server.plan
    with httpx.Client(base_url=plan.url, timeout=10.0) as client:
        for index in range(min(CHECKED_ROWS, len(pool.raw_rows))):
            body = request_body(plan.body_form, pool.raw_rows[index], pool.encoded_rows[index])
            answer = client.post(
                plan.predict_path, content=body, headers={"Content-Type": "application/json"}
            )
            if answer.status_code != 200:
                raise BenchError(
                    f"{plan.label} answered {answer.status_code} to pool row {index}: "
                    f"{answer.text[:500]}"
                )
            got = response_probability(plan.body_form, answer.json())
            if abs(got - float(expected[index])) > PROBABILITY_TOLERANCE:
                raise BenchError(
                    f"{plan.label} scored pool row {index} {got!r}, the model says "
                    f"{float(expected[index])!r}: it does not serve the benchmark's model"
                )


def write_bodies(plan: ServerPlan, pool: RequestPool, path: Path) -> Path:
    """Write the pool as one request body per line in ``plan``'s format; return ``path``."""
    lines = (
        request_body(plan.body_form, raw, encoded)
        for raw, encoded in zip(pool.raw_rows, pool.encoded_rows, strict=True)
    )
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def drive(
    server: RunningServer, bodies: Path, load: LoadPlan, progress: Progress, task: TaskID
) -> tuple[list[StepResult], list[FixedRateResult], FixedRateResult]:
    """Warm the server up, run the closed-loop steps, the paced runs, then the second client.

    Returns:
        The steps in ascending connections, wrk's paced runs, and the second client's run at
        the highest rate.
    """
    url, path = server.plan.url, server.plan.predict_path
    run_wrk(url, path, bodies, connections=WARMUP_CONNECTIONS, duration_s=load.warmup_s)
    steps: list[StepResult] = []
    for connections in load.connections:
        progress.update(task, description=f"{server.plan.label}: {connections} connections")
        run = run_wrk(url, path, bodies, connections=connections, duration_s=load.step_s)
        steps.append(StepResult.from_wrk(connections, run))
        progress.advance(task)
    paced: list[FixedRateResult] = []
    for rate in load.rates_rps:
        progress.update(task, description=f"{server.plan.label}: {rate:,.0f} req/s paced (wrk)")
        run = run_wrk(
            url, path, bodies, connections=load.rate_connections, duration_s=load.rate_s, rate=rate
        )
        paced.append(FixedRateResult.from_wrk(rate, load.rate_connections, run))
        progress.advance(task)
    top = max(load.rates_rps)
    progress.update(task, description=f"{server.plan.label}: {top:,.0f} req/s paced (pacer)")
    check = asyncio.run(
        paced_run(
            "127.0.0.1",
            server.plan.port,
            path,
            bodies.read_bytes().splitlines(),
            rate=top,
            duration_s=load.rate_s,
            connections=load.rate_connections,
        )
    )
    progress.advance(task)
    return steps, paced, FixedRateResult.from_pacer(check)


def measure_server(
    name: str,
    model: Path,
    pool: RequestPool,
    expected: np.ndarray,
    load: LoadPlan,
    progress: Progress,
) -> ServerResult:
    """Start server ``name``, check its answers, load it, read its memory, then time restarts.

    Returns:
        Its measurements (the best step is chosen by :func:`best_under_slo` later).
    """
    run_dir = BENCH_DIR / "run" / name
    shutil.rmtree(run_dir, ignore_errors=True)
    plan = plan_server(name, model, run_dir, load.loopline_workers, load.omp_threads)
    bodies = write_bodies(plan, pool, run_dir / "bodies.jsonl")
    task = progress.add_task(
        f"{plan.label}: starting",
        total=len(load.connections) + len(load.rates_rps) + 1 + load.cold_starts,
    )
    log = run_dir / "server.log"
    with running(plan, log, load.ready_timeout_s) as server:
        first_start_s = server.ready_after_s
        check_answers(server, pool, expected)
        steps, paced, check = drive(server, bodies, load, progress, task)
        memory = tree_memory(server.process.pid)
    restarts: list[float] = []
    for attempt in range(load.cold_starts):
        progress.update(task, description=f"{plan.label}: cold start {attempt + 1}")
        with running(plan, log, load.ready_timeout_s) as server:
            restarts.append(server.ready_after_s)
        progress.advance(task)
    progress.update(task, description=f"{plan.label}: done")
    return ServerResult(
        name=name,
        label=plan.label,
        note=plan.note,
        workers=plan.workers,
        steps=steps,
        best=None,
        paced=paced,
        client_check=check,
        first_start_s=round(first_start_s, 3),
        cold_start_s=round(statistics.median(restarts or [first_start_s]), 3),
        cold_start_runs_s=[round(value, 3) for value in restarts],
        rss_mb=_mb(sum(p.rss_kib for p in memory)),
        pss_mb=_mb(sum(p.pss_kib for p in memory)),
        processes=[
            ProcessEntry(command=p.command[:160], rss_mb=_mb(p.rss_kib), pss_mb=_mb(p.pss_kib))
            for p in memory
        ],
    )


def _mb(kib: int) -> float:
    return round(kib * 1024 / 1e6, 1)


def prepare_venvs(names: list[str]) -> None:
    """Create or update the peers' virtualenvs that ``names`` need."""
    log = BENCH_DIR / "venvs" / "install.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    for name in names:
        if name in PEER_VENVS:
            with console.status(f"virtualenv {name} (pinned requirements)"):
                if ensure_venv(name, log):
                    console.print(f"installed .bench/venvs/{name}")


def write_reports(report: BenchReport, out_dir: Path) -> str:
    """Write the markdown table, the JSON and the plot into ``out_dir``.

    Returns:
        The markdown text.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = markdown_report(report)
    (out_dir / f"{REPORT_NAME}.md").write_text(markdown, "utf-8")
    (out_dir / f"{REPORT_NAME}.json").write_text(report.model_dump_json(indent=2) + "\n", "utf-8")
    write_plot(report, out_dir / f"{REPORT_NAME}.png")
    return markdown


def run_bench(names: list[str], load: LoadPlan, quick: bool, out_dir: Path) -> BenchReport:
    """Run the whole benchmark and write its reports.

    Returns:
        The report.
    """
    wrk_binary()  # fail before any installing or training if the load generator is missing
    load_before = [round(value, 2) for value in os.getloadavg()]
    prepare_venvs(names)
    recipe = ModelRecipe()
    with console.status("model: training or reading the cache under .bench/model"):
        model = model_dir(BENCH_DIR / "model", recipe)
        pool = make_request_pool(model, POOL_ROWS, POOL_SEED)
        expected = reference_probabilities(model, pool.encoded_rows)
    policy = Policy()
    measured: list[ServerResult] = []
    with Progress(console=console) as progress:
        for name in names:
            result = measure_server(name, model, pool, expected, load, progress)
            measured.append(
                result.model_copy(update={"best": best_under_slo(result.steps, policy)})
            )
    config = BenchConfig(
        quick=quick,
        step_s=load.step_s,
        connections=load.connections,
        paced_rps=load.rates_rps,
        paced_connections=load.rate_connections,
        paced_s=load.rate_s,
        cold_starts=load.cold_starts,
        omp_threads=load.omp_threads,
        pool_rows=POOL_ROWS,
        model=f"XGBoost {recipe.n_estimators} trees, depth {recipe.max_depth}, trained on "
        f"{recipe.rows:,} generated churn rows ({model.relative_to(REPO)})",
        load_generator="wrk 4 (1 thread) + scripts/bench/bench.lua",
        cpus=os.cpu_count() or 0,
        load_average_before=load_before,
    )
    report = BenchReport(
        config=config, policy=policy, servers=measured, targets=evaluate_targets(measured, policy)
    )
    return report


@app.command()
@reports_errors
def main(
    quick: Annotated[bool, typer.Option(help="3 s steps, 1 cold restart: a harness check")] = False,
    servers: Annotated[str, typer.Option(help="comma-separated subset")] = ",".join(SERVER_NAMES),
    connections: Annotated[str, typer.Option(help="closed-loop steps")] = "1,2,4,8,16,32,64",
    step_s: Annotated[float | None, typer.Option(min=1, help="[default: 10, quick 3]")] = None,
    rates: Annotated[str, typer.Option(help="paced runs, req/s; the highest also by the pacer")] = (
        "200,1000"
    ),
    rate_connections: Annotated[int, typer.Option(min=1, help="paced run connections")] = 64,
    cold_starts: Annotated[int | None, typer.Option(min=0, help="[default: 3, quick 1]")] = None,
    loopline_workers: Annotated[int, typer.Option(min=1, help="Loopline workers")] = 1,
    omp_threads: Annotated[
        int, typer.Option(min=0, help="OMP_NUM_THREADS for every server; 0 leaves it unset")
    ] = 1,
    ready_timeout_s: Annotated[float, typer.Option(min=1, help="per start")] = 180.0,
    out_dir: Annotated[Path, typer.Option(help="where the reports go")] = REPO / "reports",
) -> None:
    """Run the benchmark, write reports/bench-serving.{md,json,png} and print the table."""
    step = step_s if step_s is not None else (3.0 if quick else 10.0)
    load = LoadPlan(
        connections=parse_connections(connections),
        step_s=step,
        warmup_s=min(step, 3.0),
        rates_rps=parse_rates(rates),
        rate_connections=rate_connections,
        rate_s=max(step, 4.0) if quick else 2 * step,
        cold_starts=cold_starts if cold_starts is not None else (1 if quick else 3),
        ready_timeout_s=ready_timeout_s,
        loopline_workers=loopline_workers,
        omp_threads=omp_threads or None,
    )
    report = run_bench(parse_servers(servers), load, quick, out_dir)
    print(write_reports(report, out_dir))
    console.print(f"wrote {out_dir}/{REPORT_NAME}.md, .json and .png")


if __name__ == "__main__":
    app()
