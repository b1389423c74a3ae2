"""The benchmark's numbers and the pure decisions on them: best step under the SLO, targets.

Everything here is a function of measured values and a :class:`Policy`, so it is unit-tested
without starting a server. :func:`markdown_report` renders the table written to
``reports/bench-serving.md``; the JSON file is :class:`BenchReport` dumped as is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from scripts.bench.pacer import PacedRun
from scripts.bench.wrk import WrkResult


class Policy(BaseModel):
    """The latency SLO a step must meet and the targets Loopline is held to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slo_p99_ms: float = 50.0
    max_error_share: float = 0.001
    slo_rps: float = 1000.0  # the paced rate at which p99 must meet the SLO
    min_peer_ratio: float = 1.0
    stretch_peer_ratio: float = 1.5
    max_cold_start_s: float = 1.5
    max_rss_mb_per_worker: float = 180.0
    peers_for_ratio: tuple[str, ...] = ("kserve",)
    shed_only_above_peak_share: float = 0.8  # no 503 (no error at all) below this share of peak


class StepResult(BaseModel):
    """One closed-loop step: ``connections`` clients sending back to back."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connections: int
    ok_rps: float
    p50_ms: float
    p99_ms: float
    error_share: float
    requests: int

    @classmethod
    def from_wrk(cls, connections: int, run: WrkResult) -> StepResult:
        """Summarise a wrk run."""
        return cls(
            connections=connections,
            ok_rps=round(run.ok_rps, 1),
            p50_ms=run.latency_us.p50 / 1000,
            p99_ms=run.latency_us.p99 / 1000,
            error_share=round(run.error_share, 6),
            requests=run.requests,
        )


class FixedRateResult(BaseModel):
    """A paced run: ``target_rps`` offered over ``connections`` connections by ``client``.

    ``wrk`` counts latency from the actual send; ``pacer`` (:mod:`scripts.bench.pacer`) from
    the planned send time, so waiting for a free connection counts too.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    target_rps: float
    connections: int
    achieved_rps: float
    p50_ms: float
    p99_ms: float
    error_share: float
    client: str = "wrk"
    p999_ms: float | None = None
    max_ms: float | None = None

    @property
    def sustained(self) -> bool:
        """True if the server kept up with the offered rate (within 3 %)."""
        return self.achieved_rps >= 0.97 * self.target_rps

    @classmethod
    def from_wrk(cls, target_rps: float, connections: int, run: WrkResult) -> FixedRateResult:
        """Summarise a paced wrk run."""
        return cls(
            target_rps=target_rps,
            connections=connections,
            achieved_rps=round(run.ok_rps, 1),
            p50_ms=run.latency_us.p50 / 1000,
            p99_ms=run.latency_us.p99 / 1000,
            error_share=round(run.error_share, 6),
            max_ms=run.latency_us.max / 1000,
        )

    @classmethod
    def from_pacer(cls, run: PacedRun) -> FixedRateResult:
        """Summarise a run of the second client."""
        return cls(
            target_rps=run.target_rps,
            connections=run.connections,
            achieved_rps=round(run.achieved_rps, 1),
            p50_ms=round(run.percentile_ms(50), 3),
            p99_ms=round(run.percentile_ms(99), 3),
            error_share=round(run.errors / run.sent, 6) if run.sent else 0.0,
            client="pacer",
            p999_ms=round(run.percentile_ms(99.9), 3),
            max_ms=round(run.percentile_ms(100), 3),
        )


class ProcessEntry(BaseModel):
    """One process of a server's tree after the load."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: str
    rss_mb: float
    pss_mb: float


class ServerResult(BaseModel):
    """Everything measured for one server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    label: str
    note: str
    workers: int
    steps: list[StepResult]
    best: StepResult | None
    paced: list[FixedRateResult]
    client_check: FixedRateResult | None = None
    first_start_s: float
    cold_start_s: float
    cold_start_runs_s: list[float]
    rss_mb: float
    pss_mb: float
    processes: list[ProcessEntry]

    @property
    def peak_rps(self) -> float:
        """The most successful req/s of any closed-loop step."""
        return max((step.ok_rps for step in self.steps), default=0.0)

    def paced_at(self, rps: float) -> FixedRateResult | None:
        """The wrk paced run at ``rps``, if there was one."""
        return next((run for run in self.paced if run.target_rps == rps), None)

    @property
    def largest_rss_mb(self) -> float:
        """RSS of the tree's biggest process (a worker, in every server here)."""
        return max((entry.rss_mb for entry in self.processes), default=0.0)

    @property
    def rss_mb_per_worker(self) -> float:
        """Whole-tree RSS (supervisor included) divided by the worker count."""
        return self.rss_mb / self.workers


class TargetVerdict(BaseModel):
    """Whether Loopline met one target, with the numbers behind the answer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str
    measured: str
    met: bool


class BenchConfig(BaseModel):
    """How the benchmark ran: enough to reproduce and to judge the numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    quick: bool
    step_s: float
    connections: list[int]
    paced_rps: list[float]
    paced_connections: int
    paced_s: float
    cold_starts: int
    omp_threads: int | None
    pool_rows: int
    model: str
    load_generator: str
    cpus: int
    load_average_before: list[float]


class BenchReport(BaseModel):
    """The whole benchmark: ``reports/bench-serving.json``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    config: BenchConfig
    policy: Policy
    servers: list[ServerResult]
    targets: list[TargetVerdict]


def best_under_slo(steps: Sequence[StepResult], policy: Policy) -> StepResult | None:
    """Return the step with the most successful req/s among those meeting the SLO.

    A step qualifies when its p99 is at most ``slo_p99_ms`` and at most ``max_error_share`` of
    its requests failed (a server shedding load with 503s does not get to count the rest).

    Returns:
        The best qualifying step (fewer connections wins a tie), or None if none qualifies.
    """
    qualifying = [
        step
        for step in steps
        if step.p99_ms <= policy.slo_p99_ms and step.error_share <= policy.max_error_share
    ]
    if not qualifying:
        return None
    return max(qualifying, key=lambda step: (step.ok_rps, -step.connections))


def evaluate_targets(servers: Sequence[ServerResult], policy: Policy) -> list[TargetVerdict]:
    """Judge Loopline (the server named ``loopline``) against the policy's targets.

    A peer with no step under the SLO has no throughput at that p99: the ratio target is met
    against it whenever Loopline has one. A peer or a run that was not measured is reported as
    such (and the target missed).

    Returns:
        One verdict per target, in a fixed order (empty if Loopline was not measured).
    """
    by_name = {server.name: server for server in servers}
    loopline = by_name.get("loopline")
    if loopline is None:
        return []
    ours = loopline.best.ok_rps if loopline.best else 0.0
    verdicts = [
        _paced_verdict(loopline.paced_at(policy.slo_rps), "wrk, from the send", policy),
        _paced_verdict(loopline.client_check, "second client, from the planned send", policy),
    ]
    for peer_name in policy.peers_for_ratio:
        verdicts.append(_ratio_verdict(ours, by_name.get(peer_name), peer_name, policy))
    verdicts.append(_shedding_verdict(loopline, policy))
    verdicts.append(
        TargetVerdict(
            target=f"cold start <= {policy.max_cold_start_s:g} s (process start to /readyz 200)",
            measured=f"{loopline.cold_start_s:.2f} s (median of {len(loopline.cold_start_runs_s)})",
            met=loopline.cold_start_s <= policy.max_cold_start_s,
        )
    )
    verdicts.append(
        TargetVerdict(
            target=f"RSS <= {policy.max_rss_mb_per_worker:g} MB per worker (tree RSS / workers)",
            measured=f"{loopline.rss_mb_per_worker:.0f} MB ({loopline.rss_mb:.0f} MB, "
            f"{loopline.workers} worker(s), {len(loopline.processes)} processes, largest "
            f"{loopline.largest_rss_mb:.0f} MB)",
            met=loopline.rss_mb_per_worker <= policy.max_rss_mb_per_worker,
        )
    )
    return verdicts


def _paced_verdict(run: FixedRateResult | None, client: str, policy: Policy) -> TargetVerdict:
    target = f"paced {policy.slo_rps:,.0f} req/s: p99 <= {policy.slo_p99_ms:g} ms ({client})"
    if run is None:
        return TargetVerdict(target=target, measured="not measured", met=False)
    measured = f"p99 {run.p99_ms:.1f} ms at {run.achieved_rps:,.0f} req/s"
    if run.error_share:
        measured += f", {run.error_share:.2%} errors"
    met = (
        run.sustained
        and run.p99_ms <= policy.slo_p99_ms
        and run.error_share <= policy.max_error_share
    )
    return TargetVerdict(target=target, measured=measured, met=met)


def _shedding_verdict(server: ServerResult, policy: Policy) -> TargetVerdict:
    share = policy.shed_only_above_peak_share
    below = [step for step in server.steps if step.ok_rps <= share * server.peak_rps]
    failing = [step for step in below if step.error_share > 0]
    if failing:
        measured = "errors at " + ", ".join(
            f"{s.connections} conns ({s.ok_rps:,.0f} req/s, {s.error_share:.2%})" for s in failing
        )
    else:
        measured = (
            f"0 errors in the {len(below)} step(s) at or below {share:.0%} of peak "
            f"({server.peak_rps:,.0f} req/s)"
        )
    return TargetVerdict(
        target=f"no error response below {share:.0%} of peak req/s (closed loop)",
        measured=measured,
        met=not failing,
    )


def _ratio_verdict(
    ours: float, peer: ServerResult | None, peer_name: str, policy: Policy
) -> TargetVerdict:
    target = (
        f">= {policy.min_peer_ratio:g}x {peer_name} req/s at p99 <= {policy.slo_p99_ms:g} ms "
        f"(stretch {policy.stretch_peer_ratio:g}x)"
    )
    if peer is None:
        return TargetVerdict(target=target, measured=f"{peer_name} not measured", met=False)
    if peer.best is None:
        return TargetVerdict(
            target=target,
            measured=f"{peer.label} met the SLO at no step; Loopline {ours:,.0f} req/s",
            met=ours > 0,
        )
    ratio = ours / peer.best.ok_rps if peer.best.ok_rps else math.inf
    stretch = "stretch met" if ratio >= policy.stretch_peer_ratio else "stretch not met"
    return TargetVerdict(
        target=target,
        measured=f"{ratio:.2f}x ({ours:,.0f} vs {peer.best.ok_rps:,.0f} req/s; {stretch})",
        met=ratio >= policy.min_peer_ratio,
    )


def markdown_report(report: BenchReport) -> str:
    """Render the report as markdown: the comparison table, per-step numbers, targets, notes.

    Returns:
        The markdown text, ending with a newline.
    """
    config, policy = report.config, report.policy
    slo = f"p99 <= {policy.slo_p99_ms:g} ms"
    lines = [
        "# Serving benchmark",
        "",
        f"Model: {config.model}. Load generator: {config.load_generator}.",
        f"Mode: {'quick' if config.quick else 'full'}; {config.step_s:g} s per step; "
        f"{config.cpus} CPUs; OMP_NUM_THREADS "
        f"{config.omp_threads if config.omp_threads else 'unset (libraries use every core)'}; "
        "load average before the run: "
        + ", ".join(f"{value:.2f}" for value in config.load_average_before)
        + ".",
        "",
        f"| Server | Best req/s at {slo} (conns) | Peak req/s | "
        + " | ".join(f"p50 / p99 at {rps:,.0f} req/s (ms)" for rps in config.paced_rps)
        + " | Cold start (s) | RSS after load (MB) | Input |",
        "|---|---:|---:|" + "---:|" * len(config.paced_rps) + "---:|---:|---|",
    ]
    for server in report.servers:
        lines.append(_summary_row(server, config.paced_rps))
    lines += ["", f"Targets for Loopline ({slo}, at most {policy.max_error_share:.1%} errors):", ""]
    lines += ["| Target | Measured | Met |", "|---|---|---|"]
    for verdict in report.targets:
        lines.append(
            f"| {verdict.target} | {verdict.measured} | {'yes' if verdict.met else 'NO'} |"
        )
    lines += ["", "## Steps (closed loop: N connections sending back to back)", ""]
    lines += ["| Server | Conns | OK req/s | p50 (ms) | p99 (ms) | Errors |"]
    lines += ["|---|---:|---:|---:|---:|---:|"]
    for server in report.servers:
        for step in server.steps:
            lines.append(
                f"| {server.label} | {step.connections} | {step.ok_rps:,.0f} | "
                f"{step.p50_ms:.1f} | {step.p99_ms:.1f} | {step.error_share:.2%} |"
            )
    lines += ["", "## Paced runs (open loop at a fixed rate)", ""]
    lines += ["| Server | Client | Target req/s | Kept req/s | p50 (ms) | p99 (ms) | p99.9 (ms) "]
    lines[-1] += "| Max (ms) | Errors |"
    lines += ["|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for server in report.servers:
        runs = [*server.paced, *([server.client_check] if server.client_check else [])]
        for run in runs:
            lines.append(
                f"| {server.label} | {run.client} | {run.target_rps:,.0f} | "
                f"{run.achieved_rps:,.0f} | {run.p50_ms:.1f} | {run.p99_ms:.1f} | "
                f"{_optional_ms(run.p999_ms)} | {_optional_ms(run.max_ms)} | "
                f"{run.error_share:.2%} |"
            )
    lines += ["", "## How to read this", ""]
    lines += [f"- {note}" for note in _method_notes(report)]
    return "\n".join(lines) + "\n"


def _optional_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _paced_cell(run: FixedRateResult | None) -> str:
    if run is None:
        return "-"
    cell = f"{run.p50_ms:.1f} / {run.p99_ms:.1f}"
    if not run.sustained:
        cell += f" (kept {run.achieved_rps:,.0f} req/s only)"
    if run.error_share > 0:
        cell += f", {run.error_share:.1%} errors"
    return cell


def _summary_row(server: ServerResult, paced_rps: Sequence[float]) -> str:
    best = (
        f"{server.best.ok_rps:,.0f} ({server.best.connections})" if server.best else "none met SLO"
    )
    paced = " | ".join(_paced_cell(server.paced_at(rps)) for rps in paced_rps)
    return (
        f"| {server.label} | {best} | {server.peak_rps:,.0f} | {paced} | "
        f"{server.cold_start_s:.2f} | "
        f"{server.rss_mb:.0f} ({len(server.processes)} proc, largest {server.largest_rss_mb:.0f})"
        f" | {server.note} |"
    )


def _method_notes(report: BenchReport) -> list[str]:
    config = report.config
    return [
        "Best req/s: the step with the most successful requests per second whose p99 met the "
        "SLO and whose errors (non-2xx, socket errors, timeouts) stayed under the limit.",
        "Paced: wrk paced by bench.lua to "
        + ", ".join(f"{rps:,.0f}" for rps in config.paced_rps)
        + f" req/s over {config.paced_connections} connections for {config.paced_s:g} s each "
        "(send slots 1/rate apart, each free connection takes the next slot: open loop while a "
        "connection is free). wrk counts latency from the actual send; a server that cannot "
        "keep up shows the rate it achieved.",
        "Second client (pacer): scripts/bench/pacer.py, asyncio streams in the project's "
        f"Python, {max(config.paced_rps, default=0):,.0f} req/s over {config.paced_connections} "
        "connections: request i is planned at start + i/rate and its latency counts from that "
        "instant (no coordinated omission), one write per request, its own response parser.",
        f"Cold start: process spawn to the readiness endpoint answering 200, median of "
        f"{config.cold_starts} restart(s) after the first start (bytecode compiled, files in "
        "the page cache); the first start is in the JSON.",
        "RSS: sum of VmRSS over the server's whole process tree after the load (shared pages "
        "count once per process); PSS, which splits shared pages, is in the JSON.",
        "Loopline gets raw rows and does the encoding in-server; MLServer and KServe get the "
        "vector already encoded by Loopline's FeatureSpec (they do not know it), which only "
        "makes the comparison harder for Loopline. Every server answers the same probabilities "
        "(checked before the load).",
        "Per-request log lines are off on every server (Loopline's access log is off too).",
        "OMP_NUM_THREADS is the same for every server (XGBoost's default nthread follows it). "
        "Unset, XGBoost runs every single-row prediction on all cores, and on a busy machine "
        "each call waits for its slowest OpenMP thread to be scheduled.",
        "One wrk thread (or the pacer) on the same 2-core machine as the server: the generator "
        "competes for CPU, the same way for every server.",
    ]
