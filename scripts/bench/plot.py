"""The benchmark's figure: throughput against p99 latency per server, with the SLO line."""

from __future__ import annotations

from pathlib import Path

from scripts.bench.results import BenchReport

COLORS = {"loopline": "#1b9e77", "mlserver": "#d95f02", "kserve": "#7570b3", "fastapi": "#e7298a"}


def write_plot(report: BenchReport, path: Path) -> Path:
    """Draw one line per server through its steps (req/s on x, p99 on a log y axis).

    Returns:
        ``path``, a PNG without timestamps in its metadata.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5), dpi=120)
    for server in report.servers:
        rps = [step.ok_rps for step in server.steps]
        p99 = [max(step.p99_ms, 0.1) for step in server.steps]
        color = COLORS.get(server.name, "black")
        axes.plot(rps, p99, marker="o", color=color, label=server.label)
        for step, x, y in zip(server.steps, rps, p99, strict=True):
            axes.annotate(
                str(step.connections), (x, y), textcoords="offset points", xytext=(4, 4),
                fontsize=7, color=color,
            )  # fmt: skip
    slo = report.policy.slo_p99_ms
    axes.axhline(slo, color="red", linestyle="--", linewidth=1, label=f"SLO p99 {slo:g} ms")
    axes.set_yscale("log")
    axes.set_xlabel("successful requests per second (single-row requests)")
    axes.set_ylabel("p99 latency (ms, log scale)")
    mode = "quick" if report.config.quick else "full"
    axes.set_title(f"Serving benchmark ({mode}): labels are wrk connections")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", metadata={"Software": None})
    plt.close(figure)
    return path
