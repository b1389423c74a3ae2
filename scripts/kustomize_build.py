"""A small ``kustomize build`` for the features Loopline's kustomizations use, offline.

No kustomize binary runs here (Debian's ``kubectl`` 1.20 embeds a kustomize too old for
``patches:``), yet an overlay's result is what reaches the cluster: the validator checks the
built documents against their schemas and the pod-security rules. Supported:

- ``resources``: files and folders holding a kustomization (recursively);
- ``configMapGenerator`` with ``files`` (``key=path`` or ``path``), ``literals`` and
  ``options.labels``/``options.annotations``; ``options.disableNameSuffixHash: true`` is
  required, because name hashes are not computed here;
- ``namespace`` (set on every namespaced resource; RoleBinding subjects are left as written,
  as kustomize leaves a subject naming a service account it does not define);
- ``patches`` (strategic merge, from ``path`` or inline ``patch``), by the patch's kind and name
  or by a ``target`` with ``kind``, ``name`` and an equality ``labelSelector``;
- ``replicas``;
- ``labels`` with ``pairs`` (and ``includeTemplates``; ``includeSelectors`` is refused, since
  changing a Deployment's selector makes the API server refuse the next apply).

Strategic merge here: mappings merge key by key, ``null`` deletes a key, lists of mappings that
all have a ``name`` merge by name (containers, env, volumes), any other list is replaced. Any
other kustomization field raises :class:`KustomizeError` rather than being ignored.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = frozenset(
    {
        "apiVersion",
        "kind",
        "resources",
        "namespace",
        "configMapGenerator",
        "patches",
        "replicas",
        "labels",
    }
)
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PersistentVolume",
        "StorageClass",
        "PriorityClass",
    }
)
SCALABLE_KINDS = frozenset({"Deployment", "StatefulSet", "ReplicaSet"})

Document = dict[str, Any]


class KustomizeError(ValueError):
    """A kustomization this builder cannot build; the message names the file and the field."""


def find_kustomization(folder: Path) -> Path | None:
    """Return the kustomization file of ``folder``, or None when it has none."""
    for name in KUSTOMIZATION_NAMES:
        if (folder / name).is_file():
            return folder / name
    return None


def build(folder: Path) -> list[Document]:
    """Return the documents ``kustomize build folder`` would output (in resource order).

    Raises:
        KustomizeError: for a missing kustomization or path, an unsupported field, a remote
            resource, or a patch that matches no resource.
    """
    path = find_kustomization(folder)
    if path is None:
        raise KustomizeError(f"{folder}: no kustomization.yaml")
    kustomization = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unsupported = sorted(set(kustomization) - SUPPORTED_FIELDS)
    if unsupported:
        raise KustomizeError(f"{path}: fields not supported by this builder: {unsupported}")
    documents: list[Document] = []
    for entry in kustomization.get("resources") or []:
        documents += _resource(path, str(entry))
    for spec in kustomization.get("configMapGenerator") or []:
        documents.append(_config_map(path, spec))
    namespace = kustomization.get("namespace")
    if namespace:
        for document in documents:
            if document.get("kind") not in CLUSTER_SCOPED_KINDS:
                document.setdefault("metadata", {})["namespace"] = namespace
    for index, patch in enumerate(kustomization.get("patches") or []):
        _apply_patch(path, index, patch, documents)
    for index, labels in enumerate(kustomization.get("labels") or []):
        _add_labels(path, index, labels, documents)
    for replica in kustomization.get("replicas") or []:
        targets = _matching(documents, {"name": replica["name"]}, SCALABLE_KINDS)
        if not targets:
            raise KustomizeError(f"{path}: replicas: no Deployment named {replica['name']!r}")
        for document in targets:
            document.setdefault("spec", {})["replicas"] = replica["count"]
    return documents


def _resource(kustomization: Path, entry: str) -> list[Document]:
    if "://" in entry or entry.startswith(("github.com/", "git@")):
        raise KustomizeError(f"{kustomization}: remote resource {entry!r} cannot be built offline")
    target = (kustomization.parent / entry).resolve()
    if target.is_dir():
        return build(target)
    if not target.is_file():
        raise KustomizeError(f"{kustomization}: resource {entry!r} does not exist")
    return [doc for doc in yaml.safe_load_all(target.read_text(encoding="utf-8")) if doc]


def _config_map(kustomization: Path, spec: Mapping[str, Any]) -> Document:
    options = spec.get("options") or {}
    if not options.get("disableNameSuffixHash"):
        raise KustomizeError(
            f"{kustomization}: configMapGenerator {spec.get('name')!r}: set "
            "options.disableNameSuffixHash: true (name hashes are not computed here)"
        )
    data: dict[str, str] = {}
    for entry in spec.get("files") or []:
        key, _, source = str(entry).rpartition("=")
        file = kustomization.parent / source
        if not file.is_file():
            raise KustomizeError(f"{kustomization}: configMapGenerator file {source!r} missing")
        data[key or file.name] = file.read_text(encoding="utf-8")
    for literal in spec.get("literals") or []:
        key, _, value = str(literal).partition("=")
        data[key] = value
    metadata: dict[str, Any] = {"name": spec["name"]}
    for field_name in ("labels", "annotations"):
        if options.get(field_name):
            metadata[field_name] = dict(options[field_name])
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def _apply_patch(
    kustomization: Path, index: int, patch: Mapping[str, Any], documents: list[Document]
) -> None:
    where = f"{kustomization}: patches[{index}]"
    if "path" in patch:
        text = (kustomization.parent / str(patch["path"])).read_text(encoding="utf-8")
    elif "patch" in patch:
        text = str(patch["patch"])
    else:
        raise KustomizeError(f"{where}: needs path or patch")
    bodies = [doc for doc in yaml.safe_load_all(text) if doc]
    if len(bodies) != 1 or not isinstance(bodies[0], dict):
        raise KustomizeError(f"{where}: expected one strategic-merge patch (JSON 6902 unsupported)")
    body = bodies[0]
    target = patch.get("target")
    if target is None:
        target = {"kind": body.get("kind"), "name": (body.get("metadata") or {}).get("name")}
    targets = _matching(documents, target)
    if not targets:
        raise KustomizeError(f"{where}: matches no resource ({target})")
    for document in targets:
        name = document["metadata"]["name"]
        merged = strategic_merge(document, body)
        merged["metadata"]["name"] = name
        document.clear()
        document.update(merged)


def _add_labels(
    kustomization: Path, index: int, labels: Mapping[str, Any], documents: list[Document]
) -> None:
    if labels.get("includeSelectors"):
        raise KustomizeError(f"{kustomization}: labels[{index}]: includeSelectors is unsupported")
    pairs = dict(labels.get("pairs") or {})
    for document in documents:
        document.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
        template = (document.get("spec") or {}).get("template")
        if labels.get("includeTemplates") and isinstance(template, dict):
            template.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)


def _matching(
    documents: list[Document], target: Mapping[str, Any], kinds: frozenset[str] | None = None
) -> list[Document]:
    selector = dict(
        part.split("=", 1) for part in str(target.get("labelSelector") or "").split(",") if part
    )
    found = []
    for document in documents:
        metadata = document.get("metadata") or {}
        labels = metadata.get("labels") or {}
        if kinds is not None and document.get("kind") not in kinds:
            continue
        if target.get("kind") and document.get("kind") != target["kind"]:
            continue
        if target.get("name") and metadata.get("name") != target["name"]:
            continue
        if any(labels.get(key) != value for key, value in selector.items()):
            continue
        found.append(document)
    return found


def strategic_merge(base: Any, patch: Any) -> Any:
    """Return ``base`` with ``patch`` merged in (see the module docstring); inputs are unchanged."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = strategic_merge(merged[key], value)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and _named(base) and _named(patch):
        merged_list = [copy.deepcopy(item) for item in base]
        positions = {item["name"]: index for index, item in enumerate(merged_list)}
        for item in patch:
            if item["name"] in positions:
                at = positions[item["name"]]
                merged_list[at] = strategic_merge(merged_list[at], item)
            else:
                merged_list.append(copy.deepcopy(item))
        return merged_list
    return copy.deepcopy(patch)


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(item, dict) and "name" in item for item in items)
