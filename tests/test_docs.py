"""Every ``LOOPLINE_*`` variable the documentation names is a real setting.

The README and the pages beside the code (``k8s/``, ``serving/``, ``steps/``, ``reports/``)
name environment variables; a renamed or invented one sends a reader to a variable that nothing
reads (the README once documented ``LOOPLINE_SERVING__BATCH_MAX_SIZE``). Each name is checked
against the settings models: ``LOOPLINE_SERVING__X`` against the fields of
:class:`serving.settings.ServingSettings`, ``LOOPLINE_A__B`` against field ``b`` of section ``a``
of :class:`steps.core.settings.Settings`, ``LOOPLINE_X`` against its top-level fields.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from serving.settings import ServingSettings
from steps.core.settings import Settings

REPO = Path(__file__).resolve().parent.parent
DOC_FOLDERS = ("k8s", "serving", "steps", "reports")
VENDORED = REPO / "k8s" / "schemas"  # upstream schemas and their notes, not Loopline's docs
SERVING_SECTION = "serving"

# A full name, or the shorthand `__TARGET` that a table cell writes after `LOOPLINE_DATA__URI`.
TOKEN = re.compile(r"(?<![A-Za-z0-9_])(LOOPLINE_[A-Z0-9_]+|__[A-Z0-9_]+)")

NOT_SETTINGS: dict[str, str] = {
    # The manifest validator is a development tool, not a pipeline step: it reads its one
    # variable itself (the schemas folder) rather than through the settings model.
    "LOOPLINE_SCHEMAS_DIR": "scripts/manifest_schemas.py",
}
"""Documented variables that are not settings -> the file that reads each one."""


def documents() -> list[Path]:
    """Return the README and every Markdown page under the documented folders."""
    pages = [REPO / "README.md"]
    for folder in DOC_FOLDERS:
        pages += sorted(
            path for path in (REPO / folder).rglob("*.md") if VENDORED not in path.parents
        )
    return pages


def documented_names(text: str) -> set[str]:
    """Return every ``LOOPLINE_*`` name in ``text``, shorthand ``__X`` expanded.

    A ``__X`` after ``LOOPLINE_A__B`` on the same line means ``LOOPLINE_A__X``.
    """
    names: set[str] = set()
    for line in text.splitlines():
        section: str | None = None
        for token in TOKEN.findall(line):
            if token.startswith("LOOPLINE_"):
                names.add(token)
                head, nested, _ = token.rpartition("__")
                section = head if nested else None
            elif section is not None:
                names.add(section + token)
    return names


def _sections() -> dict[str, type[BaseModel]]:
    sections = {}
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            sections[name] = annotation
    return sections


def setting_problem(name: str) -> str | None:
    """Return why the variable ``name`` sets nothing, or None when it is a setting.

    A name ending in ``__`` (``LOOPLINE_DRIFT__``, as in ``LOOPLINE_DRIFT__<NAME>``) stands for
    a whole section and only needs the section to exist.
    """
    if name in NOT_SETTINGS:
        return None
    section, nested, field = name.removeprefix("LOOPLINE_").lower().partition("__")
    if section == SERVING_SECTION and nested:
        if not field or field in ServingSettings.model_fields:
            return None
        return f"serving.settings.ServingSettings has no field {field!r}"
    sections = _sections()
    if not nested:
        if section in sections:
            return f"{section!r} is a section of Settings: name one of its fields"
        if section in Settings.model_fields:
            return None
        return f"steps.core.settings.Settings has no field {section!r}"
    if section not in sections:
        return f"steps.core.settings.Settings has no section {section!r}"
    if not field or field in sections[section].model_fields:
        return None
    return f"section {section!r} of Settings has no field {field!r}"


@pytest.mark.parametrize("doc", documents(), ids=lambda path: str(path.relative_to(REPO)))
def test_every_loopline_variable_a_document_names_is_a_setting(doc: Path) -> None:
    names = documented_names(doc.read_text(encoding="utf-8"))

    problems = {name: setting_problem(name) for name in sorted(names)}

    assert {name: why for name, why in problems.items() if why is not None} == {}


def test_the_pages_beside_the_code_are_checked_and_name_settings() -> None:
    pages = documents()

    checked = {str(path.relative_to(REPO)) for path in pages}
    names = {name for path in pages for name in documented_names(path.read_text(encoding="utf-8"))}

    assert {
        "README.md",
        "k8s/README.md",
        "serving/README.md",
        "steps/monitor/README.md",
        "steps/localrun/README.md",
        "reports/bench-serving.md",
    } <= checked
    assert not any(path.startswith("k8s/schemas/") for path in checked)
    assert {"LOOPLINE_GATE__MIN_VALUE", "LOOPLINE_SERVING__MAX_BATCH_ROWS"} <= names


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("LOOPLINE_SERVING__BATCH_MAX_SIZE", "ServingSettings has no field 'batch_max_size'"),
        ("LOOPLINE_GATE__MIN_ROC_AUC", "section 'gate' of Settings has no field 'min_roc_auc'"),
        ("LOOPLINE_TRAINING__MODEL_KIND", "Settings has no section 'training'"),
        ("LOOPLINE_MODEL", "Settings has no field 'model'"),
        ("LOOPLINE_DRIFT", "'drift' is a section of Settings"),
        ("LOOPLINE_SERVING_MODEL_TAG", "Settings has no field 'serving_model_tag'"),
    ],
)
def test_a_name_that_sets_nothing_is_reported(name: str, expected: str) -> None:
    problem = setting_problem(name)

    assert problem is not None
    assert expected in problem


@pytest.mark.parametrize(
    "name",
    [
        "LOOPLINE_STATE_DIR",
        "LOOPLINE_DRIFT__SINCE",
        "LOOPLINE_DRIFT__",
        "LOOPLINE_S3__ENDPOINT_URL",
        "LOOPLINE_SERVING__BATCH_MAX_LATENCY_MS",
        "LOOPLINE_SERVING__",
    ],
)
def test_a_setting_or_a_section_prefix_is_accepted(name: str) -> None:
    assert setting_problem(name) is None


def test_shorthand_after_a_full_name_is_read_as_the_same_section() -> None:
    line = "| `LOOPLINE_DATA__URI`, `__TARGET` | x | `LOOPLINE_SEED`, `__NOTHING` | `__init__` |"

    assert documented_names(line) == {
        "LOOPLINE_DATA__URI",
        "LOOPLINE_DATA__TARGET",
        "LOOPLINE_SEED",
    }


@pytest.mark.parametrize(("name", "reader"), sorted(NOT_SETTINGS.items()))
def test_a_documented_variable_that_is_not_a_setting_is_read_where_noted(
    name: str, reader: str
) -> None:
    assert name in (REPO / reader).read_text(encoding="utf-8")
