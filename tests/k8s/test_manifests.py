"""Tests of the kustomize manifests in k8s/: schemas, RBAC, config without secrets, wiring."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.manifest_schemas import SchemaCatalog, default_schemas_dir
from scripts.validate_manifests import check_kustomizations, validate_paths

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
BASE = K8S / "pipeline"
SECRET_WORDS = ("SECRET", "PASSWORD", "TOKEN", "ACCESS_KEY", "PRIVATE")


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _base_resources() -> dict[tuple[str, str], dict[str, Any]]:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in kustomization["resources"]:
        for doc in _documents(BASE / entry):
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def _rendered_template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "argo" / "retrain.yaml").read_text())
    return loaded


def test_every_k8s_manifest_validates_and_is_listed() -> None:
    problems, checked = validate_paths([K8S], SchemaCatalog(default_schemas_dir()))

    assert [str(problem) for problem in problems] == []
    assert checked >= 6


def test_local_overlay_patches_only_what_the_base_defines() -> None:
    overlay = K8S / "overlays" / "local"
    report = check_kustomizations(overlay)
    base = _base_resources()

    assert report.problems == []
    assert {patch.name for patch in report.patches} == {
        "loopline-config.yaml",
        "artifact-repositories.yaml",
    }
    for patch in report.patches:
        for doc in _documents(patch):
            assert (doc["kind"], doc["metadata"]["name"]) in base, patch


def test_base_defines_the_namespace_service_account_and_config() -> None:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())

    assert kustomization["namespace"] == "loopline"
    assert set(_base_resources()) == {
        ("Namespace", "loopline"),
        ("ServiceAccount", "loopline-pipeline"),
        ("Role", "loopline-pipeline-executor"),
        ("RoleBinding", "loopline-pipeline-executor"),
        ("ConfigMap", "artifact-repositories"),
        ("ConfigMap", "loopline-config"),
        ("ServiceAccount", "loopline-drift-check"),
        ("Role", "loopline-drift-check"),
        ("RoleBinding", "loopline-drift-check"),
        ("ServiceAccount", "loopline-drift-trigger"),
        ("Role", "loopline-drift-trigger"),
        ("RoleBinding", "loopline-drift-trigger"),
        ("ServiceAccount", "loopline-sensor"),
        ("Role", "loopline-sensor"),
        ("RoleBinding", "loopline-sensor"),
    }


def test_role_grants_exactly_what_the_argo_executor_needs() -> None:
    role = _base_resources()[("Role", "loopline-pipeline-executor")]

    assert role["rules"] == [
        {
            "apiGroups": ["argoproj.io"],
            "resources": ["workflowtaskresults"],
            "verbs": ["create", "patch"],
        }
    ]


def test_role_binding_binds_the_role_to_the_workflow_service_account() -> None:
    resources = _base_resources()
    binding = resources[("RoleBinding", "loopline-pipeline-executor")]
    service_account = _rendered_template()["spec"]["serviceAccountName"]

    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "loopline-pipeline-executor",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": service_account, "namespace": "loopline"}
    ]
    assert ("ServiceAccount", service_account) in resources


def _config_maps() -> list[tuple[Path, dict[str, Any]]]:
    return [
        (path, doc)
        for path in sorted(K8S.rglob("*.yaml"))
        for doc in _documents(path)
        if doc.get("kind") == "ConfigMap"
    ]


@pytest.mark.parametrize("entry", _config_maps(), ids=lambda e: str(e[0].relative_to(K8S)))
def test_config_maps_hold_no_credentials(entry: tuple[Path, dict[str, Any]]) -> None:
    _, config_map = entry

    for key, value in (config_map.get("data") or {}).items():
        assert not any(word in key.upper() for word in SECRET_WORDS), key
        if config_map["metadata"]["name"] == "artifact-repositories":
            s3 = yaml.safe_load(value)["s3"]
            assert not {"accessKey", "secretKey"} & set(s3)
            assert s3["accessKeySecret"] == {"name": "loopline-s3", "key": "AWS_ACCESS_KEY_ID"}
            assert s3["secretKeySecret"] == {
                "name": "loopline-s3",
                "key": "AWS_SECRET_ACCESS_KEY",
            }


def test_no_secret_manifest_is_committed() -> None:
    kinds = {doc.get("kind") for path in K8S.rglob("*.yaml") for doc in _documents(path)}

    assert "Secret" not in kinds


def test_artifact_repository_is_the_namespace_default() -> None:
    config_map = _base_resources()[("ConfigMap", "artifact-repositories")]

    key = config_map["metadata"]["annotations"]["workflows.argoproj.io/default-artifact-repository"]
    assert key in config_map["data"]
    assert yaml.safe_load(config_map["data"][key])["s3"]["bucket"] == "loopline"


def test_the_workflow_reads_the_config_map_the_base_defines() -> None:
    config = _base_resources()[("ConfigMap", "loopline-config")]
    templates = _rendered_template()["spec"]["templates"]

    config_refs = {
        source["configMapRef"]["name"]
        for template in templates
        if "container" in template
        for source in template["container"].get("envFrom", [])
        if "configMapRef" in source
    }
    assert config_refs == {"loopline-config"}
    assert {
        "LOOPLINE_TRACKING_URI",
        "LOOPLINE_ARTIFACT_STORE",
        "LOOPLINE_MODEL_NAME",
    } <= set(config["data"])
    assert all(key.startswith(("LOOPLINE_", "AWS_DEFAULT_")) for key in config["data"])
