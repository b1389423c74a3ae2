"""A node's own directory, and the rule that maps a pod's absolute paths into it.

Path rule: the directories a template declares for its files are re-rooted under the node's
``work/`` directory. The declared prefixes are the parent directory of every
``outputs.parameters[].valueFrom.path`` and of every input/output artifact ``path`` (the path
itself when its parent is ``/``). Every occurrence of such a prefix, as whole path components, in
``command``, ``args``, ``env`` values and a script's ``source`` becomes ``<node>/work/<prefix>``:
``/tmp/outputs/run_id`` -> ``<node>/work/tmp/outputs/run_id``, and ``--out=/tmp/outputs`` or
``echo 1 > /tmp/outputs/x`` are rewritten too. Other absolute paths are left alone; relative
paths are relative to ``work/``, the process's working directory.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

PYTHON_NAMES = frozenset({"python", "python3"})


def declared_prefixes(output_paths: Iterable[str], artifact_paths: Iterable[str]) -> list[str]:
    """Return the absolute path prefixes a node's files live under, longest first."""
    prefixes: set[str] = set()
    for path in [*output_paths, *artifact_paths]:
        pure = PurePosixPath(path)
        if not pure.is_absolute():
            continue
        parent = pure.parent
        prefixes.add(str(pure if str(parent) == "/" else parent))
    return sorted(prefixes, key=len, reverse=True)


@dataclass(frozen=True)
class Workspace:
    """A node's directory: ``log.txt``, ``script`` and the ``work/`` directory it runs in."""

    node_dir: Path
    prefixes: tuple[str, ...]

    @property
    def work(self) -> Path:
        """The process's working directory; re-rooted paths live below it."""
        return self.node_dir / "work"

    @property
    def log(self) -> Path:
        """The combined standard output and error of every attempt."""
        return self.node_dir / "log.txt"

    def reset(self) -> None:
        """Start an attempt with an empty ``work/`` (a retried pod starts fresh too)."""
        if self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)

    def remap(self, text: str) -> str:
        """Rewrite every declared prefix in ``text`` to its place under ``work/``."""
        if not self.prefixes:
            return text
        alternatives = "|".join(re.escape(prefix) for prefix in self.prefixes)
        pattern = re.compile(rf"(?<![\w./-])(?:{alternatives})(?![\w.-])")
        return pattern.sub(lambda match: str(self.work) + match.group(0), text)

    def local_path(self, path: str) -> Path:
        """Where a template's (absolute or relative) file path lives for this node."""
        remapped = self.remap(path)
        return Path(remapped) if Path(remapped).is_absolute() else self.work / remapped

    def argv(self, command: Iterable[str], args: Iterable[str]) -> list[str]:
        """The command line: re-rooted paths, and this interpreter for ``python``/``python3``."""
        argv = [self.remap(part) for part in [*command, *args]]
        if argv and argv[0] in PYTHON_NAMES:
            argv[0] = sys.executable
        return argv

    def environment(self, template_env: Iterable[tuple[str, str]]) -> dict[str, str]:
        """This process's environment, the venv's ``bin`` first on PATH, plus the template's env."""
        env = dict(os.environ)
        bin_dir = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
        env.update((name, self.remap(value)) for name, value in template_env)
        return env
