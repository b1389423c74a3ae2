"""Tests of steps/platform/kubernetes.py against the fake API server (tests/fixtures/kube_api)."""

from __future__ import annotations

import pytest
from kubernetes import client

from steps.core.errors import ConfigError, DeployError
from steps.core.settings import Settings
from steps.platform.base import Release, Weights
from steps.platform.kubernetes import (
    ARTIFACT_ANNOTATION,
    JSON_PATCH,
    STRATEGIC_MERGE,
    KubernetesPlatform,
)
from tests.fixtures.kube_api import FakeKubeAPI

NS = "loopline-serving"
V1_IMAGE = "ghcr.io/loopline/churn@sha256:" + "1" * 64
V2_IMAGE = "ghcr.io/loopline/churn@sha256:" + "2" * 64
DEPLOYMENTS = "/apis/apps/v1/namespaces/loopline-serving/deployments"
ROUTE = "/apis/gateway.networking.k8s.io/v1/namespaces/loopline-serving/httproutes/loopline"


def _labels(track: str, version: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "loopline",
        "loopline.dev/track": track,
        "loopline.dev/model": "churn",
        "loopline.dev/model-version": version,
    }


@pytest.fixture
def cluster(kube_api: FakeKubeAPI) -> FakeKubeAPI:
    """v1 on stable; the canary at rest as k8s/serving leaves it (version ``none``, 0 replicas);
    the route at rest (stable 100, canary 0)."""
    kube_api.add_deployment(NS, "loopline-stable", V1_IMAGE, _labels("stable", "1"))
    rest = "ghcr.io/loopline/churn:none"
    kube_api.add_deployment(NS, "loopline-canary", rest, _labels("canary", "none"), replicas=0)
    kube_api.add_route(NS, "loopline", {"loopline-stable": 100, "loopline-canary": 0})
    return kube_api


def _platform(api: FakeKubeAPI) -> KubernetesPlatform:
    configuration = client.Configuration(host=api.url)
    return KubernetesPlatform(Settings(), client.ApiClient(configuration), poll_interval_s=0.01)


def test_served_reads_labels_images_and_route_weights(cluster: FakeKubeAPI) -> None:
    served = _platform(cluster).served()

    assert served.stable == Release(model_name="churn", version="1", artifact=V1_IMAGE)
    assert served.canary is None  # model-version "none": the canary serves nothing
    assert served.weights == Weights(stable=100, canary=0)


def test_roll_out_patches_image_and_labels_then_waits_for_the_rollout(
    cluster: FakeKubeAPI,
) -> None:
    platform = _platform(cluster)
    release = Release(model_name="churn", version="2", artifact=V2_IMAGE)

    platform.roll_out("canary", release, timeout_s=10)

    stored = cluster.get("deployments", NS, "loopline-canary")
    template = stored["spec"]["template"]
    assert template["spec"]["containers"] == [{"name": "model-server", "image": V2_IMAGE}]
    for labels in (stored["metadata"]["labels"], template["metadata"]["labels"]):
        assert labels["loopline.dev/model-version"] == "2"
        assert labels["loopline.dev/model"] == "churn"
        assert labels["loopline.dev/track"] == "canary"  # the selector's label is kept
    assert template["metadata"]["annotations"] == {ARTIFACT_ANNOTATION: V2_IMAGE}
    assert stored["spec"]["replicas"] == 1  # from 0 at rest: the canary's HPA takes over
    assert stored["metadata"]["generation"] == 2
    assert stored["status"]["observedGeneration"] == 2
    assert stored["status"]["availableReplicas"] == stored["status"]["updatedReplicas"] == 1
    patches = [r for r in cluster.requests if r[0] == "PATCH"]
    assert patches == [("PATCH", f"{DEPLOYMENTS}/loopline-canary", STRATEGIC_MERGE)]
    gets_after_patch = cluster.requests[cluster.requests.index(patches[0]) + 1 :]
    assert len(gets_after_patch) == 3  # observed+surge, all updated, old replicas gone
    assert platform.served().canary == release


def test_roll_out_fails_naming_progress_deadline_exceeded(cluster: FakeKubeAPI) -> None:
    cluster.stuck_images.add(V2_IMAGE)
    release = Release(model_name="churn", version="2", artifact=V2_IMAGE)

    with pytest.raises(DeployError) as raised:
        _platform(cluster).roll_out("canary", release, timeout_s=30)

    message = str(raised.value)
    assert "Progressing=False" in message and "ProgressDeadlineExceeded" in message
    assert "has timed out progressing" in message
    assert "route was left as it was" in message
    assert not any(path == ROUTE and method == "PATCH" for method, path, _ in cluster.requests)


def test_roll_out_past_its_deadline_names_what_it_waits_on(cluster: FakeKubeAPI) -> None:
    cluster.stuck_images.add(V2_IMAGE)
    cluster.stuck_after_gets = 10_000  # the cluster never gives up: our deadline decides
    release = Release(model_name="churn", version="2", artifact=V2_IMAGE)

    with pytest.raises(
        DeployError, match=r"not rolled out within 0.2s: 1 old replicas pending termination"
    ):
        # 1 replica wanted; the surged new one never becomes available, the old one stays
        _platform(cluster).roll_out("canary", release, timeout_s=0.2)


def test_set_weights_json_patches_each_backend_by_name(cluster: FakeKubeAPI) -> None:
    platform = _platform(cluster)

    platform.set_weights(Weights.canary_at(10))

    refs = cluster.get("httproutes", NS, "loopline")["spec"]["rules"][0]["backendRefs"]
    assert [(ref["name"], ref["weight"]) for ref in refs] == [
        ("loopline-stable", 90),
        ("loopline-canary", 10),
    ]
    assert ("PATCH", ROUTE, JSON_PATCH) in cluster.requests
    assert platform.weights() == Weights(stable=90, canary=10)


def test_weights_are_shares_of_any_backend_scale(kube_api: FakeKubeAPI) -> None:
    kube_api.add_route(NS, "loopline", {"loopline-canary": 300_000, "loopline-stable": 700_000})

    assert _platform(kube_api).weights() == Weights(stable=70, canary=30)


def test_route_without_a_track_backend_is_a_config_error(kube_api: FakeKubeAPI) -> None:
    kube_api.add_route(NS, "loopline", {"loopline-stable": 100})

    with pytest.raises(ConfigError, match="lacks loopline-canary"):
        _platform(kube_api).weights()


def test_missing_deployment_is_a_config_error_quoting_the_server(kube_api: FakeKubeAPI) -> None:
    with pytest.raises(ConfigError) as raised:
        _platform(kube_api).served()

    assert '404 Not Found: deployments.apps "loopline-stable" not found' in str(raised.value)
    assert "k8s/serving applied" in str(raised.value)


def test_strategic_merge_on_the_route_is_refused_as_the_real_server_does(
    cluster: FakeKubeAPI,
) -> None:
    custom = client.CustomObjectsApi(client.ApiClient(client.Configuration(host=cluster.url)))
    patch = {"spec": {"hostnames": ["x.example.com"]}}

    with pytest.raises(client.ApiException) as raised:
        custom.patch_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", NS, "httproutes", "loopline", patch,
            _content_type=STRATEGIC_MERGE,
        )  # fmt: skip

    assert raised.value.status == 415


def test_endpoint_is_the_route_hostname_else_its_gateway(kube_api: FakeKubeAPI) -> None:
    weights = {"loopline-stable": 100, "loopline-canary": 0}
    kube_api.add_route(NS, "loopline", weights, hostnames=["churn.example.com"])
    kube_api.add_route(NS, "bare", weights)
    bare = Settings.model_validate({"deploy": {"route": "bare"}})
    configuration = client.Configuration(host=kube_api.url)

    assert _platform(kube_api).endpoint() == "http://churn.example.com"
    assert KubernetesPlatform(bare, client.ApiClient(configuration)).endpoint() == (
        "gateway/loopline-gateway"
    )


def test_track_url_is_the_service_inside_the_cluster(cluster: FakeKubeAPI) -> None:
    assert _platform(cluster).track_url("canary") == (
        "http://loopline-canary.loopline-serving.svc.cluster.local:3000"
    )


def test_a_model_version_that_is_no_label_value_is_refused_before_patching(
    cluster: FakeKubeAPI,
) -> None:
    release = Release(model_name="churn model", version="2", artifact=V2_IMAGE)

    with pytest.raises(ConfigError, match="label value"):
        _platform(cluster).roll_out("canary", release, timeout_s=5)

    assert not [r for r in cluster.requests if r[0] == "PATCH"]


def test_retire_puts_the_canary_back_at_rest_and_leaves_stable_and_route(
    cluster: FakeKubeAPI,
) -> None:
    platform = _platform(cluster)
    platform.roll_out(
        "canary", Release(model_name="churn", version="2", artifact=V2_IMAGE), timeout_s=10
    )
    platform.set_weights(Weights.canary_at(30))
    stable_before = cluster.get("deployments", NS, "loopline-stable")
    route_before = cluster.get("httproutes", NS, "loopline")
    patches_before = len([r for r in cluster.requests if r[0] == "PATCH"])

    platform.retire("canary")

    served = platform.served()
    assert served.canary is None
    assert served.stable == Release(model_name="churn", version="1", artifact=V1_IMAGE)
    assert served.weights == Weights(stable=70, canary=30)  # the route is the caller's business
    stored = cluster.get("deployments", NS, "loopline-canary")
    template = stored["spec"]["template"]
    assert stored["spec"]["replicas"] == 0
    for labels in (stored["metadata"]["labels"], template["metadata"]["labels"]):
        assert labels["loopline.dev/model-version"] == "none"
        assert labels["loopline.dev/track"] == "canary"  # the selector's label is kept
    assert ARTIFACT_ANNOTATION not in template["metadata"].get("annotations", {})
    assert stored["status"]["observedGeneration"] == stored["metadata"]["generation"]
    assert "replicas" not in stored["status"]  # 0, omitted as the real server does
    assert cluster.get("deployments", NS, "loopline-stable") == stable_before
    assert cluster.get("httproutes", NS, "loopline") == route_before
    patches = [r for r in cluster.requests if r[0] == "PATCH"][patches_before:]
    assert patches == [("PATCH", f"{DEPLOYMENTS}/loopline-canary", STRATEGIC_MERGE)]


def test_retire_is_idempotent(cluster: FakeKubeAPI) -> None:
    platform = _platform(cluster)
    platform.roll_out(
        "canary", Release(model_name="churn", version="2", artifact=V2_IMAGE), timeout_s=10
    )
    platform.retire("canary")
    retired = cluster.get("deployments", NS, "loopline-canary")

    platform.retire("canary")

    again = cluster.get("deployments", NS, "loopline-canary")
    assert again["metadata"]["resourceVersion"] == retired["metadata"]["resourceVersion"]
    assert again["metadata"]["generation"] == retired["metadata"]["generation"]
    assert platform.served().canary is None


def test_a_retired_track_rolls_out_again_from_zero_replicas(cluster: FakeKubeAPI) -> None:
    platform = _platform(cluster)
    v2 = Release(model_name="churn", version="2", artifact=V2_IMAGE)
    platform.roll_out("canary", v2, timeout_s=10)
    platform.retire("canary")

    platform.roll_out("canary", v2, timeout_s=10)

    stored = cluster.get("deployments", NS, "loopline-canary")
    assert stored["spec"]["replicas"] == 1
    assert stored["spec"]["template"]["metadata"]["annotations"] == {ARTIFACT_ANNOTATION: V2_IMAGE}
    assert stored["status"]["availableReplicas"] == 1
    assert platform.served().canary == v2


def test_retiring_a_missing_deployment_names_it(kube_api: FakeKubeAPI) -> None:
    with pytest.raises(ConfigError, match=r"retire .*Deployment loopline-canary.*not found"):
        _platform(kube_api).retire("canary")
