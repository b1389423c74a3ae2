"""Tests of k8s/serving/: the built base and overlays, pod security, scaling, route and RBAC."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.kustomize_build import build
from scripts.manifest_schemas import SchemaCatalog, default_schemas_dir
from scripts.pod_security import pod_spec, restricted_violations
from scripts.validate_manifests import validate_paths
from steps.core.settings import DeploySettings
from steps.platform.base import TRACKS

REPO = Path(__file__).resolve().parents[2]
SERVING = REPO / "k8s" / "serving"
BUILDS = {
    "base": SERVING / "base",
    "edge-arm64": SERVING / "overlays" / "edge-arm64",
    "cloud": SERVING / "overlays" / "cloud",
}
NAMESPACE = DeploySettings().namespace


def _built(name: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in build(BUILDS[name])}


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def test_serving_manifests_validate_built_and_as_files() -> None:
    problems, checked = validate_paths([SERVING], SchemaCatalog(default_schemas_dir()))

    assert [str(problem) for problem in problems] == []
    assert checked == 15


@pytest.mark.parametrize("name", BUILDS)
def test_every_resource_is_in_the_serving_namespace(name: str) -> None:
    built = _built(name)

    assert ("Namespace", NAMESPACE) in built
    for (kind, resource_name), doc in built.items():
        if kind != "Namespace":
            assert doc["metadata"]["namespace"] == NAMESPACE, (kind, resource_name)
    assert not {kind for kind, _ in built} & {"ClusterRole", "ClusterRoleBinding"}


@pytest.mark.parametrize("name", BUILDS)
def test_every_pod_template_meets_restricted(name: str) -> None:
    workloads = [doc for doc in build(BUILDS[name]) if pod_spec(doc) is not None]

    assert {doc["metadata"]["name"] for doc in workloads} == {"loopline-stable", "loopline-canary"}
    for doc in workloads:
        spec = pod_spec(doc)
        assert spec is not None
        assert restricted_violations(spec) == [], doc["metadata"]["name"]
        assert spec["securityContext"]["runAsUser"] == 1034  # the bento image's user


def test_the_namespace_enforces_restricted_at_admission() -> None:
    namespace = _built("base")[("Namespace", NAMESPACE)]

    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def _compliant() -> dict[str, Any]:
    spec = pod_spec(_built("base")[("Deployment", "loopline-stable")])
    assert spec is not None
    return copy.deepcopy(dict(spec))


def _set(path: str, value: Any) -> dict[str, Any]:
    spec = _compliant()
    node: Any = spec
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[int(last) if last.isdigit() else last] = value
    return spec


@pytest.mark.parametrize(
    ("spec", "violation"),
    [
        (_set("hostNetwork", True), "hostNetwork is forbidden"),
        (
            _set("volumes.0", {"name": "host", "hostPath": {"path": "/"}}),
            "volume 'host': ['hostPath'] is not allowed",
        ),
        (
            _set("containers.0.securityContext.allowPrivilegeEscalation", True),
            "containers[model-server]: allowPrivilegeEscalation must be false",
        ),
        (
            _set("containers.0.securityContext.capabilities", {"drop": ["NET_RAW"]}),
            "containers[model-server]: capabilities.drop must include ALL",
        ),
        (
            _set(
                "containers.0.securityContext.capabilities", {"drop": ["ALL"], "add": ["SYS_ADMIN"]}
            ),
            "containers[model-server]: capabilities.add ['SYS_ADMIN'] is not allowed",
        ),
        (
            _set("containers.0.securityContext.runAsNonRoot", False),
            "containers[model-server]: runAsNonRoot must be true (container or pod)",
        ),
        (
            _set("containers.0.securityContext.seccompProfile", {"type": "Unconfined"}),
            "containers[model-server]: seccompProfile.type must be RuntimeDefault or Localhost "
            "(container or pod)",
        ),
        (
            _set("containers.0.securityContext.readOnlyRootFilesystem", False),
            "containers[model-server]: readOnlyRootFilesystem must be true",
        ),
        (
            _set("automountServiceAccountToken", True),
            "automountServiceAccountToken must be false",
        ),
        (_set("securityContext.runAsUser", 0), "securityContext.runAsUser must not be 0"),
    ],
    ids=[
        "host-network",
        "host-path",
        "escalation",
        "drop",
        "add",
        "non-root",
        "seccomp",
        "read-only-root",
        "token",
        "root-uid",
    ],
)
def test_restricted_check_names_each_violation(spec: dict[str, Any], violation: str) -> None:
    assert restricted_violations(_compliant()) == []

    assert restricted_violations(spec) == [violation]


def test_pod_level_non_root_and_seccomp_cover_containers_that_do_not_say() -> None:
    spec = _compliant()
    context = spec["containers"][0]["securityContext"]
    del context["runAsNonRoot"], context["seccompProfile"]

    assert restricted_violations(spec) == []
    del spec["securityContext"]["seccompProfile"]
    assert restricted_violations(spec) == [
        "containers[model-server]: seccompProfile.type must be RuntimeDefault or Localhost "
        "(container or pod)"
    ]


@pytest.mark.parametrize("name", BUILDS)
def test_each_track_has_a_deployment_service_autoscaler_and_budget(name: str) -> None:
    built = _built(name)

    for track in TRACKS:
        resource = f"loopline-{track}"
        deployment = built[("Deployment", resource)]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["loopline.dev/track"] == track
        assert {"loopline.dev/model", "loopline.dev/model-version"} <= set(labels)
        service = built[("Service", resource)]
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        assert service["spec"]["ports"] == [
            {
                "name": "http",
                "port": 3000,
                "targetPort": "http",
                "protocol": "TCP",
                "appProtocol": "http",
            }
        ]
        assert _container(deployment)["ports"][0]["containerPort"] == 3000
        hpa = built[("HorizontalPodAutoscaler", resource)]
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": resource,
        }
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
        assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
        budget = built[("PodDisruptionBudget", resource)]
        assert (
            budget["spec"]["selector"]["matchLabels"]
            == deployment["spec"]["selector"]["matchLabels"]
        )


def test_overlays_size_the_tracks_for_their_nodes() -> None:
    def figures(name: str) -> tuple[Any, ...]:
        built = _built(name)
        stable = built[("Deployment", "loopline-stable")]
        pod = stable["spec"]["template"]["spec"]
        return (
            stable["spec"]["replicas"],
            _container(stable)["resources"]["requests"]["memory"],
            built[("HorizontalPodAutoscaler", "loopline-stable")]["spec"]["maxReplicas"],
            pod.get("nodeSelector"),
        )

    assert figures("edge-arm64") == (1, "448Mi", 2, {"kubernetes.io/arch": "arm64"})
    assert figures("base") == (2, "512Mi", 6, None)
    assert figures("cloud") == (3, "768Mi", 20, None)
    canary = _built("edge-arm64")[("Deployment", "loopline-canary")]
    assert canary["spec"]["replicas"] == 0  # at rest; the deploy step scales it up


def test_a_stopping_pod_leaves_the_route_then_flushes_the_inference_log() -> None:
    deployment = _built("base")[("Deployment", "loopline-stable")]
    spec = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    env = {item["name"]: item["value"] for item in container["env"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    empty_dirs = {volume["name"] for volume in spec["volumes"] if "emptyDir" in volume}

    pre_stop_s = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    flush_interval_s = 5  # LOOPLINE_SERVING__LOG_FLUSH_INTERVAL_S's default
    assert spec["terminationGracePeriodSeconds"] >= pre_stop_s + 3 * flush_interval_s
    assert mounts[env["LOOPLINE_SERVING__LOG_DIR"]] in empty_dirs
    assert mounts["/tmp"] in empty_dirs
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"


def test_the_route_splits_between_the_two_services_all_stable_at_rest() -> None:
    built = _built("base")
    route = built[("HTTPRoute", DeploySettings().route)]

    assert route["spec"]["parentRefs"] == [{"name": "loopline-gateway"}]
    (rule,) = route["spec"]["rules"]
    refs = {ref["name"]: (ref["port"], ref["weight"]) for ref in rule["backendRefs"]}
    assert refs == {"loopline-stable": (3000, 100), "loopline-canary": (3000, 0)}
    for name in refs:
        assert ("Service", name) in built


def _role() -> dict[str, Any]:
    return _built("base")[("Role", "loopline-deployer")]


def test_rbac_names_every_object_it_may_change_and_has_no_wildcard() -> None:
    rules = _role()["rules"]

    for rule in rules:
        for field_name in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(field_name, []), rule
        if {"patch", "update", "delete"} & set(rule["verbs"]):
            assert rule.get("resourceNames"), rule
    grants = {
        (group, resource, verb, tuple(rule.get("resourceNames", ())))
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    tracks = ("loopline-stable", "loopline-canary")
    assert grants == {
        ("apps", "deployments", "get", tracks),
        ("apps", "deployments", "patch", tracks),
        ("gateway.networking.k8s.io", "httproutes", "get", ("loopline",)),
        ("gateway.networking.k8s.io", "httproutes", "patch", ("loopline",)),
        ("", "pods", "get", ()),
        ("", "pods", "list", ()),
        ("", "pods", "watch", ()),
        ("apps", "replicasets", "get", ()),
        ("apps", "replicasets", "list", ()),
        ("apps", "replicasets", "watch", ()),
        ("coordination.k8s.io", "leases", "get", ("loopline-promotion",)),
        ("coordination.k8s.io", "leases", "update", ("loopline-promotion",)),
        ("coordination.k8s.io", "leases", "create", ()),
    }


def test_the_pipeline_service_account_may_deploy_in_the_serving_namespace_only() -> None:
    built = _built("base")
    binding = built[("RoleBinding", "loopline-pipeline-deployer")]
    pipeline = {
        (doc["kind"], doc["metadata"]["name"]): doc for doc in build(REPO / "k8s" / "pipeline")
    }

    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "loopline-deployer",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "loopline-pipeline", "namespace": "loopline"}
    ]
    assert pipeline[("ServiceAccount", "loopline-pipeline")]["metadata"]["namespace"] == "loopline"
    assert built[("RoleBinding", "loopline-deployer")]["subjects"] == [
        {"kind": "ServiceAccount", "name": "loopline-deployer", "namespace": NAMESPACE}
    ]


def test_the_canary_autoscaler_says_its_replicas_follow_the_traffic_share() -> None:
    hpa = _built("base")[("HorizontalPodAutoscaler", "loopline-canary")]

    assert hpa["metadata"]["annotations"]["loopline.dev/min-replicas-follow"] == "traffic-share"


def test_the_pod_monitor_gives_track_and_model_version_target_labels() -> None:
    built = _built("base")
    monitor = built[("PodMonitor", "loopline")]
    deployment = built[("Deployment", "loopline-canary")]

    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    relabel = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    assert relabel["track"] == ["__meta_kubernetes_pod_label_loopline_dev_track"]
    assert relabel["model_version"] == ["__meta_kubernetes_pod_label_loopline_dev_model_version"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_the_dashboard_config_map_is_labelled_for_grafanas_sidecar() -> None:
    config_map = _built("base")[("ConfigMap", "loopline-grafana-dashboard")]
    dashboard = (SERVING / "base" / "grafana-dashboard.json").read_text()

    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["data"] == {"grafana-dashboard.json": dashboard}
    assert yaml.safe_load(dashboard)["uid"] == "loopline-serving"


@pytest.mark.parametrize("track", TRACKS)
def test_a_track_runs_the_images_own_entrypoint_on_the_port_it_exposes(track: str) -> None:
    from steps.image import recipe

    deployment = _built("base")[("Deployment", f"loopline-{track}")]
    container = _container(deployment)
    env = {item["name"]: item["value"] for item in container["env"]}

    # The image (steps/image/recipe.py) runs serving.launch, one worker, on its port
    assert "command" not in container and "args" not in container
    assert "workingDir" not in container
    assert container["ports"][0]["containerPort"] == recipe.PORT
    assert recipe.CMD[recipe.CMD.index("--port") + 1] == str(recipe.PORT)
    assert recipe.ENTRYPOINT == ("python3", "-m", "serving.launch")
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == recipe.UID
    assert env["LOOPLINE_SERVING__WORKERS"] == "1"  # what serving.launch runs
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert env["TMPDIR"] in mounts  # where serving.launch keeps the metrics files
    assert recipe.ENV["BENTOML_HOME"].startswith(env["TMPDIR"])  # writable: the root is not
