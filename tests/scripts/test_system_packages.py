"""Tests of scripts/system_packages.py: what it decides and runs, with apt-get replaced.

apt-get is never called here: ``ensure`` takes the runner, PATH lookup and root flag as
arguments, and these tests pass recording stand-ins.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from scripts import system_packages
from scripts.system_packages import (
    SYSTEM_TOOLS,
    UnknownToolError,
    ensure,
    install_command,
    missing_message,
    packages_for,
    plan,
)

WRK_INSTALL = "apt-get update && apt-get install -y --no-install-recommends wrk"


class FakeMachine:
    """A PATH holding ``present`` tools; apt-get 'installs' ``installs`` and exits ``exit_code``."""

    def __init__(
        self, present: set[str], installs: set[str] | None = None, exit_code: int = 0
    ) -> None:
        self.present = set(present)
        self.installs = installs if installs is not None else set(SYSTEM_TOOLS)
        self.exit_code = exit_code
        self.commands: list[list[str]] = []

    def on_path(self, tool: str) -> bool:
        return tool in self.present

    def run(self, argv: Sequence[str]) -> int:
        self.commands.append(list(argv))
        if list(argv[:2]) == ["apt-get", "install"] and self.exit_code == 0:
            self.present |= self.installs
        return self.exit_code


@pytest.fixture
def two_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tool table with two tools sharing one package, and one with its own."""
    monkeypatch.setattr(
        system_packages,
        "SYSTEM_TOOLS",
        {"wrk": "wrk", "prometheus": "prometheus", "promtool": "prometheus"},
    )


def test_every_tool_names_a_debian_package():
    assert SYSTEM_TOOLS["wrk"] == "wrk"
    assert all(tool and package for tool, package in SYSTEM_TOOLS.items())


def test_nothing_is_done_when_every_tool_is_on_path():
    machine = FakeMachine(present={"wrk"})

    decided = plan(["wrk"], on_path=machine.on_path, is_root=True)
    code = ensure(["wrk"], on_path=machine.on_path, is_root=True, run=machine.run)

    assert decided.nothing_to_do
    assert not decided.install
    assert code == 0
    assert machine.commands == []


def test_root_installs_the_missing_package_with_apt_get(capsys: pytest.CaptureFixture[str]):
    machine = FakeMachine(present=set())

    code = ensure(["wrk"], on_path=machine.on_path, is_root=True, run=machine.run)

    assert code == 0
    assert machine.commands == [
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "wrk"],
    ]
    assert "installing wrk" in capsys.readouterr().err


def test_not_root_prints_one_line_naming_the_apt_command(capsys: pytest.CaptureFixture[str]):
    machine = FakeMachine(present=set())

    code = ensure(["wrk"], on_path=machine.on_path, is_root=False, run=machine.run)

    err = capsys.readouterr().err
    assert code == 1
    assert machine.commands == []
    assert err == f"missing wrk: as root, run `{WRK_INSTALL}`\n"


def test_the_message_is_the_one_tests_fail_with():
    assert missing_message(["wrk"]) == f"missing wrk: as root, run `{WRK_INSTALL}`"
    assert install_command(["wrk"]) == WRK_INSTALL


@pytest.mark.usefixtures("two_tools")
def test_only_missing_tools_are_installed_and_each_package_once():
    machine = FakeMachine(present={"wrk"}, installs={"prometheus", "promtool"})

    decided = plan(["wrk", "prometheus", "promtool"], on_path=machine.on_path, is_root=True)
    code = ensure(
        ["wrk", "prometheus", "promtool"], on_path=machine.on_path, is_root=True, run=machine.run
    )

    assert decided.missing == ("prometheus", "promtool")
    assert decided.packages == ("prometheus",)
    assert code == 0
    assert machine.commands[-1] == [
        "apt-get",
        "install",
        "-y",
        "--no-install-recommends",
        "prometheus",
    ]


@pytest.mark.usefixtures("two_tools")
def test_not_root_names_every_missing_tool_on_one_line(capsys: pytest.CaptureFixture[str]):
    machine = FakeMachine(present={"promtool"})

    code = ensure(
        ["wrk", "prometheus", "promtool"], on_path=machine.on_path, is_root=False, run=machine.run
    )

    assert code == 1
    assert capsys.readouterr().err == (
        "missing wrk, prometheus: as root, run `apt-get update && apt-get install -y "
        "--no-install-recommends prometheus wrk`\n"
    )


def test_a_failed_apt_get_stops_and_exits_1(capsys: pytest.CaptureFixture[str]):
    machine = FakeMachine(present=set(), exit_code=100)

    code = ensure(["wrk"], on_path=machine.on_path, is_root=True, run=machine.run)

    assert code == 1
    assert machine.commands == [["apt-get", "update"]]
    assert "`apt-get update` exited 100" in capsys.readouterr().err


def test_a_package_that_does_not_provide_the_tool_is_a_failure(
    capsys: pytest.CaptureFixture[str],
):
    machine = FakeMachine(present=set(), installs=set())

    code = ensure(["wrk"], on_path=machine.on_path, is_root=True, run=machine.run)

    assert code == 1
    assert "installed wrk but wrk is still not on PATH" in capsys.readouterr().err


def test_an_unknown_tool_is_refused_naming_the_known_ones():
    with pytest.raises(
        UnknownToolError,
        match=r"'nginx' is not in SYSTEM_TOOLS.*known: docker-registry, haproxy, mmdebstrap, "
        r"prometheus, promtool, proot, qemu-aarch64-static, skopeo, wrk$",
    ):
        packages_for(["nginx"])


def test_cli_exits_2_for_an_unknown_tool(capsys: pytest.CaptureFixture[str]):
    code = system_packages.main(["nginx"])

    assert code == 2
    assert "'nginx' is not in SYSTEM_TOOLS" in capsys.readouterr().err


def test_localhost_that_resolves_needs_nothing(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    assert (
        system_packages.ensure_localhost(resolves=lambda: True, is_root=True, hosts=str(hosts)) == 0
    )
    assert not hosts.exists()


def test_root_adds_the_loopback_lines_when_localhost_does_not_resolve(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("10.0.0.5\tbuilder\n")
    answers = iter([False, True])
    code = system_packages.ensure_localhost(
        resolves=lambda: next(answers), is_root=True, hosts=str(hosts)
    )
    assert code == 0
    assert hosts.read_text() == "10.0.0.5\tbuilder\n" + system_packages.LOOPBACK_LINES


def test_a_user_is_told_how_to_make_localhost_resolve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hosts = tmp_path / "hosts"
    code = system_packages.ensure_localhost(resolves=lambda: False, is_root=False, hosts=str(hosts))
    assert code == 1
    assert not hosts.exists()
    assert "add '127.0.0.1 localhost' to" in capsys.readouterr().err
