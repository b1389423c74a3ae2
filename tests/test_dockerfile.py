"""Tests of the pipeline image's Dockerfile and .dockerignore, read as text (no engine here)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Stage:
    """One ``FROM`` stage: its base, name and instructions (continuation lines joined)."""

    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def lines(self, instruction: str) -> list[str]:
        return [text for name, text in self.instructions if name == instruction]


def _stages() -> list[Stage]:
    text = (REPO / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    stages: list[Stage] = []
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        if instruction.upper() == "FROM":
            match = re.match(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            assert match, line
            stages.append(Stage(match.group(1), match.group(2) or ""))
        elif stages:
            stages[-1].instructions.append((instruction.upper(), rest))
    return stages


def _final_user(stage: Stage, stages: list[Stage]) -> str | None:
    users = stage.lines("USER")
    if users:
        return users[-1]
    parent = next((s for s in stages if s.name == stage.base), None)
    return _final_user(parent, stages) if parent else None


def test_dockerfile_is_multi_stage_with_the_default_target_last() -> None:
    stages = _stages()

    names = [stage.name for stage in stages]
    assert len(stages) >= 3
    assert names[-1] == "pipeline"
    assert {"builder", "pipeline-image-builder"} <= set(names)


def test_builder_installs_the_locked_environment_with_uv() -> None:
    builder = next(stage for stage in _stages() if stage.name == "builder")

    syncs = [line for line in builder.lines("RUN") if "uv sync" in line]
    assert syncs, "the builder runs uv sync"
    for line in syncs:
        assert "--frozen" in line and "--no-dev" in line and "--no-editable" in line
    assert any("UV_PROJECT_ENVIRONMENT=/app/.venv" in line for line in builder.lines("ENV"))


def test_runtime_images_are_python_slim_and_run_as_a_non_root_user() -> None:
    stages = _stages()
    targets = [stage for stage in stages if stage.name in {"pipeline", "pipeline-image-builder"}]

    for stage in targets:
        user = _final_user(stage, stages)
        assert user is not None, stage.name
        assert user.split(":")[0] not in {"0", "root"}, stage.name
        assert user.startswith("10001"), stage.name
    base = next(stage for stage in stages if stage.name == "base")
    assert any("useradd" in line and "--uid 10001" in line for line in base.lines("RUN"))
    assert any("/app/.venv" in line and "--from=builder" in line for line in base.lines("COPY"))
    assert any("PATH=/app/.venv/bin:$PATH" in line for line in base.lines("ENV"))


def test_the_image_builder_adds_only_its_debian_tools_to_the_base() -> None:
    stages = _stages()
    image_builder = next(stage for stage in stages if stage.name == "pipeline-image-builder")

    runs = image_builder.lines("RUN")
    assert image_builder.base == "base"
    assert len(runs) == 1
    installed = re.search(r"apt-get install -y --no-install-recommends ([^&]+)", runs[0])
    assert installed and set(installed.group(1).split()) == {
        "mmdebstrap", "proot", "qemu-user-static", "skopeo",
    }  # fmt: skip
    assert "rm -rf /var/lib/apt/lists/*" in runs[0]
    assert image_builder.lines("USER") == ["10001:10001"]
    assert image_builder.lines("COPY") == [] and image_builder.lines("ENV") == []
    text = (REPO / "Dockerfile").read_text()
    assert not re.search(r"buildkit|subuid|uidmap|rootlesskit", text, re.I)


def test_python_base_is_3_11_slim_for_builder_and_runtime() -> None:
    text = (REPO / "Dockerfile").read_text()

    match = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert match and match.group(1).startswith("python:3.11-slim")
    bases = {stage.name: stage.base for stage in _stages()}
    assert bases["builder"] == bases["base"] == "${PYTHON_IMAGE}"


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }

    assert {".git", ".venv", ".loopline", "tests"} <= ignored
    assert not {"pyproject.toml", "uv.lock", "README.md", "steps", "pipelines"} & ignored
