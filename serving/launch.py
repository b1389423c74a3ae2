"""One worker, one process: ``python -m serving.launch [TARGET] --host HOST --port PORT``.

``bentoml serve`` starts a supervisor (BentoML's circus arbiter) which then starts the workers.
With one worker, which is how Loopline serves (one per pod on a cluster, one per track in the
local stack, ``make serve``), the supervisor only costs: measured here (2 cores, November 2026)
it held ~116 MB RSS and added ~1.5 s to every start (it imports BentoML and the service before
the worker does it again). This module prepares what the arbiter would give the worker, then
runs BentoML's own worker command (``_bentoml_impl.worker.service``, what the arbiter runs,
from the pinned BentoML) in this process:

- the listening socket, bound here and passed as ``--fd``;
- ``PROMETHEUS_MULTIPROC_DIR``: a directory of this address's own under the temporary
  directory, emptied at start (``/metrics`` reads the worker's files from it);
- ``BENTOML_RUNNER_MAP`` naming the service's own address, as the arbiter sets it;
- ``LOOPLINE_SERVING__STANDALONE=true``: the worker is the server, so it does not stop when
  its parent goes (see ``serving.service._stop_when_orphaned``).

Signals reach the server directly: SIGTERM or Ctrl-C stops it the graceful way (the inference
log is flushed), then it exits 0 (130 after Ctrl-C); uvicorn re-raises the signal after its
shutdown, and the handlers installed here turn that into a quiet exit. Several workers are
``bentoml serve``'s job: ``LOOPLINE_SERVING__WORKERS`` above 1 is refused here.

``TARGET`` is what ``bentoml serve`` takes: ``serving.service:Loopline`` (the default, from
source), a bento tag or a bento directory.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import click

from serving.settings import ENV_PREFIX

SERVICE = "serving.service:Loopline"
WORKER_MODULE = "_bentoml_impl.worker.service"
BACKLOG = 2048


def prometheus_dir(host: str, port: int) -> Path:
    """An empty Prometheus multiprocess directory for the server on ``host:port``.

    One per address: two servers never share one (an address serves one server at a time), and
    a restart on the same address starts from no series, as a restarted pod does.
    """
    path = Path(tempfile.gettempdir()) / f"loopline-prometheus-{host}-{port}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700, parents=True)
    return path


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host:port``.

    Raises:
        click.ClickException: naming the address when it cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise click.ClickException(f"cannot listen on {host}:{port}: {err.strerror}") from err
    sock.listen(BACKLOG)
    return sock


def worker_args(target: str, fd: int) -> list[str]:
    """The arguments of BentoML's worker command serving ``target`` on the socket ``fd``."""
    return [
        target,
        "--fd",
        str(fd),
        "--backlog",
        str(BACKLOG),
        "--worker-id",
        "1",
        "--args",
        "{}",
    ]


def worker_environment(environ: dict[str, str], host: str, port: int) -> dict[str, str]:
    """``environ`` plus what the worker needs from its launcher (see the module).

    Raises:
        click.ClickException: when ``LOOPLINE_SERVING__WORKERS`` asks for more than one worker.
    """
    workers = environ.get(f"{ENV_PREFIX}WORKERS", "1").strip()
    if workers != "1":
        raise click.ClickException(
            f"{ENV_PREFIX}WORKERS={workers}: serving.launch runs one worker; "
            "use `bentoml serve` for several"
        )
    shown = "localhost" if host in ("0.0.0.0", "::") else host  # noqa: S104 - a comparison
    return {
        **environ,
        "PROMETHEUS_MULTIPROC_DIR": str(prometheus_dir(host, port)),
        "BENTOML_RUNNER_MAP": json.dumps({"loopline": f"http://{shown}:{port}"}),
        f"{ENV_PREFIX}STANDALONE": "true",
    }


@click.command()
@click.argument("target", default=SERVICE)
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", type=click.IntRange(1, 65535), default=3000, show_default=True, help="port")
def main(target: str, host: str, port: int) -> None:
    """Serve TARGET (a service, bento tag or bento directory) with one worker process."""
    os.environ.update(worker_environment(dict(os.environ), host, port))
    sock = listening_socket(host, port)
    signal.signal(signal.SIGTERM, _exit_with(0))
    signal.signal(signal.SIGINT, _exit_with(EXIT_INTERRUPTED))
    from _bentoml_impl.worker.service import main as worker  # after the environment is set

    worker.main(args=worker_args(target, sock.fileno()), prog_name=WORKER_MODULE)


EXIT_INTERRUPTED = 130


def _exit_with(status: int) -> Callable[[int, FrameType | None], None]:
    """A signal handler exiting with ``status``: before the server runs, and once it stopped."""

    def handler(signum: int, frame: FrameType | None) -> None:
        sys.exit(status)

    return handler


if __name__ == "__main__":
    main()
