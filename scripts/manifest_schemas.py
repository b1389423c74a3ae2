"""JSON Schemas for every kind of manifest in the repository, found offline.

- Argo Workflows kinds (Workflow, WorkflowTemplate, CronWorkflow, ...) and Argo Events kinds
  (EventSource, Sensor, EventBus): the upstream JSON Schemas vendored in ``k8s/schemas/``
  (source, commit and licence in its README), with two quirks fixed (:func:`fix_argo_schema`).
- CustomResourceDefinitions in ``k8s/schemas/*.crd.yaml`` (Prometheus Operator, Gateway API):
  each version's ``openAPIV3Schema``, made strict (:func:`strict_openapi`).
- Core Kubernetes kinds: the strict schemas the ``kubernetes-validate`` package ships for
  Kubernetes :data:`K8S_VERSION`.

Every schema is strict about unknown keys, so a misspelt field fails validation the way
``kubectl apply --validate=strict`` would.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft4Validator, Draft202012Validator
from jsonschema.protocols import Validator
from referencing import Registry, Resource

K8S_VERSION = "1.31"
"""The Kubernetes version whose core schemas are used (one kubernetes-validate ships)."""

SCHEMAS_DIR_ENV = "LOOPLINE_SCHEMAS_DIR"
VENDORED_SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "k8s" / "schemas"
"""The upstream schemas, copied into the repository (data, not manifests to validate)."""
ARGO_WORKFLOWS_SCHEMA = "argo-workflows.schema.json"
ARGO_EVENTS_SCHEMA = "argo-events.schema.json"
ARGO_API_VERSION = "argoproj.io/v1alpha1"
ARGO_WORKFLOW_PREFIX = "io.argoproj.workflow.v1alpha1."
ARGO_EVENTS_PREFIX = "io.argoproj.events.v1alpha1."
ARTIFACT_REPOSITORY_DEFINITION = ARGO_WORKFLOW_PREFIX + "ArtifactRepository"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"


class UnknownKindError(LookupError):
    """No schema is known for a manifest's apiVersion and kind."""


def default_schemas_dir() -> Path:
    """Return the schemas folder: ``$LOOPLINE_SCHEMAS_DIR``, else :data:`VENDORED_SCHEMAS_DIR`.

    This is a development and CI tool, not a pipeline step, so it reads its one setting from the
    environment itself rather than through ``steps/settings.py``.
    """
    configured = os.environ.get(SCHEMAS_DIR_ENV)
    if configured:
        return Path(configured)
    return VENDORED_SCHEMAS_DIR


def fix_argo_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of an Argo JSON Schema with its two known quirks fixed.

    1. ``IntOrString`` is declared string-only upstream; it accepts integers too here.
    2. No definition forbids unknown keys upstream; every definition with ``properties`` and no
       ``additionalProperties`` gets ``additionalProperties: false`` so typos are caught.
    """
    fixed = copy.deepcopy(dict(schema))
    definitions: dict[str, dict[str, Any]] = fixed["definitions"]
    if INT_OR_STRING in definitions:
        definitions[INT_OR_STRING] = {"type": ["integer", "string"]}
    for definition in definitions.values():
        if "properties" in definition and "additionalProperties" not in definition:
            definition["additionalProperties"] = False
    return fixed


def strict_openapi(node: Any) -> Any:
    """Return a copy of an OpenAPI v3 (CRD) schema as strict JSON Schema.

    ``nullable: true`` becomes a ``"null"`` type, and every object with ``properties`` forbids
    other keys unless it says ``x-kubernetes-preserve-unknown-fields`` (the API server prunes
    unknown fields silently; failing here is how a typo gets noticed).
    """
    if isinstance(node, list):
        return [strict_openapi(item) for item in node]
    if not isinstance(node, dict):
        return node
    strict = {key: strict_openapi(value) for key, value in node.items()}
    if strict.pop("nullable", False) and isinstance(strict.get("type"), str):
        strict["type"] = [strict["type"], "null"]
    if (
        "properties" in strict
        and "additionalProperties" not in strict
        and not strict.get("x-kubernetes-preserve-unknown-fields")
    ):
        strict["additionalProperties"] = False
    return strict


def load_json(path: Path) -> dict[str, Any]:
    """Return the JSON object in ``path``.

    Raises:
        FileNotFoundError: when the file is missing (the message names it).
    """
    with path.open(encoding="utf-8") as handle:
        loaded: dict[str, Any] = json.load(handle)
    return loaded


def _definition_validator(schema: Mapping[str, Any], definition: str) -> Validator:
    root = {key: value for key, value in schema.items() if key not in ("oneOf", "type", "$id")}
    root["$ref"] = f"#/definitions/{definition}"
    return Draft202012Validator(root)


def _core_schema_name(kind: str, api_version: str) -> str:
    # kubernetes-validate's layout: rbac.authorization.k8s.io/v1 Role -> role-rbac-v1.json
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    return f"{kind.lower()}-{group_version}.json"


@dataclass
class SchemaCatalog:
    """Finds and caches the validator for each (apiVersion, kind).

    Attributes:
        schemas_dir: folder holding the Argo JSON Schemas and the ``*.crd.yaml`` files.
    """

    schemas_dir: Path = field(default_factory=default_schemas_dir)
    _validators: dict[tuple[str, str], Validator] = field(default_factory=dict, repr=False)
    _argo: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    _crds: dict[tuple[str, str], dict[str, Any]] | None = field(default=None, repr=False)

    def validator(self, api_version: str, kind: str) -> Validator:
        """Return the validator of manifests of ``kind`` in ``api_version``.

        Raises:
            UnknownKindError: when no schema covers that apiVersion and kind.
            FileNotFoundError: when a schema file the kind needs is missing.
        """
        key = (api_version, kind)
        if key not in self._validators:
            self._validators[key] = self._build(api_version, kind)
        return self._validators[key]

    def argo_definition_validator(self, definition: str) -> Validator:
        """Return a validator of one (quirk-fixed) Argo Workflows definition by its full name."""
        key = ("#definition", definition)
        if key not in self._validators:
            schema = self._argo_schema(ARGO_WORKFLOWS_SCHEMA)
            self._validators[key] = _definition_validator(schema, definition)
        return self._validators[key]

    def _build(self, api_version: str, kind: str) -> Validator:
        if api_version == ARGO_API_VERSION:
            for file_name, prefix in (
                (ARGO_WORKFLOWS_SCHEMA, ARGO_WORKFLOW_PREFIX),
                (ARGO_EVENTS_SCHEMA, ARGO_EVENTS_PREFIX),
            ):
                schema = self._argo_schema(file_name)
                if prefix + kind in schema["definitions"]:
                    return _definition_validator(schema, prefix + kind)
        crd_schema = self._crd_schemas().get((api_version, kind))
        if crd_schema is not None:
            return Draft4Validator(crd_schema)
        return self._core_validator(api_version, kind)

    def _argo_schema(self, file_name: str) -> dict[str, Any]:
        if file_name not in self._argo:
            self._argo[file_name] = fix_argo_schema(load_json(self.schemas_dir / file_name))
        return self._argo[file_name]

    def _crd_schemas(self) -> dict[tuple[str, str], dict[str, Any]]:
        if self._crds is None:
            self._crds = dict(_crd_versions(self.schemas_dir))
        return self._crds

    def _core_validator(self, api_version: str, kind: str) -> Validator:
        folder = resources.files("kubernetes_validate").joinpath(
            "kubernetes-json-schema", f"v{K8S_VERSION}.0-local-strict"
        )
        kind_file = folder.joinpath(_core_schema_name(kind, api_version))
        if not kind_file.is_file():
            raise UnknownKindError(
                f"no schema for apiVersion {api_version!r} kind {kind!r}: not an Argo or Argo "
                f"Events kind, not a CRD in {self.schemas_dir}, not a Kubernetes {K8S_VERSION} kind"
            )
        schema = json.loads(kind_file.read_text(encoding="utf-8"))
        definitions = json.loads(folder.joinpath("_definitions.json").read_text(encoding="utf-8"))
        registry: Registry[Any] = Registry().with_resources(
            [
                (schema["$id"], Resource.from_contents(schema)),
                (definitions["$id"], Resource.from_contents(definitions)),
            ]
        )
        return Draft202012Validator(schema, registry=registry)


def _crd_versions(schemas_dir: Path) -> Iterator[tuple[tuple[str, str], dict[str, Any]]]:
    for path in sorted(schemas_dir.glob("*.crd.yaml")):
        for crd in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not isinstance(crd, dict) or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = version.get("schema", {}).get("openAPIV3Schema")
                if schema is not None:
                    yield (f"{group}/{version['name']}", kind), strict_openapi(schema)
