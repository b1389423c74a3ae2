"""Tests of scripts/validate_manifests.py and scripts/manifest_schemas.py."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from scripts.manifest_schemas import (
    ARGO_WORKFLOWS_SCHEMA,
    INT_OR_STRING,
    VENDORED_SCHEMAS_DIR,
    SchemaCatalog,
    default_schemas_dir,
    fix_argo_schema,
    load_json,
)
from scripts.validate_manifests import (
    Problem,
    build_problems,
    check_kustomizations,
    main,
    schema_errors,
    validate_file,
    validate_paths,
)

REPO = Path(__file__).resolve().parents[2]
ARGO_FILES = sorted((REPO / "argo").glob("*.yaml"))


@pytest.fixture(scope="module")
def catalog() -> SchemaCatalog:
    return SchemaCatalog(default_schemas_dir())


def _write(path: Path, *documents: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


def _retrain() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "argo" / "retrain.yaml").read_text())
    return loaded


def test_every_rendered_argo_file_validates(catalog: SchemaCatalog) -> None:
    assert {path.name for path in ARGO_FILES} >= {
        "retrain.yaml",
        "retrain-schedule.yaml",
        "retrain-submit.yaml",
    }
    for path in ARGO_FILES:
        assert validate_file(path, catalog) == [], path


def test_misspelt_key_fails_naming_file_document_and_path(
    tmp_path: Path, catalog: SchemaCatalog
) -> None:
    workflow = _retrain()
    workflow["spec"]["templates"][1]["activeDeadlineSecond"] = workflow["spec"]["templates"][1].pop(
        "activeDeadlineSeconds"
    )
    path = _write(
        tmp_path / "typo.yaml",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}},
        workflow,
    )

    problems = validate_file(path, catalog)

    assert problems == [
        Problem(
            path,
            2,
            "WorkflowTemplate/retrain",
            "$.spec.templates[1]",
            "Additional properties are not allowed ('activeDeadlineSecond' was unexpected)",
        )
    ]
    assert str(problems[0]).startswith(f"{path}: document 2 (WorkflowTemplate/retrain): $.spec")


def test_upstream_schema_alone_misses_the_typo_the_fixed_one_catches() -> None:
    raw = load_json(default_schemas_dir() / ARGO_WORKFLOWS_SCHEMA)
    workflow = _retrain()
    workflow["spec"]["activeDeadlineSecond"] = 60

    def errors(schema: dict[str, Any]) -> list[str]:
        root = {k: v for k, v in schema.items() if k != "oneOf"}
        root["$ref"] = "#/definitions/io.argoproj.workflow.v1alpha1.WorkflowTemplate"
        return [e.message for e in Draft202012Validator(root).iter_errors(workflow)]

    assert errors(raw) == []
    assert errors(fix_argo_schema(raw)) == [
        "Additional properties are not allowed ('activeDeadlineSecond' was unexpected)"
    ]


def test_int_or_string_accepts_integers_only_after_the_fix(catalog: SchemaCatalog) -> None:
    raw = load_json(default_schemas_dir() / ARGO_WORKFLOWS_SCHEMA)
    workflow = _retrain()
    workflow["spec"]["templates"][1]["retryStrategy"]["limit"] = 3
    workflow["spec"]["templates"][1]["activeDeadlineSeconds"] = 900

    assert raw["definitions"][INT_OR_STRING] == {"type": "string"}
    assert fix_argo_schema(raw)["definitions"][INT_OR_STRING] == {"type": ["integer", "string"]}
    assert schema_errors(workflow, catalog) == []
    workflow["spec"]["templates"][1]["retryStrategy"]["limit"] = [3]
    assert schema_errors(workflow, catalog) == [
        ("$.spec.templates[1].retryStrategy.limit", "[3] is not of type 'integer', 'string'")
    ]


def test_fix_does_not_change_the_schema_it_was_given() -> None:
    raw = load_json(default_schemas_dir() / ARGO_WORKFLOWS_SCHEMA)
    before = json.dumps(raw, sort_keys=True)

    fix_argo_schema(raw)

    assert json.dumps(raw, sort_keys=True) == before


@pytest.mark.parametrize(
    ("document", "path", "message"),
    [
        (
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "r"},
                "rules": [{"resources": ["pods"], "verbs": ["get"], "resourceName": ["x"]}],
            },
            "$.rules[0]",
            "Additional properties are not allowed ('resourceName' was unexpected)",
        ),
        (
            {
                "apiVersion": "monitoring.coreos.com/v1",
                "kind": "ServiceMonitor",
                "metadata": {"name": "m"},
                "spec": {"selector": {}, "endpoints": [{"port": "http", "intervall": "15s"}]},
            },
            "$.spec.endpoints[0]",
            "Additional properties are not allowed ('intervall' was unexpected)",
        ),
        (
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "metadata": {"name": "route"},
                "spec": {"rules": [{"backendRefs": [{"name": "canary", "weight": "10"}]}]},
            },
            "$.spec.rules[0].backendRefs[0].weight",
            "'10' is not of type 'integer'",
        ),
        (
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Sensor",
                "metadata": {"name": "drift"},
                "spec": {
                    "dependencies": [
                        {"name": "d", "eventSourceName": "w", "eventName": "x", "filtres": {}}
                    ],
                    "triggers": [{"template": {"name": "t"}}],
                },
            },
            "$.spec.dependencies[0]",
            "Additional properties are not allowed ('filtres' was unexpected)",
        ),
        (
            {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "r"}},
            "$",
            "no schema for apiVersion 'argoproj.io/v1alpha1' kind 'Rollout'",
        ),
        (
            {"kind": "ConfigMap", "metadata": {"name": "c"}},
            "$",
            "a manifest needs string apiVersion and kind fields",
        ),
        (
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}},
            "$.metadata",
            "a resource needs metadata.name (or generateName)",
        ),
    ],
    ids=["core", "servicemonitor", "httproute", "sensor", "unknown-kind", "no-kind", "no-name"],
)
def test_each_kind_is_checked_against_its_own_schema(
    catalog: SchemaCatalog, document: dict[str, Any], path: str, message: str
) -> None:
    errors = schema_errors(document, catalog)

    assert len(errors) == 1, errors
    assert errors[0][0] == path
    assert errors[0][1].startswith(message)


def test_valid_crd_and_events_documents_pass(catalog: SchemaCatalog) -> None:
    documents = [
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": {"name": "slo"},
            "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up == 0"}]}]},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "route"},
            "spec": {"rules": [{"backendRefs": [{"name": "stable", "port": 80, "weight": 90}]}]},
        },
    ]

    assert [schema_errors(document, catalog) for document in documents] == [[], []]


def test_artifact_repository_config_is_validated_inside_the_configmap(
    catalog: SchemaCatalog,
) -> None:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "artifact-repositories",
            "annotations": {"workflows.argoproj.io/default-artifact-repository": "main"},
        },
        "data": {"default": "s3:\n  bucket: b\n  accesKeySecret: {name: s, key: k}\n"},
    }

    errors = schema_errors(config_map, catalog)

    assert errors == [
        (
            "$.data['default'].s3",
            "Additional properties are not allowed ('accesKeySecret' was unexpected)",
        ),
        (
            "$.metadata.annotations['workflows.argoproj.io/default-artifact-repository']",
            "names data key 'main', which the ConfigMap does not have",
        ),
    ]


def _kustomize_tree(root: Path) -> None:
    _write(
        root / "base" / "kustomization.yaml",
        {"resources": ["sa.yaml"], "namespace": "loopline"},
    )
    _write(
        root / "base" / "sa.yaml",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa"}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "r"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
        },
    )
    _write(
        root / "overlay" / "kustomization.yaml",
        {"resources": ["../base"], "patches": [{"path": "patch.yaml"}]},
    )
    # A patch may leave out required fields (a Role patch without rules).
    _write(
        root / "overlay" / "patch.yaml",
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r"}},
    )


def test_kustomize_tree_with_everything_listed_passes(
    tmp_path: Path, catalog: SchemaCatalog
) -> None:
    _kustomize_tree(tmp_path)

    problems, checked = validate_paths([tmp_path], catalog)

    assert problems == []
    assert checked == 2
    assert build_problems(tmp_path, catalog) == []


def test_missing_resource_and_unlisted_manifest_are_reported(
    tmp_path: Path, catalog: SchemaCatalog
) -> None:
    _kustomize_tree(tmp_path)
    kustomization = tmp_path / "base" / "kustomization.yaml"
    _write(kustomization, {"resources": ["sa.yaml", "gone.yaml", "../overlay/../nowhere"]})
    _write(
        tmp_path / "base" / "extra.yaml",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "extra"}},
    )

    report = check_kustomizations(tmp_path)

    assert [(p.file, p.path, p.message) for p in report.problems] == [
        (
            tmp_path / "base" / "extra.yaml",
            "$",
            "not listed in any kustomization.yaml (resources, patches or generators)",
        ),
        (kustomization, "$.resources[1]", "'gone.yaml' does not exist"),
        (kustomization, "$.resources[2]", "'../overlay/../nowhere' does not exist"),
    ]
    assert report.patches == {(tmp_path / "overlay" / "patch.yaml").resolve()}


def test_a_patch_is_partial_but_its_typos_still_fail(
    tmp_path: Path, catalog: SchemaCatalog
) -> None:
    _kustomize_tree(tmp_path)
    patch = tmp_path / "overlay" / "patch.yaml"
    _write(
        patch,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "r"},
            "rules": [{"verbs": ["get"], "resource": ["pods"]}],
        },
    )

    problems, _ = validate_paths([tmp_path], catalog)

    # Once as the patch file, once in the overlay's built Role.
    assert [(p.file, p.resource, p.path) for p in problems] == [
        (tmp_path / "overlay" / "kustomization.yaml", "Role/r", "$.rules[0]"),
        (patch, "Role/r", "$.rules[0]"),
    ]
    assert all("'resource' was unexpected" in problem.message for problem in problems)


def test_a_built_overlay_is_checked_in_full(tmp_path: Path, catalog: SchemaCatalog) -> None:
    _kustomize_tree(tmp_path)
    # Valid as a partial patch, but it empties a required list of the built Role.
    _write(
        tmp_path / "overlay" / "patch.yaml",
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r"}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "gone"}},
    )

    problems, _ = validate_paths([tmp_path], catalog)

    assert [(p.file.name, p.message) for p in problems] == [
        (
            "kustomization.yaml",
            "cannot build: "
            f"{tmp_path / 'overlay' / 'kustomization.yaml'}: patches[0]: expected one "
            "strategic-merge patch (JSON 6902 unsupported)",
        )
    ]


def test_a_workload_an_overlay_makes_privileged_is_reported(
    tmp_path: Path, catalog: SchemaCatalog
) -> None:
    _kustomize_tree(tmp_path)
    pod = {
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "app",
                "image": "app:1",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
            }
        ],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app"},
        "spec": {
            "selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "a"}}, "spec": pod},
        },
    }
    _write(tmp_path / "base" / "sa.yaml", deployment)
    _write(tmp_path / "base" / "kustomization.yaml", {"resources": ["sa.yaml"]})
    _write(
        tmp_path / "overlay" / "patch.yaml",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "app"},
            "spec": {"template": {"spec": {"hostNetwork": True}}},
        },
    )

    problems, _ = validate_paths([tmp_path], catalog)

    assert [(p.file.parent.name, p.resource, p.message) for p in problems] == [
        ("overlay", "Deployment/app", "pod security (restricted): hostNetwork is forbidden")
    ]


def test_a_folder_resource_needs_a_kustomization(tmp_path: Path) -> None:
    _kustomize_tree(tmp_path)
    (tmp_path / "empty").mkdir()
    _write(tmp_path / "overlay" / "kustomization.yaml", {"resources": ["../base", "../empty"]})
    _write(tmp_path / "overlay" / "patch.yaml", {"kind": "x"})

    report = check_kustomizations(tmp_path)

    messages = [(p.path, p.message) for p in report.problems]
    assert ("$.resources[1]", "'../empty' is a folder without a kustomization.yaml") in messages


def test_cli_exits_1_and_prints_each_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(
        tmp_path / "bad.yaml",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "date": {}},
    )

    exit_code = main([str(path)])

    out = capsys.readouterr().out
    assert exit_code == 1
    assert out.strip() == (
        f"{path}: document 1 (ConfigMap/c): $: "
        "Additional properties are not allowed ('date' was unexpected)"
    )


def test_cli_passes_on_the_repository(capsys: pytest.CaptureFixture[str]) -> None:
    exit_code = main([])

    captured = capsys.readouterr()
    assert exit_code == 0, captured.out
    assert captured.out == ""
    assert ", 0 problems" in captured.err


def test_schemas_are_read_from_the_repository_by_default() -> None:
    assert default_schemas_dir() == VENDORED_SCHEMAS_DIR == REPO / "k8s" / "schemas"
    assert (VENDORED_SCHEMAS_DIR / ARGO_WORKFLOWS_SCHEMA).is_file()


def test_every_vendored_schema_is_the_upstream_copy_its_readme_lists() -> None:
    readme = (VENDORED_SCHEMAS_DIR / "README.md").read_text()
    listed = dict(
        re.findall(r"^\| ([\w.-]+\.(?:json|yaml)) \|.*\| ([0-9a-f]{64}) \|$", readme, re.M)
    )
    vendored = {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in VENDORED_SCHEMAS_DIR.iterdir()
        if path.suffix in (".json", ".yaml")
    }

    assert len(vendored) == 6
    assert vendored == listed
    assert "Apache License" in (VENDORED_SCHEMAS_DIR / "LICENSE").read_text()


def test_the_vendored_schemas_are_not_taken_for_manifests() -> None:
    report = check_kustomizations(REPO / "k8s")
    problems, checked = validate_paths([VENDORED_SCHEMAS_DIR], SchemaCatalog(VENDORED_SCHEMAS_DIR))

    assert report.problems == []
    assert (problems, checked) == ([], 0)


def test_cli_exits_2_when_the_schemas_folder_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOOPLINE_SCHEMAS_DIR", str(tmp_path / "nowhere"))

    exit_code = main([str(REPO / "argo")])

    assert exit_code == 2
    assert "LOOPLINE_SCHEMAS_DIR" in capsys.readouterr().err


def test_invalid_yaml_is_a_problem_of_the_file(tmp_path: Path, catalog: SchemaCatalog) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("kind: [unclosed\n")

    problems = validate_file(path, catalog)

    assert len(problems) == 1
    assert (problems[0].document, problems[0].path) == (0, "$")
    assert problems[0].message.startswith("not valid YAML")
