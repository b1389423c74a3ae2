"""Validate the repository's manifests offline: ``python -m scripts.validate_manifests [PATH...]``.

With no paths it checks ``argo/`` and ``k8s/`` (except ``k8s/schemas/``, the vendored schemas
themselves):

- every YAML document against the schema of its kind (see :mod:`scripts.manifest_schemas`);
  files a kustomization uses as patches are partial, so missing required fields are allowed
  there, unknown or mistyped ones are not;
- the S3/GCS/... settings inside an Argo artifact-repository ConfigMap against Argo's
  ``ArtifactRepository`` schema;
- every path a ``kustomization.yaml`` lists exists, and every manifest file under a folder
  holding kustomizations is listed by one;
- every kustomization built (:mod:`scripts.kustomize_build`, in place of ``kustomize build``:
  no binary here): each output document against its schema, and each pod template against the
  Pod Security "restricted" profile (:mod:`scripts.pod_security`).

Each problem names the file, the document (1-based), the JSON path and the message; the exit
code is 1 when there is any, 2 when the schemas folder is missing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from scripts.kustomize_build import KustomizeError, build
from scripts.manifest_schemas import (
    ARTIFACT_REPOSITORY_DEFINITION,
    SCHEMAS_DIR_ENV,
    VENDORED_SCHEMAS_DIR,
    SchemaCatalog,
    UnknownKindError,
    default_schemas_dir,
)
from scripts.pod_security import pod_spec, restricted_violations

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PATHS = (REPO_ROOT / "argo", REPO_ROOT / "k8s")
KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
ARTIFACT_REPOSITORY_ANNOTATION = "workflows.argoproj.io/default-artifact-repository"
ARTIFACT_REPOSITORY_CONFIGMAP = "artifact-repositories"
MAX_MESSAGE_CHARS = 300


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a manifest file.

    Attributes:
        file: the file.
        document: 1-based index of the YAML document in the file; 0 for the file as a whole.
        resource: ``Kind/name`` of the document, or ``""``.
        path: JSON path of the offending value (``$`` is the document).
        message: what is wrong.
    """

    file: Path
    document: int
    resource: str
    path: str
    message: str

    def __str__(self) -> str:
        where = f"document {self.document}" if self.document else "file"
        if self.resource:
            where += f" ({self.resource})"
        return f"{self.file}: {where}: {self.path}: {self.message}"


def _short(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS - 3] + "..."


def schema_errors(
    document: Mapping[str, Any], catalog: SchemaCatalog, *, partial: bool = False
) -> list[tuple[str, str]]:
    """Return ``(json_path, message)`` for every way ``document`` breaks its kind's schema.

    Args:
        document: one parsed manifest.
        catalog: where the schemas come from.
        partial: a kustomize patch: missing required fields are not errors.

    Returns:
        Errors sorted by path; empty when the document is valid.

    Raises:
        FileNotFoundError: when a schema file is missing.
    """
    api_version, kind = document.get("apiVersion"), document.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return [("$", "a manifest needs string apiVersion and kind fields")]
    try:
        validator = catalog.validator(api_version, kind)
    except UnknownKindError as err:
        return [("$", str(err))]
    errors = [
        (error.json_path, _short(error.message))
        for error in validator.iter_errors(document)
        if not (partial and error.validator == "required")
    ]
    metadata = document.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    if not partial and not (metadata.get("name") or metadata.get("generateName")):
        errors.append(("$.metadata", "a resource needs metadata.name (or generateName)"))
    errors += _artifact_repository_errors(document, catalog)
    return sorted(errors)


def _artifact_repository_errors(
    document: Mapping[str, Any], catalog: SchemaCatalog
) -> list[tuple[str, str]]:
    if document.get("kind") != "ConfigMap":
        return []
    metadata = document.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    default_key = annotations.get(ARTIFACT_REPOSITORY_ANNOTATION)
    if default_key is None and metadata.get("name") != ARTIFACT_REPOSITORY_CONFIGMAP:
        return []
    data = document.get("data") or {}
    errors: list[tuple[str, str]] = []
    if default_key is not None and default_key not in data:
        errors.append(
            (
                f"$.metadata.annotations['{ARTIFACT_REPOSITORY_ANNOTATION}']",
                f"names data key {default_key!r}, which the ConfigMap does not have",
            )
        )
    validator = catalog.argo_definition_validator(ARTIFACT_REPOSITORY_DEFINITION)
    for key, text in sorted(data.items()):
        where = f"$.data['{key}']"
        try:
            repository = yaml.safe_load(text)
        except yaml.YAMLError as err:
            errors.append((where, f"not YAML: {err}"))
            continue
        for error in validator.iter_errors(repository):
            errors.append((where + error.json_path[1:], _short(error.message)))
    return errors


def validate_file(path: Path, catalog: SchemaCatalog, *, partial: bool = False) -> list[Problem]:
    """Return the problems of every YAML document in ``path`` (empty documents are skipped).

    Raises:
        FileNotFoundError: when a schema file is missing.
    """
    try:
        documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except yaml.YAMLError as err:
        return [Problem(path, 0, "", "$", f"not valid YAML: {err}")]
    problems: list[Problem] = []
    for index, document in enumerate(documents, start=1):
        if document is None:
            continue
        if not isinstance(document, dict):
            problems.append(Problem(path, index, "", "$", "a manifest must be a mapping"))
            continue
        metadata = document.get("metadata") or {}
        name = metadata.get("name") or metadata.get("generateName") or "?"
        resource = f"{document.get('kind', '?')}/{name}"
        for json_path, message in schema_errors(document, catalog, partial=partial):
            problems.append(Problem(path, index, resource, json_path, message))
    return problems


@dataclass(frozen=True)
class KustomizeReport:
    """What the kustomization check found.

    Attributes:
        problems: missing paths and unlisted manifest files.
        patches: files used as patches (validated as partial manifests).
    """

    problems: list[Problem]
    patches: frozenset[Path]


def _is_remote(entry: str) -> bool:
    return "://" in entry or entry.startswith(("github.com/", "git@"))


def _generator_files(kustomization: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for generator in ("configMapGenerator", "secretGenerator"):
        for g_index, spec in enumerate(kustomization.get(generator) or []):
            for field_name in ("files", "envs"):
                for f_index, entry in enumerate(spec.get(field_name) or []):
                    source = str(entry).split("=", 1)[-1]
                    yield f"$.{generator}[{g_index}].{field_name}[{f_index}]", source


def _listed_paths(kustomization: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """Yield ``(role, json_path, entry)`` for every local path a kustomization names."""
    for field_name in ("resources", "components"):
        for index, entry in enumerate(kustomization.get(field_name) or []):
            yield field_name, f"$.{field_name}[{index}]", str(entry)
    for index, patch in enumerate(kustomization.get("patches") or []):
        if isinstance(patch, dict) and "path" in patch:
            yield "patch", f"$.patches[{index}].path", str(patch["path"])
    for index, entry in enumerate(kustomization.get("patchesStrategicMerge") or []):
        yield "patch", f"$.patchesStrategicMerge[{index}]", str(entry)
    for json_path, entry in _generator_files(kustomization):
        yield "generator", json_path, entry


def _kustomization_in(folder: Path) -> Path | None:
    for name in KUSTOMIZATION_NAMES:
        if (folder / name).is_file():
            return folder / name
    return None


def check_kustomizations(root: Path) -> KustomizeReport:
    """Check every kustomization under ``root`` the way ``kustomize build`` would notice.

    Every listed path must exist (a folder must hold a kustomization), and every ``*.yaml``
    under ``root`` must be listed by some kustomization as a resource, patch or generator input.

    Returns:
        The problems found and the set of patch files.
    """
    problems: list[Problem] = []
    listed: set[Path] = set()
    patches: set[Path] = set()
    kustomizations = sorted(p for name in KUSTOMIZATION_NAMES for p in root.rglob(name))
    for kustomization_path in kustomizations:
        try:
            kustomization = yaml.safe_load(kustomization_path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            problems.append(Problem(kustomization_path, 0, "", "$", f"not valid YAML: {err}"))
            continue
        for role, json_path, entry in _listed_paths(kustomization):
            if _is_remote(entry):
                continue
            target = (kustomization_path.parent / entry).resolve()
            if not target.exists():
                message = f"{entry!r} does not exist"
            elif target.is_dir() and _kustomization_in(target) is None:
                message = f"{entry!r} is a folder without a kustomization.yaml"
            else:
                (patches if role == "patch" else listed).add(target)
                continue
            problems.append(Problem(kustomization_path, 1, "Kustomization", json_path, message))
    if kustomizations:
        for manifest in _yaml_files(root):
            if manifest.resolve() not in listed | patches:
                message = "not listed in any kustomization.yaml (resources, patches or generators)"
                problems.append(Problem(manifest, 0, "", "$", message))
    return KustomizeReport(sorted(problems), frozenset(patches))


def build_problems(root: Path, catalog: SchemaCatalog) -> list[Problem]:
    """Build every kustomization under ``root`` and check what each one outputs.

    Each built document must match its kind's schema in full (an overlay's patches included),
    and each pod template must meet the "restricted" Pod Security profile. A problem names the
    kustomization file and the built resource, with document 0.

    Raises:
        FileNotFoundError: when a schema file is missing.
    """
    problems: list[Problem] = []
    kustomizations = sorted(p for name in KUSTOMIZATION_NAMES for p in root.rglob(name))
    for kustomization_path in kustomizations:
        if kustomization_path.resolve().is_relative_to(VENDORED_SCHEMAS_DIR):
            continue
        try:
            documents = build(kustomization_path.parent)
        except (KustomizeError, yaml.YAMLError) as err:
            problems.append(Problem(kustomization_path, 0, "", "$", f"cannot build: {err}"))
            continue
        for document in documents:
            name = (document.get("metadata") or {}).get("name", "?")
            resource = f"{document.get('kind', '?')}/{name}"
            for json_path, message in schema_errors(document, catalog):
                problems.append(Problem(kustomization_path, 0, resource, json_path, message))
            spec = pod_spec(document)
            for violation in restricted_violations(spec) if spec is not None else []:
                message = f"pod security (restricted): {violation}"
                problems.append(Problem(kustomization_path, 0, resource, "$.spec", message))
    return problems


def _yaml_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    found = [*root.rglob("*.yaml"), *root.rglob("*.yml")]
    return sorted(
        path
        for path in found
        if path.name not in KUSTOMIZATION_NAMES
        and not path.resolve().is_relative_to(VENDORED_SCHEMAS_DIR)
    )


def validate_paths(paths: Iterable[Path], catalog: SchemaCatalog) -> tuple[list[Problem], int]:
    """Validate every manifest file under ``paths`` and the kustomizations in their folders.

    Returns:
        The problems (sorted) and the number of manifest files checked.

    Raises:
        FileNotFoundError: when a schema file is missing.
    """
    problems: list[Problem] = []
    patches: set[Path] = set()
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            report = check_kustomizations(path)
            problems += report.problems + build_problems(path, catalog)
            patches |= report.patches
        elif not path.exists():
            problems.append(Problem(path, 0, "", "$", "no such file or folder"))
            continue
        files += _yaml_files(path)
    unique_files = sorted(set(files))
    for manifest in unique_files:
        problems += validate_file(manifest, catalog, partial=manifest.resolve() in patches)
    return sorted(problems), len(unique_files)


def main(argv: Sequence[str] | None = None) -> int:
    """Validate the given paths (default: ``argo/`` and ``k8s/``) and print every problem.

    Returns:
        0 when everything is valid, 1 when a problem was found, 2 when the schemas are missing.
    """
    parser = argparse.ArgumentParser(
        prog="python -m scripts.validate_manifests",
        description="Validate Argo and Kubernetes manifests against their schemas, offline.",
    )
    parser.add_argument("paths", nargs="*", type=Path, help="files or folders (default: argo k8s)")
    options = parser.parse_args(argv)
    catalog = SchemaCatalog(default_schemas_dir())
    if not catalog.schemas_dir.is_dir():
        print(
            f"error: schemas folder {catalog.schemas_dir} not found; "
            f"set {SCHEMAS_DIR_ENV} to the folder holding argo-workflows.schema.json",
            file=sys.stderr,
        )
        return 2
    try:
        problems, checked = validate_paths(options.paths or DEFAULT_PATHS, catalog)
    except FileNotFoundError as err:
        print(f"error: schema file missing: {err}", file=sys.stderr)
        return 2
    for problem in problems:
        print(problem)
    print(f"{checked} manifest files checked, {len(problems)} problems", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
