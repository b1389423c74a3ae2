"""Install the Debian packages Loopline's commands and tests run, or say how to.

Usage: ``python3 scripts/system_packages.py [TOOL ...]`` (default: every tool in
:data:`SYSTEM_TOOLS`). ``make demo``, ``make test`` and ``make bench-serving`` run it first.

When every tool is on PATH it does nothing. Otherwise, as root, it runs
``apt-get update && apt-get install -y --no-install-recommends PACKAGES``; as any other user it
prints one line naming that command and exits 1. Tests that need a tool fail with the same line
(``tests.fixtures.common.require_tool``).

It also makes sure the name ``localhost`` resolves: ``bentoml serve`` binds its internal ports
on ``localhost``, and a minimal root filesystem (a container image, a debootstrap root) may have
no ``/etc/hosts``. As root it adds the two standard loopback lines; otherwise it says so.

Standard library only: it runs with the machine's ``python3``, before the virtualenv exists.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

SYSTEM_TOOLS: dict[str, str] = {
    # executable on PATH -> the Debian package that installs it
    "wrk": "wrk",  # HTTP load generator: make bench-serving, tests/scripts/test_bench_serving.py
    "haproxy": "haproxy",  # the local stack's weighted router: loopline stack up
    "prometheus": "prometheus",  # the local stack's metrics: loopline stack up
    "promtool": "prometheus",  # checks the serving rules: tests/k8s/test_serving_slo.py
    # the model image (steps/image): base root, smoke test under emulation, push, registry
    "mmdebstrap": "mmdebstrap",
    "proot": "proot",
    "qemu-aarch64-static": "qemu-user-static",
    "skopeo": "skopeo",
    "docker-registry": "docker-registry",
}
"""Every program outside the virtualenv that a command or test runs. Add new ones here."""

APT_GET = "apt-get"
HOSTS_FILE = "/etc/hosts"
LOOPBACK_LINES = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


class UnknownToolError(LookupError):
    """A tool was asked for that :data:`SYSTEM_TOOLS` does not list."""


def packages_for(tools: Iterable[str]) -> tuple[str, ...]:
    """Return the Debian packages (sorted, each once) that install ``tools``.

    Raises:
        UnknownToolError: naming the tool and the ones this script knows.
    """
    packages: set[str] = set()
    for tool in tools:
        if tool not in SYSTEM_TOOLS:
            known = ", ".join(sorted(SYSTEM_TOOLS))
            raise UnknownToolError(
                f"{tool!r} is not in SYSTEM_TOOLS (scripts/system_packages.py); known: {known}"
            )
        packages.add(SYSTEM_TOOLS[tool])
    return tuple(sorted(packages))


def apt_commands(packages: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    """Return the argv of each apt-get command that installs ``packages``, in order."""
    return (
        (APT_GET, "update"),
        (APT_GET, "install", "-y", "--no-install-recommends", *packages),
    )


def install_command(packages: Sequence[str]) -> str:
    """Return the apt-get command line that installs ``packages``, as a user would type it."""
    return " && ".join(" ".join(argv) for argv in apt_commands(packages))


def missing_message(tools: Sequence[str]) -> str:
    """Return the one line that names the missing ``tools`` and the command installing them.

    Raises:
        UnknownToolError: when a tool is not in :data:`SYSTEM_TOOLS`.
    """
    return f"missing {', '.join(tools)}: as root, run `{install_command(packages_for(tools))}`"


@dataclass(frozen=True)
class Plan:
    """What to do about the tools: nothing, install them (root), or ask the user to.

    Attributes:
        missing: the tools not on PATH, in the order asked.
        packages: the Debian packages that install them.
        install: True when this process may run apt-get itself (it is root).
    """

    missing: tuple[str, ...]
    packages: tuple[str, ...]
    install: bool

    @property
    def nothing_to_do(self) -> bool:
        """True when every tool is already on PATH."""
        return not self.missing


def plan(tools: Sequence[str], *, on_path: Callable[[str], bool], is_root: bool) -> Plan:
    """Decide what to do about ``tools``, given which are on PATH and whether we are root.

    Raises:
        UnknownToolError: when a tool is not in :data:`SYSTEM_TOOLS`.
    """
    packages_for(tools)  # an unknown tool is refused even when it happens to be on PATH
    missing = tuple(dict.fromkeys(tool for tool in tools if not on_path(tool)))
    return Plan(missing=missing, packages=packages_for(missing), install=bool(missing) and is_root)


Runner = Callable[[Sequence[str]], int]
"""Runs one command and returns its exit code."""


def ensure(
    tools: Sequence[str],
    *,
    on_path: Callable[[str], bool],
    is_root: bool,
    run: Runner,
) -> int:
    """Make sure ``tools`` are on PATH: install them when root, else print how.

    Returns:
        0 when every tool is (now) on PATH; 1 when one is missing and this process may not
        install it, or apt-get failed, or the package did not put the tool on PATH.

    Raises:
        UnknownToolError: when a tool is not in :data:`SYSTEM_TOOLS`.
    """
    decided = plan(tools, on_path=on_path, is_root=is_root)
    if decided.nothing_to_do:
        return 0
    if not decided.install:
        print(missing_message(decided.missing), file=sys.stderr)
        return 1
    print(f"system_packages: installing {' '.join(decided.packages)}", file=sys.stderr)
    for argv in apt_commands(decided.packages):
        code = run(argv)
        if code != 0:
            print(f"system_packages: `{' '.join(argv)}` exited {code}", file=sys.stderr)
            return 1
    still_missing = [tool for tool in decided.missing if not on_path(tool)]
    if still_missing:
        print(
            f"system_packages: installed {' '.join(decided.packages)} but "
            f"{', '.join(still_missing)} is still not on PATH ({os.environ.get('PATH', '')})",
            file=sys.stderr,
        )
        return 1
    return 0


def localhost_resolves() -> bool:
    """True when ``localhost`` resolves to an address (what BentoML binds its ports on)."""
    try:
        return bool(socket.getaddrinfo("localhost", None))
    except OSError:
        return False


def ensure_localhost(*, resolves: Callable[[], bool], is_root: bool, hosts: str) -> int:
    """Make ``localhost`` resolve: add the loopback lines to ``hosts`` when root, else say how.

    Returns:
        0 when it resolves (now), 1 otherwise.
    """
    if resolves():
        return 0
    if not is_root:
        print(
            f"localhost does not resolve (bentoml serve binds on it): as root, add "
            f"'127.0.0.1 localhost' to {hosts}",
            file=sys.stderr,
        )
        return 1
    with open(hosts, "a", encoding="utf-8") as handle:  # noqa: PTH123 - a plain system file
        handle.write(LOOPBACK_LINES)
    print(f"system_packages: added the loopback lines for localhost to {hosts}", file=sys.stderr)
    return 0 if resolves() else 1


def _run_apt(argv: Sequence[str]) -> int:
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(list(argv), env=environment, check=False).returncode


def main(argv: Sequence[str] | None = None) -> int:
    """Install (as root) or name the command for every missing tool; see the module docstring.

    Returns:
        0 when every tool is on PATH, 1 when one is still missing, 2 for an unknown tool.
    """
    parser = argparse.ArgumentParser(
        prog="python3 scripts/system_packages.py",
        description="Install the Debian packages Loopline's commands and tests need.",
    )
    parser.add_argument(
        "tools", nargs="*", help=f"tools to check (default: all of {', '.join(SYSTEM_TOOLS)})"
    )
    options = parser.parse_args(argv)
    is_root = os.geteuid() == 0
    if ensure_localhost(resolves=localhost_resolves, is_root=is_root, hosts=HOSTS_FILE):
        return 1
    try:
        return ensure(
            options.tools or list(SYSTEM_TOOLS),
            on_path=lambda tool: shutil.which(tool) is not None,
            is_root=is_root,
            run=_run_apt,
        )
    except UnknownToolError as err:
        print(f"system_packages: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
