"""Step outputs as files, the way Argo reads ``outputs.parameters`` (``valueFrom.path``).

Each output value goes to its own small file named after the parameter; a ``result.json`` next
to them holds the whole result for machines and people.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel

from steps.core.names import STEP_OUTPUTS


def write_outputs(out_dir: Path, step: str, values: Mapping[str, object]) -> None:
    """Write each output of ``step`` to ``out_dir/<name>`` (no trailing newline).

    Strings are written as they are, everything else as JSON, so ``{{tasks.x.outputs.
    parameters.name}}`` substitutes the bare value.

    Raises:
        ValueError: when ``values`` are not exactly the step's outputs in
            :data:`steps.core.names.STEP_OUTPUTS` (a programming error: the workflow templates
            declare those names).
    """
    expected = STEP_OUTPUTS[step]
    if set(values) != set(expected):
        raise ValueError(f"step {step} must write outputs {expected}, got {tuple(values)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, value in values.items():
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        (out_dir / name).write_text(text, encoding="utf-8")


def write_result(out_dir: Path, result: BaseModel) -> Path:
    """Write ``result`` as indented JSON to ``out_dir/result.json`` and return the path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "result.json"
    path.write_text(result.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return path


def read_output(out_dir: Path, name: str) -> str:
    """Return the text of output ``name`` written by :func:`write_outputs`."""
    return (out_dir / name).read_text(encoding="utf-8")
