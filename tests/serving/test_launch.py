"""Tests for serving/launch.py: one worker served by one process, as a pod or a track runs it."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from serving.launch import prometheus_dir
from tests.fixtures.common import free_port
from tests.fixtures.serving import REPO, TinyModel, sample_rows, serving_env, start_server


def launch_argv(port: int) -> list[str]:
    return [sys.executable, "-m", "serving.launch", "--host", "127.0.0.1", "--port", str(port)]


@pytest.mark.integration
def test_one_process_serves_counts_and_flushes_its_log_on_sigterm(
    tiny_model: TinyModel, tmp_path: Path, serving_pycache: Path
) -> None:
    log_dir = tmp_path / "log"
    env = serving_env(tiny_model, log_dir, serving_pycache)
    server = start_server(env, tmp_path / "server.log", launch_argv)
    try:
        assert server.worker_pids() == []  # the launched process is the worker
        rows = sample_rows(3)
        for row in rows:
            assert server.http.post("/predict", json=row).status_code == 200
        assert server.http.post("/predict", json={"tenure_months": "x"}).status_code == 400
        metrics = server.metrics()
        assert 'endpoint="/predict",http_response_code="200"' in metrics
        assert 'endpoint="/predict",http_response_code="400"' in metrics
        assert "loopline_prediction_probability_count 3.0" in metrics
    finally:
        assert server.stop(signal.SIGTERM) == 0
    (part,) = log_dir.rglob("part-*.parquet")
    assert part.stat().st_size > 0


@pytest.mark.integration
def test_the_server_outlives_the_process_that_started_it(
    tiny_model: TinyModel, tmp_path: Path, serving_pycache: Path
) -> None:
    env = serving_env(tiny_model, tmp_path / "log", serving_pycache)
    port = free_port()
    starter = (
        "import subprocess, sys; "
        f"p = subprocess.Popen({launch_argv(port)!r}, start_new_session=True, "
        "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(p.pid)"
    )
    done = subprocess.run(
        [sys.executable, "-c", starter], env=env, cwd=REPO, capture_output=True, check=True
    )
    pid = int(done.stdout)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        time.sleep(2.5)  # over twice the orphan watch's poll: a watching worker would be gone
        assert httpx.post(f"{url}/predict", json=sample_rows(1)[0], timeout=10).status_code == 200
    finally:
        os.kill(pid, signal.SIGTERM)


@pytest.mark.integration
def test_ctrl_c_stops_it_the_graceful_way_with_status_130(
    tiny_model: TinyModel, tmp_path: Path, serving_pycache: Path
) -> None:
    log_dir = tmp_path / "log"
    server = start_server(
        serving_env(tiny_model, log_dir, serving_pycache), tmp_path / "l.log", launch_argv
    )
    assert server.http.post("/predict", json=sample_rows(1)[0]).status_code == 200
    assert server.stop(signal.SIGINT) == 130
    assert len(list(log_dir.rglob("part-*.parquet"))) == 1
    assert "Traceback" not in server.output()


def test_several_workers_are_refused_naming_the_setting(tmp_path: Path) -> None:
    env = {**os.environ, "LOOPLINE_SERVING__WORKERS": "2"}
    done = subprocess.run(
        launch_argv(free_port()), env=env, cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    assert "LOOPLINE_SERVING__WORKERS=2: serving.launch runs one worker" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_address_in_use_is_a_one_line_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPLINE_")}
        done = subprocess.run(
            launch_argv(port), env=env, cwd=REPO, capture_output=True, text=True, check=False
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_each_address_gets_an_emptied_metrics_directory() -> None:
    first = prometheus_dir("127.0.0.1", 59999)
    (first / "counter_1.db").write_bytes(b"stale series")
    again = prometheus_dir("127.0.0.1", 59999)
    assert again == first and list(again.iterdir()) == []
    assert prometheus_dir("127.0.0.1", 59998) != first


def _server_socket_inode(client: socket.socket) -> int:
    """The inode of the server's end of ``client``'s TCP connection (from /proc/net/tcp)."""
    client_port = client.getsockname()[1]
    server_port = client.getpeername()[1]
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        remote_port = int(fields[2].split(":")[1], 16)
        if (local_port, remote_port) == (server_port, client_port):
            return int(fields[9])
    raise AssertionError("the server's end of the connection is not in /proc/net/tcp")


def _borrow_fd(pid: int, inode: int) -> socket.socket:
    """A duplicate, in this process, of process ``pid``'s socket ``inode`` (pidfd_getfd)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for fd_path in Path(f"/proc/{pid}/fd").iterdir():
        if str(fd_path.readlink()) == f"socket:[{inode}]":
            pidfd = os.pidfd_open(pid)
            try:
                fd = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(fd_path.name), 0)
            finally:
                os.close(pidfd)
            assert fd >= 0, os.strerror(ctypes.get_errno())
            return socket.socket(fileno=fd)
    raise AssertionError(f"process {pid} holds no socket:[{inode}]")


SYS_PIDFD_GETFD = 438  # x86-64 and arm64 alike (Linux 5.6)


@pytest.mark.integration
def test_answers_are_never_held_by_nagle_the_server_sets_tcp_nodelay(
    tiny_model: TinyModel, tmp_path: Path, serving_pycache: Path
) -> None:
    # uvicorn writes a response in two write() calls (head, then body). With Nagle on, the body
    # would wait for the client's delayed ACK (40 ms on Linux) whenever the head is unacked.
    env = serving_env(tiny_model, tmp_path / "log", serving_pycache)
    server = start_server(env, tmp_path / "server.log", launch_argv)
    try:
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
            assert client.recv(1024).startswith(b"HTTP/1.1 200")
            with _borrow_fd(server.process.pid, _server_socket_inode(client)) as served:
                assert served.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        server.stop()
