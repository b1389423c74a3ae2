"""The benchmark's numbers and the pure decisions on them: best step under the SLO, targets.

Everything here is a function of measured values and a :class:`Policy`, so it is unit-tested
without starting a server. :func:`markdown_report` renders the table written to
``reports/bench-serving.md``; the JSON file is :class:`BenchReport` dumped as is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from scripts.bench.wrk import WrkResult


class Policy(BaseModel):
    """The latency SLO a step must meet and the targets Loopline is held to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slo_p99_ms: float = 50.0
    max_error_share: float = 0.001
    min_rps: float = 1000.0
    min_peer_ratio: float = 3.0
    max_cold_start_s: float = 3.0
    max_rss_mb_per_worker: float = 180.0
    peers_for_ratio: tuple[str, ...] = ("mlserver", "kserve")


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
    """The paced run: ``target_rps`` offered over ``connections`` connections."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target_rps: float
    connections: int
    achieved_rps: float
    p50_ms: float
    p99_ms: float
    error_share: float

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
    fixed_rate: FixedRateResult
    first_start_s: float
    cold_start_s: float
    cold_start_runs_s: list[float]
    rss_mb: float
    pss_mb: float
    processes: list[ProcessEntry]

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
    fixed_rate_rps: float
    fixed_rate_connections: int
    fixed_rate_s: float
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
    against it whenever Loopline has one. A peer that was not measured is reported as such.

    Returns:
        One verdict per target, in a fixed order (empty if Loopline was not measured).
    """
    by_name = {server.name: server for server in servers}
    loopline = by_name.get("loopline")
    if loopline is None:
        return []
    slo = f"p99 <= {policy.slo_p99_ms:g} ms"
    ours = loopline.best.ok_rps if loopline.best else 0.0
    verdicts = [
        TargetVerdict(
            target=f">= {policy.min_rps:,.0f} req/s at {slo}",
            measured=f"{ours:,.0f} req/s" if loopline.best else f"no step met {slo}",
            met=ours >= policy.min_rps,
        )
    ]
    for peer_name in policy.peers_for_ratio:
        verdicts.append(_ratio_verdict(ours, by_name.get(peer_name), peer_name, policy))
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


def _ratio_verdict(
    ours: float, peer: ServerResult | None, peer_name: str, policy: Policy
) -> TargetVerdict:
    target = f">= {policy.min_peer_ratio:g}x {peer_name} req/s at p99 <= {policy.slo_p99_ms:g} ms"
    if peer is None:
        return TargetVerdict(target=target, measured=f"{peer_name} not measured", met=False)
    if peer.best is None:
        return TargetVerdict(
            target=target,
            measured=f"{peer.label} met the SLO at no step; Loopline {ours:,.0f} req/s",
            met=ours > 0,
        )
    ratio = ours / peer.best.ok_rps if peer.best.ok_rps else math.inf
    return TargetVerdict(
        target=target,
        measured=f"{ratio:.2f}x ({ours:,.0f} vs {peer.best.ok_rps:,.0f} req/s)",
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
        f"p50 / p99 at {config.fixed_rate_rps:g} req/s (ms) | Cold start (s) | "
        "RSS after load (MB) | Input |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for server in report.servers:
        lines.append(_summary_row(server))
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
    lines += ["", "## How to read this", ""]
    lines += [f"- {note}" for note in _method_notes(report)]
    return "\n".join(lines) + "\n"


def _summary_row(server: ServerResult) -> str:
    best = (
        f"{server.best.ok_rps:,.0f} ({server.best.connections})" if server.best else "none met SLO"
    )
    peak = max((step.ok_rps for step in server.steps), default=0.0)
    fixed = server.fixed_rate
    paced = f"{fixed.p50_ms:.1f} / {fixed.p99_ms:.1f}"
    if not fixed.sustained:
        paced += f" (kept {fixed.achieved_rps:,.0f} req/s only)"
    if fixed.error_share > 0:
        paced += f", {fixed.error_share:.1%} errors"
    return (
        f"| {server.label} | {best} | {peak:,.0f} | {paced} | {server.cold_start_s:.2f} | "
        f"{server.rss_mb:.0f} ({len(server.processes)} proc, largest {server.largest_rss_mb:.0f})"
        f" | {server.note} |"
    )


def _method_notes(report: BenchReport) -> list[str]:
    config = report.config
    return [
        "Best req/s: the step with the most successful requests per second whose p99 met the "
        "SLO and whose errors (non-2xx, socket errors, timeouts) stayed under the limit.",
        f"Fixed rate: wrk paced by bench.lua to {config.fixed_rate_rps:g} req/s over "
        f"{config.fixed_rate_connections} connections for {config.fixed_rate_s:g} s (send slots "
        "1/rate apart, each free connection takes the next slot: open loop while a connection "
        "is free). Latency counts from the actual send; a server that cannot keep up shows "
        "the rate it achieved.",
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
        "One wrk thread on the same 2-core machine as the server: the generator competes for "
        "CPU, the same way for every server.",
    ]
