"""Tests of the serving benchmark's pure parts (scripts/bench_serving.py, scripts/bench/*).

No server and no wrk run here: wrk's summary line is a captured one, /proc is a fake tree. The
wrk command line names the installed binary, so that test needs wrk (scripts/system_packages.py).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from scripts.bench.errors import BenchError
from scripts.bench.procfs import descendants, parent_pid, status_kib, tree_memory
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
from scripts.bench.servers import request_body, response_probability
from scripts.bench.wrk import WrkError, parse_wrk_output, wrk_command
from scripts.bench_serving import parse_connections, parse_servers
from steps.core.errors import ConfigError
from tests.fixtures.common import require_tool

# What bench.lua's done() printed after wrk's own summary in a real 3 s run.
WRK_OUTPUT = """Running 3s test @ http://127.0.0.1:18931
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   162.30us  120.00us   4.41ms   98.00%
  82229 requests in 3.10s, 11.84MB read
  Non-2xx or 3xx responses: 229
Requests/sec:  26523.06
Transfer/sec:      3.82MB
BENCH_JSON {"requests": 82229, "duration_us": 3100283, "errors": {"connect": 0, "read": 0, \
"write": 0, "status": 229, "timeout": 0}, "latency_us": {"p50": 140, "p90": 180, "p99": 609, \
"max": 4410, "mean": 162.3}}
"""
POLICY = Policy()


def step(connections: int, ok_rps: float, p99_ms: float, error_share: float = 0.0) -> StepResult:
    return StepResult(
        connections=connections,
        ok_rps=ok_rps,
        p50_ms=p99_ms / 4,
        p99_ms=p99_ms,
        error_share=error_share,
        requests=int(ok_rps * 10),
    )


def server(
    name: str,
    steps: list[StepResult],
    *,
    cold_start_s: float = 1.0,
    rss_mb: float = 150.0,
    workers: int = 1,
    paced_p99_ms: float = 30.0,
    client_p99_ms: float = 35.0,
) -> ServerResult:
    paced_1000 = FixedRateResult(
        target_rps=1000,
        connections=64,
        achieved_rps=999,
        p50_ms=3,
        p99_ms=paced_p99_ms,
        error_share=0,
    )
    client_check = paced_1000.model_copy(
        update={"client": "pacer", "p99_ms": client_p99_ms, "p999_ms": 60.0, "max_ms": 80.0}
    )
    return ServerResult(
        name=name,
        label=name.title(),
        note=f"{name} input",
        workers=workers,
        steps=steps,
        best=best_under_slo(steps, POLICY),
        paced=[
            FixedRateResult(
                target_rps=200, connections=64, achieved_rps=150, p50_ms=3, p99_ms=40, error_share=0
            ),
            paced_1000,
        ],
        client_check=client_check,
        first_start_s=cold_start_s * 2,
        cold_start_s=cold_start_s,
        cold_start_runs_s=[cold_start_s] * 3,
        rss_mb=rss_mb,
        pss_mb=rss_mb * 0.8,
        processes=[
            ProcessEntry(command="supervisor", rss_mb=rss_mb * 0.4, pss_mb=rss_mb * 0.3),
            ProcessEntry(command="worker", rss_mb=rss_mb * 0.6, pss_mb=rss_mb * 0.5),
        ],
    )


def verdicts_by_target(servers: list[ServerResult]) -> dict[str, tuple[str, bool]]:
    return {v.target: (v.measured, v.met) for v in evaluate_targets(servers, POLICY)}


# --- wrk -------------------------------------------------------------------------------------


def test_parse_wrk_output_reads_counts_and_percentiles():
    result = parse_wrk_output(WRK_OUTPUT)

    assert result.requests == 82229
    assert result.latency_us.p50 == 140
    assert result.latency_us.p99 == 609
    assert result.errors.status == 229
    assert result.ok_requests == 82000
    assert result.ok_rps == pytest.approx(82000 / 3.100283)
    assert result.error_share == pytest.approx(229 / 82229)


def test_error_share_counts_socket_errors_and_timeouts_as_attempts():
    line = (
        'BENCH_JSON {"requests": 90, "duration_us": 1000000, "errors": {"connect": 5, "read": 0,'
        ' "write": 0, "status": 0, "timeout": 5}, "latency_us": {"p50": 1, "p90": 1, "p99": 1,'
        ' "max": 1, "mean": 1.0}}'
    )

    result = parse_wrk_output(line)

    assert result.error_share == pytest.approx(10 / 100)
    assert result.ok_rps == pytest.approx(90.0)


def test_parse_wrk_output_without_summary_line_says_what_is_missing():
    with pytest.raises(WrkError, match="BENCH_JSON") as caught:
        parse_wrk_output("Requests/sec: 100\nunable to connect to 127.0.0.1:1\n")

    assert "unable to connect" in str(caught.value)


def test_parse_wrk_output_with_malformed_json_names_the_line():
    with pytest.raises(WrkError, match="not the expected JSON"):
        parse_wrk_output('BENCH_JSON {"requests": 1}')


def test_wrk_command_passes_pool_path_and_rate_to_the_lua_script(tmp_path: Path):
    wrk = require_tool("wrk")
    bodies = tmp_path / "bodies.jsonl"

    argv = wrk_command(
        "http://127.0.0.1:9", "/predict", bodies, connections=16, duration_s=10, rate=250
    )

    assert argv[0] == wrk
    assert argv[argv.index("--connections") + 1] == "16"
    assert argv[argv.index("--duration") + 1] == "10s"
    assert argv[argv.index("--threads") + 1] == "1"
    assert argv[argv.index("--script") + 1].endswith("bench.lua")
    assert argv[-5:] == ["http://127.0.0.1:9", "--", str(bodies), "/predict", "250"]


# --- choosing the best step ------------------------------------------------------------------


def test_best_under_slo_takes_the_highest_throughput_whose_p99_meets_the_slo():
    steps = [step(1, 400, 5), step(8, 1500, 30), step(16, 1700, 49.9), step(32, 2500, 80)]

    best = best_under_slo(steps, POLICY)

    assert best is not None
    assert best.connections == 16


def test_best_under_slo_skips_steps_that_shed_load_with_errors():
    steps = [step(8, 1500, 30), step(16, 2000, 20, error_share=0.02)]

    best = best_under_slo(steps, POLICY)

    assert best is not None
    assert best.connections == 8


def test_best_under_slo_prefers_fewer_connections_on_a_tie():
    best = best_under_slo([step(32, 900, 40), step(8, 900, 20)], POLICY)

    assert best is not None
    assert best.connections == 8


def test_best_under_slo_is_none_when_no_step_meets_the_slo():
    assert best_under_slo([step(1, 100, 60), step(8, 300, 400)], POLICY) is None


# --- targets ---------------------------------------------------------------------------------


def test_targets_all_met():
    loopline = server("loopline", [step(4, 900, 10), step(16, 1500, 40)], cold_start_s=1.2)
    kserve = server("kserve", [step(4, 1000, 30)])

    verdicts = verdicts_by_target([loopline, kserve])

    assert all(met for _, met in verdicts.values()), verdicts
    assert len(verdicts) == 6
    assert verdicts[">= 1x kserve req/s at p99 <= 50 ms (stretch 1.5x)"][0] == (
        "1.50x (1,500 vs 1,000 req/s; stretch met)"
    )


def test_targets_report_each_miss_with_its_number():
    loopline = server(
        "loopline",
        [step(4, 1000, 20, error_share=0.0005), step(16, 2500, 40)],
        cold_start_s=3.5,
        rss_mb=400,
        workers=2,
        paced_p99_ms=94.0,
        client_p99_ms=120.0,
    )
    kserve = server("kserve", [step(4, 2600, 30)])

    verdicts = verdicts_by_target([loopline, kserve])

    assert verdicts["paced 1,000 req/s: p99 <= 50 ms (wrk, from the send)"] == (
        "p99 94.0 ms at 999 req/s",
        False,
    )
    client = verdicts["paced 1,000 req/s: p99 <= 50 ms (second client, from the planned send)"]
    assert client == ("p99 120.0 ms at 999 req/s", False)
    assert verdicts[">= 1x kserve req/s at p99 <= 50 ms (stretch 1.5x)"] == (
        "0.96x (2,500 vs 2,600 req/s; stretch not met)",
        False,
    )
    shedding = verdicts["no error response below 80% of peak req/s (closed loop)"]
    assert shedding == ("errors at 4 conns (1,000 req/s, 0.05%)", False)
    cold = verdicts["cold start <= 1.5 s (process start to /readyz 200)"]
    assert cold == ("3.50 s (median of 3)", False)
    rss_measured, rss_met = verdicts["RSS <= 180 MB per worker (tree RSS / workers)"]
    assert rss_measured == "200 MB (400 MB, 2 worker(s), 2 processes, largest 240 MB)"
    assert rss_met is False


def test_errors_at_the_peak_only_are_overload_not_a_miss():
    loopline = server("loopline", [step(4, 1000, 20), step(32, 2000, 45, error_share=0.01)])

    verdicts = verdicts_by_target([loopline])

    measured, met = verdicts["no error response below 80% of peak req/s (closed loop)"]
    assert met is True
    assert measured == "0 errors in the 1 step(s) at or below 80% of peak (2,000 req/s)"


def test_a_paced_run_that_fell_behind_misses_even_with_a_low_p99():
    loopline = server("loopline", [step(16, 900, 40)])
    slow = loopline.paced[1].model_copy(update={"achieved_rps": 900.0, "p99_ms": 10.0})
    loopline = loopline.model_copy(update={"paced": [loopline.paced[0], slow]})

    verdicts = verdicts_by_target([loopline])

    assert verdicts["paced 1,000 req/s: p99 <= 50 ms (wrk, from the send)"] == (
        "p99 10.0 ms at 900 req/s",
        False,
    )


def test_a_peer_that_never_meets_the_slo_loses_the_ratio_target():
    loopline = server("loopline", [step(16, 1200, 40)])
    kserve = server("kserve", [step(8, 300, 400)])

    verdicts = verdicts_by_target([loopline, kserve])

    measured, met = verdicts[">= 1x kserve req/s at p99 <= 50 ms (stretch 1.5x)"]
    assert met is True
    assert "met the SLO at no step" in measured


def test_loopline_without_a_step_under_the_slo_misses_the_ratio():
    loopline = server("loopline", [step(16, 1200, 90)])
    kserve = server("kserve", [step(8, 300, 40)])

    verdicts = verdicts_by_target([loopline, kserve])

    assert verdicts[">= 1x kserve req/s at p99 <= 50 ms (stretch 1.5x)"][1] is False
    assert verdicts_by_target([loopline])[">= 1x kserve req/s at p99 <= 50 ms (stretch 1.5x)"] == (
        "kserve not measured",
        False,
    )


def test_no_targets_without_loopline():
    assert evaluate_targets([server("mlserver", [step(8, 300, 40)])], POLICY) == []


# --- report ----------------------------------------------------------------------------------


def test_markdown_report_has_one_summary_row_per_server_in_order():
    servers = [
        server("loopline", [step(1, 500, 3), step(16, 3100, 40)]),
        server("mlserver", [step(1, 100, 60)]),
    ]
    report = BenchReport(
        config=BenchConfig(
            quick=True,
            step_s=3,
            connections=[1, 16],
            paced_rps=[200, 1000],
            paced_connections=64,
            paced_s=4,
            cold_starts=1,
            omp_threads=None,
            pool_rows=1000,
            model="test model",
            load_generator="wrk",
            cpus=2,
            load_average_before=[0.5, 0.4, 0.3],
        ),
        policy=POLICY,
        servers=servers,
        targets=evaluate_targets(servers, POLICY),
    )

    text = markdown_report(report)

    rows = [line for line in text.splitlines() if line.startswith("| Loopline |")]
    assert rows[0].startswith(
        "| Loopline | 3,100 (16) | 3,100 | 3.0 / 40.0 (kept 150 req/s only) | 3.0 / 30.0 |"
    )
    assert "| Loopline | pacer | 1,000 | 999 | 3.0 | 35.0 | 60.0 | 80.0 | 0.00% |" in text
    assert "| Mlserver | none met SLO | 100 |" in text
    assert text.index("| Loopline |") < text.index("| Mlserver |")
    assert len(rows) == 6  # the summary row, one per step, one per paced run
    assert json.loads(report.model_dump_json())["servers"][0]["best"]["connections"] == 16


# --- request bodies and answers --------------------------------------------------------------


def test_request_bodies_carry_the_row_in_each_protocol():
    raw = {"tenure_months": 7, "plan": None}
    encoded = [7.0, math.nan]

    assert json.loads(request_body("raw", raw, encoded)) == raw
    assert json.loads(request_body("v1", raw, encoded)) == {"instances": [[7.0, None]]}
    tensor = json.loads(request_body("v2", raw, encoded))["inputs"][0]
    assert tensor == {"name": "input-0", "shape": [1, 2], "datatype": "FP32", "data": [7.0, None]}


def test_response_probability_reads_each_protocol():
    assert response_probability("raw", {"probability": 0.25, "label": 0}) == 0.25
    assert response_probability("v1", {"predictions": [0.5]}) == 0.5
    v2 = {"outputs": [{"name": "predict", "data": [0.75]}]}
    assert response_probability("v2", v2) == 0.75


def test_response_probability_refuses_an_answer_of_another_shape():
    with pytest.raises(BenchError, match="no probability found"):
        response_probability("v1", {"predictions": [0.5, 0.6]})


# --- command line ----------------------------------------------------------------------------


def test_parse_servers_keeps_the_fixed_order():
    assert parse_servers("fastapi, loopline") == ["loopline", "fastapi"]


def test_parse_servers_names_an_unknown_server():
    with pytest.raises(ConfigError, match="unknown torchserve"):
        parse_servers("loopline,torchserve")


def test_parse_connections_sorts_and_refuses_non_positive():
    assert parse_connections("8,1,4,4") == [1, 4, 8]
    with pytest.raises(ConfigError, match="positive integers"):
        parse_connections("0,4")
    with pytest.raises(ConfigError, match="integers like"):
        parse_connections("1,many")


# --- /proc -----------------------------------------------------------------------------------


def _fake_process(proc: Path, pid: int, ppid: int, rss_kib: int, name: str = "python") -> None:
    base = proc / str(pid)
    base.mkdir(parents=True)
    (base / "stat").write_text(f"{pid} ({name}) S {ppid} {pid} {pid} 0 -1\n")
    (base / "status").write_text(f"Name:\t{name}\nVmRSS:\t  {rss_kib} kB\nThreads:\t3\n")
    (base / "smaps_rollup").write_text(f"Rss:  {rss_kib} kB\nPss:  {rss_kib // 2} kB\n")
    (base / "cmdline").write_bytes(f"{name}\0--flag\0".encode())


def test_parent_pid_survives_parentheses_and_spaces_in_the_command_name():
    assert parent_pid("42 (python (worker) 1) S 7 42 42 0 -1 4194560") == 7
    with pytest.raises(ValueError, match="stat"):
        parent_pid("garbage")


def test_status_kib_reads_a_field_and_is_zero_when_absent():
    text = "Name:\tpython\nVmRSS:\t  123456 kB\n"

    assert status_kib(text, "VmRSS") == 123456
    assert status_kib("Name:\tkthreadd\n", "VmRSS") == 0


def test_tree_memory_sums_the_root_and_all_descendants_only(tmp_path: Path):
    _fake_process(tmp_path, 100, 1, 100_000, "bentoml")
    _fake_process(tmp_path, 101, 100, 150_000, "worker")
    _fake_process(tmp_path, 102, 101, 10_000, "tracker")
    _fake_process(tmp_path, 200, 1, 999_999, "other")
    (tmp_path / "self").mkdir()

    memory = tree_memory(100, tmp_path)

    assert [p.pid for p in memory] == [100, 101, 102]
    assert sum(p.rss_kib for p in memory) == 260_000
    assert sum(p.pss_kib for p in memory) == 130_000
    assert memory[1].command == "worker --flag"
    assert descendants(300, tmp_path) == []
