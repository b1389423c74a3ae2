"""The path rule: declared output/artifact directories are re-rooted in the node's directory."""

from __future__ import annotations

import sys
from pathlib import Path

from steps.localrun.workspace import Workspace, declared_prefixes


def test_prefixes_are_parent_directories_longest_first_and_only_absolute() -> None:
    prefixes = declared_prefixes(
        ["/tmp/outputs/run_id", "relative/out.txt", "/metrics.json"], ["/data/in/model"]
    )
    assert prefixes == ["/metrics.json", "/tmp/outputs", "/data/in"]


def test_remap_rewrites_whole_path_components_anywhere_in_a_string(tmp_path: Path) -> None:
    space = Workspace(tmp_path / "node", ("/tmp/outputs",))
    work = str(space.work)
    assert space.remap("/tmp/outputs/run_id") == f"{work}/tmp/outputs/run_id"
    assert space.remap("--out=/tmp/outputs") == f"--out={work}/tmp/outputs"
    assert space.remap("echo 1 > /tmp/outputs/x && cat /tmp/outputs/x") == (
        f"echo 1 > {work}/tmp/outputs/x && cat {work}/tmp/outputs/x"
    )
    assert space.remap("/tmp/outputs2/x") == "/tmp/outputs2/x"
    assert space.remap("/var/tmp/outputs/x") == "/var/tmp/outputs/x"
    assert space.remap("/etc/hosts") == "/etc/hosts"


def test_argv_uses_this_interpreter_for_python_and_python3(tmp_path: Path) -> None:
    space = Workspace(tmp_path, ())
    assert space.argv(["python", "-m", "steps.train"], ["--x"]) == [
        sys.executable,
        "-m",
        "steps.train",
        "--x",
    ]
    assert space.argv(["python3"], [])[0] == sys.executable
    assert space.argv(["python3.11"], [])[0] == "python3.11"


def test_environment_puts_the_venv_first_and_applies_template_values(tmp_path: Path) -> None:
    space = Workspace(tmp_path, ("/tmp/outputs",))
    env = space.environment([("OUT", "/tmp/outputs/a"), ("MODE", "fast")])
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
    assert env["OUT"] == f"{space.work}/tmp/outputs/a"
    assert env["MODE"] == "fast"
