"""Promote step: carry the canary from its first share to 100 %, or roll it back.

``run`` wires :mod:`steps.canary` to the world: the platform of ``LOOPLINE_PLATFORM`` (the local
stand-in or Kubernetes), Prometheus' HTTP API, the promotion lock and the MLflow registry.

- **promote** (the workflow's ``promote`` task, ``loopline canary promote V``,
  ``scripts/canary_promote.py``): under the lock, :class:`~steps.canary.promotion.Promotion`
  moves the weights and judges every interval. Promoted: ``champion`` moves to the version (the
  one it replaces becomes ``previous_champion``). Rolled back: the aliases stay; the step exits
  4 (:class:`~steps.core.errors.CanaryRolledBack`) so Argo shows the run failed and never
  retries it. Either way the version is tagged (``canary.*``) and the analysis record (JSON,
  HTML, one PNG per metric) is logged to MLflow on the version's run, under ``canary/``.
- **abort** (``loopline canary abort``): roll the canary back now, without waiting for the
  lock (an emergency brake); a promotion in progress sees it and stops.
- **rollback** (``loopline canary rollback``): put ``previous_champion`` back on stable and make
  it ``champion`` again (the version it replaces becomes ``previous_champion``: rollback twice is
  undo).

Running it again is safe: it resumes from the route's weight; a version already promoted or
rolled back reports that again.

CLI: ``python -m steps.promote --model-version V --out-dir DIR [--action promote|abort|rollback]``;
outputs ``outcome``, ``final_weight``, ``reasons``, ``report_uri``.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import BaseModel, ValidationError
from rich.table import Table

from steps.canary import analysis, report
from steps.canary.judge import Measurement, Verdict, judge, promotion_windows
from steps.canary.lock import default_identity, held, lock_for
from steps.canary.promotion import Clock, Promotion
from steps.canary.record import AnalysisRecord, CheckRecord
from steps.core import names
from steps.core.cli_support import console, new_app, reports_errors
from steps.core.errors import (
    CanaryRolledBack,
    ConfigError,
    DataError,
    RegistryError,
)
from steps.core.outputs import write_outputs, write_result
from steps.core.redact import redact
from steps.core.settings import CanarySettings, Settings, load_settings
from steps.io import tracking
from steps.io.registry import Registry
from steps.platform.base import TRACKS, Release, Weights
from steps.platform.target import Platform, platform_for


class Action(StrEnum):
    """What the promote step is asked to do."""

    promote = "promote"
    abort = "abort"
    rollback = "rollback"


class PromoteResult(BaseModel):
    """What the step did and where its record is."""

    model_name: str
    model_version: str
    action: str
    outcome: str
    final_weight: int
    reasons: list[str]
    champion: str | None
    report_dir: str | None
    report_uri: str | None
    seconds: float


def load_policy(settings: Settings, policy_file: Path | None) -> CanarySettings:
    """Return the canary policy: ``settings.canary`` with a YAML policy file's fields on top.

    Raises:
        DataError: when the file cannot be read or is not a YAML mapping.
        ConfigError: naming the file, each bad field and its expected form.
    """
    if policy_file is None:
        return settings.canary
    try:
        loaded = yaml.safe_load(policy_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise DataError(f"canary policy {policy_file}: cannot read it as YAML: {err}") from err
    if not isinstance(loaded, dict):
        raise DataError(
            f"canary policy {policy_file}: expected a mapping of policy fields (e.g. "
            f"max_error_ratio: 0.01), got {type(loaded).__name__}"
        )
    try:
        return CanarySettings.model_validate({**settings.canary.model_dump(), **loaded})
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']} (got {redact(repr(e.get('input')))})"
            for e in err.errors()
        )
        raise ConfigError(
            f"canary policy {policy_file}: {problems}; "
            f"fields: {', '.join(CanarySettings.model_fields)}"
        ) from err


def metrics_source(settings: Settings) -> analysis.PrometheusAPI:
    """Prometheus' HTTP API: ``canary.prometheus_url``, else the local stack's Prometheus.

    Raises:
        ConfigError: on kubernetes when no Prometheus URL is configured.
    """
    url = settings.canary.prometheus_url
    if url is None:
        if settings.platform == "kubernetes":
            raise ConfigError(
                "LOOPLINE_CANARY__PROMETHEUS_URL: the canary analysis on kubernetes needs "
                "Prometheus' URL, e.g. http://prometheus-operated.monitoring:9090"
            )
        from steps.platform.local.prometheus import base_url

        url = base_url(settings.stack)
    return analysis.PrometheusAPI(url)


def run(
    settings: Settings,
    version: str | None,
    action: Action = Action.promote,
    pipeline_run: str = "",
    policy: CanarySettings | None = None,
    platform: Platform | None = None,
    source: analysis.MetricsSource | None = None,
    clock: Clock | None = None,
) -> PromoteResult:
    """Promote, abort or roll back (see the module docstring).

    Raises:
        ConfigError: for a bad flag or policy; RegistryError: for a missing version or alias.
        DeployConflict: when ``version`` is not the canary; PromotionLocked: when another
            promotion holds the lock; DeployError: when the platform refuses a change.
    """
    started = time.perf_counter()
    if action is Action.promote and not version:
        raise ConfigError("--model-version: expected the canary's version number, e.g. 7")
    tracking.connect(settings)
    registry = Registry(settings.model_name)
    model_version = registry.version(version) if version else None
    number = str(model_version.version) if model_version else ""
    metrics = source or metrics_source(settings) if action is Action.promote else None
    if action is Action.abort:
        _has_canary(platform if platform is not None else platform_for(settings, start=False))
    target = platform if platform is not None else platform_for(settings)
    chosen = policy or settings.canary
    if action is Action.abort:
        outcome = _abort(settings, target, registry)
    elif action is Action.rollback:
        outcome = _rollback(settings, target, registry)
    else:
        assert metrics is not None and model_version is not None
        outcome = _promote(
            settings,
            registry,
            number,
            model_version.tags,
            target,
            chosen,
            pipeline_run,
            metrics,
            clock or Clock(),
        )
    record, reasons, number = outcome
    report_dir = report_uri = None
    if record is not None and (record.checks or record.weight_changes):  # something to show
        report_dir, report_uri = _write_record(settings, registry, record, metrics)
        registry.set_version_tags(number, {names.CANARY_REPORT_TAG: report_uri or report_dir})
    return PromoteResult(
        model_name=settings.model_name,
        model_version=number,
        action=action.value,
        outcome=record.outcome if record and record.outcome else reasons[0],
        final_weight=record.final_weight if record and record.final_weight is not None else 0,
        reasons=record.reasons if record else reasons[1:],
        champion=registry.alias_version(names.CHAMPION),
        report_dir=report_dir,
        report_uri=report_uri,
        seconds=round(time.perf_counter() - started, 3),
    )


Outcome = tuple[AnalysisRecord | None, list[str], str]
"""(the analysis record, or None with [outcome, *reasons] when nothing was analysed, version)."""


def _promote(
    settings: Settings,
    registry: Registry,
    version: str,
    tags: Mapping[str, str],
    target: Platform,
    policy: CanarySettings,
    pipeline_run: str,
    source: analysis.MetricsSource,
    clock: Clock,
) -> Outcome:
    served = target.served()
    if tags.get(names.CANARY_STATE_TAG) == "rolled_back" and (
        served.canary is None or served.canary.version != version
    ):
        # The version's tags already say so, with the reasons: nothing to write again.
        raise CanaryRolledBack(
            f"v{version} was rolled back earlier: {tags.get(names.CANARY_REASONS_TAG)}"
        )
    interval_s = policy.interval_for(settings.platform)
    min_requests = policy.min_requests_for(settings.platform)
    stable_version = served.stable.version if served.stable else None
    record = AnalysisRecord(
        model_name=settings.model_name,
        version=version,
        stable_version=stable_version,
        platform=settings.platform,
        steps=settings.deploy.traffic_steps,
        interval_s=interval_s,
        policy={
            **policy.model_dump(),
            "prometheus_url": redact(policy.prometheus_url) if policy.prometheus_url else None,
            "interval_s": interval_s,
            "min_requests": min_requests,
        },
        started_at=clock.now(),
    )

    def on_check(check: CheckRecord) -> None:
        _print_check(record, check)
        decision = f"{check.verdict.outcome} at {check.weight}%: {check.action}"
        registry.set_version_tags(version, {names.CANARY_DECISION_TAG: decision})

    def measure(window_s: float) -> Measurement:
        return analysis.measure(source, version, stable_version, window_s)

    windows = promotion_windows(len(settings.deploy.traffic_steps), policy.max_inconclusive)

    def decide(measurement: Measurement) -> Verdict:
        return judge(measurement, policy, min_requests, windows)

    identity = pipeline_run or default_identity(version)
    with held(lock_for(settings, identity)) as lock:
        if served.canary is not None and served.canary.version == version:
            _mark(registry, version, "in_progress", [f"promotion by {identity}"])
        promotion = Promotion(
            platform=target,
            version=version,
            policy=policy,
            steps=settings.deploy.traffic_steps,
            interval_s=interval_s,
            analyze=measure,
            judge=decide,
            record=record,
            rollout_timeout_s=settings.deploy.rollout_timeout_s,
            renew_lock=lock.renew,
            on_check=on_check,
            clock=_showing_progress(clock),
        )
        console.print(
            f"{settings.model_name} v{version}: canary analysis every {interval_s:g} s "
            f"(steps {', '.join(f'{s}%' for s in record.steps)}; at least {min_requests} canary "
            f"requests per check)"
        )
        promotion.run()
    assert record.outcome is not None
    if record.outcome == "promoted":
        registry.promote_champion(version)
    _mark(registry, version, record.outcome, record.reasons)
    return record, [], version


def _has_canary(target: Platform) -> Release:
    canary = target.served().canary
    if canary is None:
        raise ConfigError("loopline canary abort: no canary is deployed; nothing to abort")
    return canary


def _abort(settings: Settings, target: Platform, registry: Registry) -> Outcome:
    version = _has_canary(target).version
    target.set_weights(Weights.canary_at(0))
    target.retire("canary")
    reasons = [f"aborted by {default_identity(version)}"]
    _mark(registry, version, "rolled_back", reasons)
    return None, ["rolled_back", *reasons], version


def _rollback(settings: Settings, target: Platform, registry: Registry) -> Outcome:
    previous = registry.alias_version(names.PREVIOUS_CHAMPION)
    if previous is None:
        raise RegistryError(
            f"model {settings.model_name} has no {names.PREVIOUS_CHAMPION!r} alias: no earlier "
            "champion to put back (loopline model show lists the versions)"
        )
    tags = registry.version(previous).tags
    artifact = tags.get(names.DEPLOY_ARTIFACT_TAG)
    if not artifact:
        raise RegistryError(
            f"{settings.model_name} v{previous} has no {names.DEPLOY_ARTIFACT_TAG} tag: it was "
            "never deployed, so there is nothing to put back"
        )
    release = Release(
        model_name=settings.model_name,
        version=previous,
        artifact=artifact,
        bento_tag=tags.get(names.DEPLOY_BENTO_TAG, ""),
    )
    identity = default_identity(previous)
    with held(lock_for(settings, identity)):
        target.roll_out("stable", release, settings.deploy.rollout_timeout_s)
        target.set_weights(Weights.canary_at(0))
        if target.served().canary is not None:
            target.retire("canary")
    demoted = registry.promote_champion(previous)
    reasons = [f"v{previous} is back on stable at 100% and champion, by {identity}"]
    if demoted is not None:
        _mark(registry, demoted, "rolled_back", [f"replaced by v{previous}: {identity}"])
    return None, ["rolled_back", *reasons], previous


def _mark(registry: Registry, version: str, state: str, reasons: list[str]) -> None:
    registry.set_version_tags(
        version,
        {
            names.CANARY_STATE_TAG: state,
            names.CANARY_REASONS_TAG: "; ".join(reasons)[:4000],
            names.CANARY_TIME_TAG: datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )


def _write_record(
    settings: Settings,
    registry: Registry,
    record: AnalysisRecord,
    source: analysis.MetricsSource | None,
) -> tuple[str, str | None]:
    """Write the report locally, then log it to MLflow on the version's run.

    Returns:
        The local directory and the MLflow artifact URI (None when it could not be logged:
        the local copy stays and the failure is printed).
    """
    if record.checks:
        try:
            metrics = source or metrics_source(settings)
            end = record.finished_at or time.time()
            record.series = analysis.series(metrics, record.started_at, end, record.interval_s)
        except analysis.AnalysisError as err:
            console.print(f"[yellow]plots from the checks only: {err}[/yellow]")
    stamp = datetime.fromtimestamp(record.started_at, UTC).strftime("%Y%m%dT%H%M%SZ")
    directory = settings.state_path / "canary" / f"{record.model_name}-v{record.version}-{stamp}"
    report.write_report(record, directory)
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    run_id = registry.version(record.version).run_id
    artifact_path = f"{names.CANARY_REPORT_DIR}/{stamp}"
    try:
        client = MlflowClient()
        client.log_artifacts(run_id, str(directory), artifact_path)
        uri = f"{client.get_run(run_id).info.artifact_uri}/{artifact_path}"
    except (MlflowException, OSError) as err:
        console.print(f"[yellow]analysis record kept at {directory}; not logged: {err}[/yellow]")
        return str(directory), None
    return str(directory), uri


def _print_check(record: AnalysisRecord, check: CheckRecord) -> None:
    colour = {"pass": "green", "fail": "red", "inconclusive": "yellow", "error": "magenta"}
    verdict = check.verdict
    since = check.at - record.started_at
    console.print(
        f"t+{since:5.0f}s canary {check.weight:3d}%  [{colour[verdict.outcome]}]"
        f"{verdict.outcome.upper()}[/] -> {check.action}  "
        f"(analysis {check.analysis_s * 1000:.0f} ms)"
    )
    for reason in dict.fromkeys(verdict.reasons):  # in order, each once
        console.print(f"    {reason}", markup=False, highlight=False)
    for track, seen in sorted(check.tracks.items()):
        ratio = f"{seen.error_ratio:.2%}" if seen.error_ratio is not None else "-"
        p99 = f"{seen.p99_ms:.1f} ms" if seen.p99_ms is not None else "-"
        console.print(
            f"    {track:6} v{seen.version}: {seen.requests:.0f} requests, 5xx {ratio}, p99 {p99}",
            markup=False,
            highlight=False,
        )


def _showing_progress(clock: Clock) -> Clock:
    """The clock, with a live countdown while it waits for the next analysis."""

    def sleep(seconds: float) -> None:
        with console.status(f"next analysis in {seconds:.0f} s") as status:
            deadline = time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0:
                status.update(f"next analysis in {left:.0f} s")
                clock.sleep(min(1.0, left))

    return Clock(now=clock.now, sleep=sleep)


def _outputs(out_dir: Path, result: PromoteResult) -> None:
    write_outputs(
        out_dir,
        "promote",
        {
            "outcome": result.outcome,
            "final_weight": str(result.final_weight),
            "reasons": "; ".join(result.reasons),
            "report_uri": result.report_uri or result.report_dir or "",
        },
    )
    write_result(out_dir, result)


def _print_result(result: PromoteResult) -> None:
    console.print(
        f"{result.model_name} v{result.model_version}: {result.outcome} "
        f"(canary reached {result.final_weight}%); champion: v{result.champion}"
    )
    for reason in result.reasons:
        console.print(f"  {reason}", markup=False, highlight=False)
    if result.report_dir:
        console.print(f"analysis report: {result.report_dir}/analysis.html")
    if result.report_uri:
        console.print(f"logged to MLflow: {result.report_uri}")


def _stop_cleanly_on_sigterm() -> None:
    """Make SIGTERM (a pod's deadline, ``kubectl delete``, Argo stopping the run) exit 143 through
    the ``finally`` blocks, so the promotion lock is released; the weights stay where they are
    and a re-run resumes from them."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def _finish(result: PromoteResult) -> None:
    _print_result(result)
    if result.action == Action.promote.value and result.outcome == "rolled_back":
        raise CanaryRolledBack(
            f"v{result.model_version} was rolled back: {'; '.join(result.reasons)}"
        )


app = new_app("Carry the canary to 100 % after Prometheus SLO checks, or roll it back.")

PolicyOption = Annotated[
    Path | None,
    typer.Option(help="YAML canary policy (fields of LOOPLINE_CANARY__*), on top of settings"),
]


@app.command()
@reports_errors
def main(
    out_dir: Annotated[Path, typer.Option(help="directory for output parameter files")],
    model_version: Annotated[str | None, typer.Option(help="the canary's version")] = None,
    action: Annotated[Action, typer.Option(help="promote, abort or rollback")] = Action.promote,
    pipeline_run: Annotated[str, typer.Option(help="workflow name: the lock's holder")] = "",
    policy: PolicyOption = None,
    model_name: Annotated[str | None, typer.Option(help="registered model name")] = None,
) -> None:
    """Promote the canary step by step (or abort it, or roll back to previous_champion); write
    outcome, final_weight, reasons, report_uri. Exit 4 when the canary was rolled back."""
    settings = load_settings(model_name=model_name)
    chosen = load_policy(settings, policy)
    _stop_cleanly_on_sigterm()
    try:
        result = run(settings, model_version, action, pipeline_run, chosen)
    except CanaryRolledBack as err:
        rolled = PromoteResult(
            model_name=settings.model_name, model_version=model_version or "", action="promote",
            outcome="rolled_back", final_weight=0, reasons=[str(err)], champion=None,
            report_dir=None, report_uri=None, seconds=0.0,
        )  # fmt: skip
        _outputs(out_dir, rolled)
        raise
    _outputs(out_dir, result)
    _finish(result)


canary_app = new_app("The canary: its status, promotion, abort and rollback (on-call commands).")


@canary_app.command("status")
@reports_errors
def status_command(
    model_name: Annotated[str | None, typer.Option(help="registered model name")] = None,
) -> None:
    """What each track serves, the weights, the current step and the last decision."""
    settings = load_settings(model_name=model_name)
    tracking.connect(settings)
    served = platform_for(settings, start=False).served()
    registry = Registry(settings.model_name)
    table = Table("track", "version", "weight", "canary state", "last decision")
    for track in TRACKS:
        release = served.on(track)
        weight = getattr(served.weights, track)
        tags: dict[str, Any] = registry.version(release.version).tags if release else {}
        table.add_row(
            track,
            f"v{release.version}" if release else "nothing",
            f"{weight}%",
            str(tags.get(names.CANARY_STATE_TAG, "-")) if track == "canary" else "",
            str(tags.get(names.CANARY_DECISION_TAG, "-")) if track == "canary" else "",
        )
    console.print(table)
    steps = settings.deploy.traffic_steps
    if served.canary is not None:
        weight = served.weights.canary
        at = f"step {steps.index(weight) + 1} of {len(steps)}" if weight in steps else "between"
        console.print(f"canary at {weight}% ({at}: {', '.join(f'{s}%' for s in steps)})")
    else:
        console.print("no canary in progress")
    holder = lock_for(settings, "status").holder()
    if holder is not None:
        console.print(f"promotion lock held by {holder.identity}")
    champion = registry.alias_version(names.CHAMPION)
    console.print(f"champion: v{champion}" if champion else "champion: none")


@canary_app.command("promote")
@reports_errors
def promote_command(
    version: Annotated[str, typer.Argument(help="the canary's version")],
    policy: PolicyOption = None,
    model_name: Annotated[str | None, typer.Option(help="registered model name")] = None,
) -> None:
    """Continue VERSION's promotion from the route's current weight (exit 4 if rolled back)."""
    settings = load_settings(model_name=model_name)
    _stop_cleanly_on_sigterm()
    _finish(run(settings, version, Action.promote, "", load_policy(settings, policy)))


@canary_app.command("abort")
@reports_errors
def abort_command(
    model_name: Annotated[str | None, typer.Option(help="registered model name")] = None,
) -> None:
    """Roll the canary back now: 100 % to stable, canary scaled to zero, aliases untouched."""
    _print_result(run(load_settings(model_name=model_name), None, Action.abort))


@canary_app.command("rollback")
@reports_errors
def rollback_command(
    model_name: Annotated[str | None, typer.Option(help="registered model name")] = None,
) -> None:
    """Put previous_champion back on stable at 100 % and make it champion again."""
    _print_result(run(load_settings(model_name=model_name), None, Action.rollback))


if __name__ == "__main__":
    app()
