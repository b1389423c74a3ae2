"""Reading workflow YAML with the line of every field, so load errors can point at it.

PyYAML's composer keeps each node's position (``node.start_mark``); this module builds the plain
Python value of a document together with a map from each field path to its 1-based line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from steps.core.errors import WorkflowError

FieldPath = tuple[str | int, ...]


def format_path(path: FieldPath) -> str:
    """Render a field path the way people write it: ``spec.templates[1].container.args``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(document)"


@dataclass
class Document:
    """One YAML document: its value, the file it came from and the line of each field path."""

    data: Any
    file: Path
    lines: dict[FieldPath, int] = field(default_factory=dict)
    line_offset: int = 0

    def line(self, path: FieldPath) -> int:
        """Return the line of ``path``, or of its closest ancestor that has one."""
        probe = path
        while probe and probe not in self.lines:
            probe = probe[:-1]
        return self.lines.get(probe, 1) + self.line_offset

    def error(self, path: FieldPath, problem: str) -> WorkflowError:
        """Return a load error naming the file, the line and the field."""
        return WorkflowError(f"{self.file}:{self.line(path)}: {format_path(path)}: {problem}")


def load_documents(path: Path) -> list[Document]:
    """Parse every YAML document of ``path`` with the line of each field.

    Raises:
        WorkflowError: when the file cannot be read or is not valid YAML.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise WorkflowError(f"cannot read workflow file {path}: {err.strerror}") from err
    return parse_documents(text, path)


def parse_documents(text: str, file: Path, line_offset: int = 0) -> list[Document]:
    """Parse YAML text (the content of ``file``, starting at ``line_offset`` + 1).

    Raises:
        WorkflowError: when the text is not valid YAML.
    """
    try:
        nodes = [node for node in yaml.compose_all(text, Loader=yaml.SafeLoader) if node]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{file}:{mark.line + 1 + line_offset}" if mark else str(file)
        raise WorkflowError(f"{where}: not valid YAML: {err}") from err
    documents = []
    for node in nodes:
        document = Document(data=None, file=file, line_offset=line_offset)
        document.data = _build(node, (), document.lines, SafeConstructor())
        documents.append(document)
    return documents


def _build(node: Node, path: FieldPath, lines: dict[FieldPath, int], ctor: SafeConstructor) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, MappingNode):
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = ctor.construct_object(key_node) if isinstance(key_node, ScalarNode) else None
            child = (*path, str(key))
            lines[child] = key_node.start_mark.line + 1
            mapping[key] = _build(value_node, child, lines, ctor)
        return mapping
    if isinstance(node, SequenceNode):
        return [_build(item, (*path, index), lines, ctor) for index, item in enumerate(node.value)]
    return ctor.construct_object(node)


def iter_yaml_files(directory: Path) -> Iterator[Path]:
    """Yield the ``*.yaml`` and ``*.yml`` files of a directory, sorted by name."""
    yield from sorted(p for p in directory.iterdir() if p.suffix in {".yaml", ".yml"})
