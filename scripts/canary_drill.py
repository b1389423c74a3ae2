"""Canary drills on the local stand-in: real Prometheus, HAProxy, ``bentoml serve`` and Locust.

``make canary-drill`` (``python -m scripts.canary_drill``) prepares a state of its own
(``.loopline/drill`` by default, free loopback ports): demo data, version 1 trained and deployed
as stable (and champion), a healthy retrain (version 2, another seed) and a silently wrong model
(version 3, trained on inverted labels: valid 200s, inverted probabilities). Then each scenario
runs from a clean stable: the deploy step puts the scenario's canary at 10 %, the promote step
(:mod:`steps.promote`, the same code as the workflow's task) carries it on or rolls it back.

Faults are made with real means, never by touching the judge:

- ``errors``: the canary's server answers 500 for 5 % of prediction requests, and
  ``latency``: it takes 30 ms longer for every one (the serving image's drill settings
  ``LOOPLINE_SERVING__FAULT_*``, set on the canary track only: its own metrics count them, as
  the judge reads them on a cluster);
- ``wrong-model``: version 3, a real model whose predictions are inverted;
- ``prometheus-down``: the stack's Prometheus process is stopped half way through the first
  analysis interval;
- ``no-traffic``: Locust is stopped (only the deploy step's smoke test reaches the canary).

Expected: only ``healthy`` reaches 100 % and becomes champion; every faulty canary is rolled back
within two analysis intervals of its first request, with the stable track's process and version
untouched; ``prometheus-down`` and ``no-traffic`` never promote. The table prints, per scenario,
the outcome, the time from the canary's first traffic to the decision, the share of the traffic
the canary served, the analysis time per check (queries + judgement) and the reasons; the exit
code is 1 when any scenario differs from what is expected. Results also land in
``<state>/drill-results.json``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from scripts.bench.servers import free_port
from steps.core.errors import CanaryRolledBack, DataError, DeployError, LooplineError
from steps.core.settings import Settings, StackSettings, load_settings

console = Console(width=None if sys.stdout.isatty() else 120)  # the table fits a log
Expected = Literal["promoted", "rolled_back"]
DRILL_ROWS = 20_000
DEPLOY_ATTEMPTS = 3


@dataclass(frozen=True)
class Scenario:
    """One drill: which canary, which fault, and what must happen."""

    name: str
    description: str
    model: Literal["healthy", "wrong"] = "healthy"
    error_ratio: float = 0.0
    delay_ms: float = 0.0
    traffic: bool = True
    stop_prometheus: bool = False
    expected: Expected = "rolled_back"


SCENARIOS = (
    Scenario("errors", "canary answers 500 for 5% of requests", error_ratio=0.05),
    Scenario("latency", "canary 30 ms slower on every request", delay_ms=30.0),
    Scenario("wrong-model", "valid 200s, inverted probabilities (v3)", model="wrong"),
    Scenario("prometheus-down", "Prometheus stopped mid-analysis", stop_prometheus=True),
    Scenario("no-traffic", "no traffic at all (Locust stopped)", traffic=False),
    Scenario("healthy", "a retrain of the champion (v2)", expected="promoted"),
)
"""In order: the healthy canary last, since its promotion changes the stable version."""


@dataclass
class DrillResult:
    """What one scenario did."""

    scenario: str
    expected: str
    outcome: str
    seconds_to_decision: float
    intervals_to_decision: float
    canary_share: float | None
    checks: int
    analysis_s_max: float | None
    stable_untouched: bool
    champion: str | None
    reasons: list[str] = field(default_factory=list)

    @property
    def as_expected(self) -> bool:
        """Outcome as expected, and a rolled-back canary left stable as it was."""
        if self.outcome != self.expected:
            return False
        return self.outcome == "promoted" or self.stable_untouched


@dataclass(frozen=True)
class Versions:
    """The registered versions the drill deploys, with their bento archives."""

    stable: str
    healthy: str
    wrong: str
    archives: dict[str, str]


def make_settings(
    state_dir: Path, interval_s: float, traffic_rps: float, min_requests: int | None = None
) -> Settings:
    """The drill's settings: its own state, free ports, a short interval, a relaxed gate.

    The gate is relaxed (any model registers) because the drill tests the canary, not the gate:
    the wrong model must reach the canary to be caught there.
    """
    base = load_settings(state_dir=state_dir)
    ports = {
        name: free_port()
        for name in (
            "router_port", "router_metrics_port", "prometheus_port", "stable_port", "canary_port",
        )
    }  # fmt: skip
    stack = StackSettings(**ports, traffic_rps=traffic_rps, start_timeout_s=120)
    canary = base.canary.model_copy(update={"interval_s": interval_s, "min_requests": min_requests})
    gate = base.gate.model_copy(
        update={"min_value": 0.0, "max_regression": 1.0, "block_on_gross_shift": False}
    )
    return base.model_copy(update={"stack": stack, "canary": canary, "gate": gate})


def prepare(settings: Settings, rows: int = DRILL_ROWS) -> Versions:
    """Train, register and build v1 (deployed as stable), v2 (healthy) and v3 (wrong).

    Raises:
        LooplineError: from any step.
    """
    import pandas as pd

    from steps import build, deploy, evaluate, register, train
    from steps.ml.synthetic import generate_churn

    data = settings.state_path / "data" / f"churn-{rows}.parquet"
    if not data.exists():
        data.parent.mkdir(parents=True, exist_ok=True)
        generate_churn(data, rows=rows, seed=settings.seed)
    inverted = data.with_name(f"churn-{rows}-inverted.parquet")
    if not inverted.exists():
        frame = pd.read_parquet(data)
        target = settings.data.target
        labels = sorted(frame[target].dropna().unique())
        if len(labels) != 2:
            raise DataError(f"{data}: {target!r} has {len(labels)} classes, expected 2")
        frame[target] = frame[target].map({labels[0]: labels[1], labels[1]: labels[0]})
        frame.to_parquet(inverted, index=False)
    made: dict[str, str] = {}
    archives: dict[str, str] = {}
    plans = {"stable": (data, settings.seed), "healthy": (data, settings.seed + 1),
             "wrong": (inverted, settings.seed)}  # fmt: skip
    for role, (path, seed) in plans.items():
        console.print(f"drill: training the {role} model on {path.name} (seed {seed})")
        chosen = settings.model_copy(
            update={"seed": seed, "data": settings.data.model_copy(update={"uri": str(path)})}
        )
        run_id = train.run(chosen, pipeline_run=f"drill-{role}").run_id
        evaluate.run(chosen, run_id)
        version = register.run(chosen, run_id, pipeline_run=f"drill-{role}").model_version
        archive = build.run(chosen, version=version, platform="linux/amd64").archive_uri
        made[role], archives[version] = version, archive
        if role == "stable":
            deploy.run(settings, version=version, archive_uri=archive, pipeline_run="drill")
    return Versions(
        stable=made["stable"], healthy=made["healthy"], wrong=made["wrong"], archives=archives
    )


def run_scenario(settings: Settings, scenario: Scenario, versions: Versions) -> DrillResult:
    """Deploy the scenario's canary at the first step, then promote it; measure what happened.

    Raises:
        LooplineError: when the canary cannot be deployed (after retries) or the stack fails.
    """
    from steps import deploy, promote
    from steps.core import names
    from steps.io.registry import Registry
    from steps.platform.local import LocalPlatform, processes

    stack = settings.stack.model_copy(
        update={
            "canary_fault_error_ratio": scenario.error_ratio,
            "canary_fault_delay_ms": scenario.delay_ms,
            "traffic_rps": settings.stack.traffic_rps if scenario.traffic else 0.0,
        }
    )
    chosen = settings.model_copy(update={"stack": stack})
    platform = LocalPlatform(chosen)
    platform.up()
    before = platform.served()
    stable_pid = _pid(platform, "stable")
    version = versions.wrong if scenario.model == "wrong" else versions.healthy
    for attempt in range(1, DEPLOY_ATTEMPTS + 1):
        try:
            deploy.run(chosen, version=version, archive_uri=versions.archives[version])
            break
        except DeployError as err:  # the smoke test may meet an injected 500, as Argo retries
            console.print(f"drill: deploy attempt {attempt} failed: {err}")
            if attempt == DEPLOY_ATTEMPTS:
                raise
    first_traffic = time.time()
    if scenario.stop_prometheus:
        delay_s = settings.canary.interval_for("local") / 2
        paths = platform.paths
        threading.Timer(
            delay_s, processes.stop, ("prometheus", paths.pid_file("prometheus"))
        ).start()
    try:
        result = promote.run(chosen, version, pipeline_run=f"drill-{scenario.name}")
        outcome, reasons, record_dir = result.outcome, result.reasons, result.report_dir
    except CanaryRolledBack as err:
        outcome, reasons, record_dir = "rolled_back", [str(err)], None
    record = _record(record_dir)
    # decided when the route left the canary (rollback) or went back to stable (promotion)
    changes = record.get("weight_changes", [])
    decided = changes[-1]["at"] if changes else time.time()
    after = platform.served()
    interval_s = settings.canary.interval_for("local")
    untouched = (
        after.stable is not None
        and before.stable is not None
        and after.stable.version == before.stable.version
        and _pid(platform, "stable") == stable_pid
        and after.weights.stable == 100
    )
    analysis = [check["analysis_s"] for check in record.get("checks", [])]
    tracking_champion = Registry(settings.model_name).alias_version(names.CHAMPION)
    if scenario.stop_prometheus:
        platform.up()  # Prometheus back for the next scenario
    return DrillResult(
        scenario=scenario.name,
        expected=scenario.expected,
        outcome=outcome,
        seconds_to_decision=round(decided - first_traffic, 1),
        intervals_to_decision=round((decided - first_traffic) / interval_s, 2),
        canary_share=_canary_share(record),
        checks=len(analysis),
        analysis_s_max=max(analysis) if analysis else None,
        stable_untouched=untouched and outcome == "rolled_back",
        champion=tracking_champion,
        reasons=reasons,
    )


def _pid(platform: object, part: str) -> int | None:
    from steps.platform.local import LocalPlatform, processes

    assert isinstance(platform, LocalPlatform)
    running = processes.read_pid_file(platform.paths.pid_file(part))
    return running.pid if running else None


def _record(directory: str | None) -> dict[str, Any]:
    if directory is None:
        return {}
    path = Path(directory) / "analysis.json"
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def _canary_share(record: dict[str, Any]) -> float | None:
    """The canary's share of all requests over the checks' windows."""
    canary = total = 0.0
    for check in record.get("checks", []):
        for track, seen in check["tracks"].items():
            total += seen["requests"]
            if track == "canary":
                canary += seen["requests"]
    return round(canary / total, 4) if total else None


def table(results: list[DrillResult], interval_s: float) -> Table:
    """The drill's table: one row per scenario (the reasons follow it, see :func:`reasons`)."""
    view = Table(title=f"canary drill (analysis interval {interval_s:g} s)", title_justify="left")
    columns = ("scenario", "outcome", "ok", "decided after", "canary share", "checks",
               "analysis max", "stable kept")  # fmt: skip
    for column in columns:
        view.add_column(column)
    for result in results:
        share = f"{result.canary_share:.1%}" if result.canary_share is not None else "-"
        analysis = f"{result.analysis_s_max * 1000:.0f} ms" if result.analysis_s_max else "-"
        view.add_row(
            result.scenario,
            result.outcome,
            "yes" if result.as_expected else "[red]NO[/red]",
            f"{result.seconds_to_decision:.0f} s ({result.intervals_to_decision:.1f} int.)",
            share,
            str(result.checks),
            analysis,
            "-" if result.outcome == "promoted" else "yes" if result.stable_untouched else "no",
        )
    return view


def reasons(results: list[DrillResult]) -> list[str]:
    """One line per scenario: the reasons of its outcome."""
    return [f"{result.scenario}: {'; '.join(result.reasons)}" for result in results]


def drill(
    settings: Settings, scenarios: tuple[Scenario, ...] = SCENARIOS, rows: int = DRILL_ROWS
) -> list[DrillResult]:
    """Prepare the versions, run every scenario, stop the stack; return the results."""
    from steps.io import tracking
    from steps.platform.local import LocalPlatform

    tracking.connect(settings)
    try:
        versions = prepare(settings, rows)
        results = []
        for scenario in scenarios:
            console.rule(f"drill: {scenario.name}: {scenario.description}")
            results.append(run_scenario(settings, scenario, versions))
        return results
    finally:
        LocalPlatform(settings).down()


app = typer.Typer(add_completion=False, no_args_is_help=False)


@app.command()
def main(
    state_dir: Annotated[Path, typer.Option(help="the drill's own state")] = Path(
        ".loopline/drill"
    ),
    interval_s: Annotated[float, typer.Option(help="analysis interval")] = 12.0,
    traffic_rps: Annotated[float, typer.Option(help="Locust rate through the route")] = 100.0,
    only: Annotated[
        list[str] | None, typer.Option(help="run only these scenarios (repeatable)")
    ] = None,
) -> None:
    """Run the canary drills and print the table (exit 1 when a scenario is not as expected)."""
    names = [scenario.name for scenario in SCENARIOS]
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        console.print(f"--only: unknown {unknown}; expected some of {', '.join(names)}")
        raise typer.Exit(2)
    chosen = tuple(s for s in SCENARIOS if not only or s.name in only)
    if state_dir.exists():
        import shutil

        shutil.rmtree(state_dir)  # every drill starts from nothing
    settings = make_settings(state_dir, interval_s, traffic_rps)
    started = time.perf_counter()
    try:
        results = drill(settings, chosen)
    except LooplineError as err:
        console.print(f"[red]drill stopped: {err}[/red]")
        raise typer.Exit(1) from err
    console.print(table(results, interval_s))
    for line in reasons(results):
        console.print(line, markup=False, highlight=False)
    out = settings.state_path / "drill-results.json"
    out.write_text(
        json.dumps([{**asdict(r), "as_expected": r.as_expected} for r in results], indent=2) + "\n",
        encoding="utf-8",
    )
    console.print(f"drill took {time.perf_counter() - started:.0f} s; results in {out}")
    if not all(result.as_expected for result in results):
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
