"""The Kubernetes platform: two Deployments and a Gateway API HTTPRoute, via the official client.

``loopline-stable`` and ``loopline-canary`` (Deployments, and Services of the same names, in
``settings.deploy.namespace``, from ``k8s/serving/``) each serve one model version; the HTTPRoute
``settings.deploy.route`` splits traffic between the two Services with
``spec.rules[0].backendRefs[*].weight``. :class:`KubernetesPlatform` implements both protocols of
:mod:`steps.platform.base`:

- ``served()`` reads each Deployment's image and its ``loopline.dev/model`` and
  ``loopline.dev/model-version`` labels (``none``: the track serves nothing), and the route's
  weights;
- ``roll_out()`` strategic-merge-patches a Deployment's image and model labels (its pod template
  too; a track at 0 replicas gets 1), then waits as ``kubectl rollout status`` does;
- ``retire()`` strategic-merge-patches a Deployment back to rest: 0 replicas, model version
  ``none``, no artifact annotation (the route is not touched);
- ``set_weights()`` JSON-patches the route's backend weights, each guarded by a ``test`` of the
  backend's name, so a reordered route is refused rather than mis-weighted.

The client configuration is the pod's service account in a cluster, else the kubeconfig
(``KUBECONFIG``, ``~/.kube/config``); tests pass an ``ApiClient`` pointed at a fake API server.
"""

from __future__ import annotations

import re
import time
from typing import Any

from steps.core.errors import ConfigError, DeployError
from steps.core.settings import Settings
from steps.platform.base import TRACKS, Release, Served, Track, Weights

TRACK_LABEL = "loopline.dev/track"
MODEL_LABEL = "loopline.dev/model"
VERSION_LABEL = "loopline.dev/model-version"
NO_VERSION = "none"
"""The version label of a track that serves nothing yet (k8s/serving at rest)."""
ARTIFACT_ANNOTATION = "loopline.dev/artifact"
"""The image reference with its digest: too long for a label value."""
ROUTE_GROUP = "gateway.networking.k8s.io"
ROUTE_VERSION = "v1"
ROUTE_PLURAL = "httproutes"
SERVICE_PORT = 3000
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
REQUEST_TIMEOUT_S = 30.0
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def deployment_name(track: Track) -> str:
    """Return the Deployment (and Service) serving ``track``: ``loopline-<track>``."""
    return f"loopline-{track}"


def load_api_client() -> Any:
    """Return an ``ApiClient`` for the pod's service account, else for the kubeconfig.

    Raises:
        ConfigError: when neither an in-cluster service account nor a kubeconfig is found.
    """
    from kubernetes import client, config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        try:
            config.load_kube_config()  # type: ignore[no-untyped-call]
        except config.ConfigException as err:
            raise ConfigError(
                "LOOPLINE_PLATFORM=kubernetes needs a cluster: run in a pod with a service "
                f"account, or set KUBECONFIG / ~/.kube/config ({err})"
            ) from err
    return client.ApiClient()


class KubernetesPlatform:
    """Deployer and router over the two track Deployments and the HTTPRoute."""

    def __init__(
        self, settings: Settings, api_client: Any = None, poll_interval_s: float = 2.0
    ) -> None:
        """Bind to the namespace and route of ``settings.deploy``; nothing is read yet.

        Args:
            settings: the run's settings (``deploy.namespace``, ``deploy.route``).
            api_client: a ``kubernetes.client.ApiClient``; by default :func:`load_api_client`.
            poll_interval_s: how often a rollout's status is read while waiting.
        """
        from kubernetes import client

        self.namespace = settings.deploy.namespace
        self.route = settings.deploy.route
        self.poll_interval_s = poll_interval_s
        api = api_client if api_client is not None else load_api_client()
        self._apps = client.AppsV1Api(api)
        self._custom = client.CustomObjectsApi(api)

    # --- Deployer --------------------------------------------------------------------------------
    def served(self) -> Served:
        """Return the release on each track (None when a Deployment names no model version)
        and the route's split.

        Raises:
            ConfigError: when a Deployment or the route does not exist, or access is denied.
            DeployError: when the API server fails or cannot be reached.
        """
        releases = {track: _release_of(self._deployment(track)) for track in TRACKS}
        return Served(stable=releases["stable"], canary=releases["canary"], weights=self.weights())

    def roll_out(self, track: Track, release: Release, timeout_s: float) -> None:
        """Set the track's image and model labels, then wait until the rollout is complete.

        Raises:
            ConfigError: when a model name or version is not a valid label value, or the
                Deployment is missing.
            DeployError: naming the failing condition when the rollout fails or is not complete
                within ``timeout_s``.
        """
        for value in (release.model_name, release.version):
            if len(value) > 63 or not _LABEL_VALUE.match(value):
                raise ConfigError(
                    f"{value!r} cannot be a Kubernetes label value: expected at most 63 "
                    "letters, digits, '-', '_' or '.', starting and ending alphanumeric"
                )
        name = deployment_name(track)
        current = self._deployment(track)
        container = current.spec.template.spec.containers[0].name
        labels = {MODEL_LABEL: release.model_name, VERSION_LABEL: release.version}
        patch: dict[str, Any] = {
            "metadata": {"labels": labels},
            "spec": {
                "template": {
                    "metadata": {
                        "labels": labels,
                        "annotations": {ARTIFACT_ANNOTATION: release.artifact},
                    },
                    "spec": {"containers": [{"name": container, "image": release.artifact}]},
                }
            },
        }
        if not current.spec.replicas:
            # At rest the canary has 0 replicas (k8s/serving): serve with one, its HPA scales on.
            patch["spec"]["replicas"] = 1
        self._call(
            f"patch Deployment {name}",
            self._apps.patch_namespaced_deployment,
            name,
            self.namespace,
            patch,
            _content_type=STRATEGIC_MERGE,
        )
        self._wait_for_rollout(track, timeout_s)

    def retire(self, track: Track) -> None:
        """Put the track back at rest: 0 replicas, model version ``none``, no artifact.

        ``served()`` then reports the track as serving nothing. Idempotent: retiring a retired
        track changes nothing. The route is not touched: move its traffic off the track first.

        Raises:
            ConfigError: when the Deployment is missing or access is denied.
            DeployError: naming the Deployment when the API server refuses or fails the patch.
        """
        name = deployment_name(track)
        labels = {VERSION_LABEL: NO_VERSION}
        patch: dict[str, Any] = {
            "metadata": {"labels": labels},
            "spec": {
                # At 0 replicas the HPA stands aside (it never scales a target up from 0).
                "replicas": 0,
                "template": {
                    # null deletes the key in a merge patch
                    "metadata": {"labels": labels, "annotations": {ARTIFACT_ANNOTATION: None}}
                },
            },
        }
        self._call(
            f"retire (scale to 0) Deployment {name}",
            self._apps.patch_namespaced_deployment,
            name,
            self.namespace,
            patch,
            _content_type=STRATEGIC_MERGE,
        )

    def track_url(self, track: Track) -> str:
        """Return the track's Service URL inside the cluster (not through the route)."""
        return f"http://{deployment_name(track)}.{self.namespace}.svc.cluster.local:{SERVICE_PORT}"

    # --- Router ----------------------------------------------------------------------------------
    def weights(self) -> Weights:
        """Return the route's split in percent of the two tracks' backend weights.

        Raises:
            DeployError: when the route does not reference both tracks' Services or sends them
                no traffic.
        """
        backends = self._backend_weights(self._route())
        total = sum(backends.values())
        if total <= 0:
            raise DeployError(
                f"HTTPRoute {self.route}: both backends have weight 0 (the route answers 503); "
                "expected a positive weight on at least one track"
            )
        stable = round(100 * backends["stable"] / total)
        return Weights(stable=stable, canary=100 - stable)

    def set_weights(self, weights: Weights) -> None:
        """Patch the route's backend weights to ``weights`` (a JSON patch, tested by name).

        Raises:
            DeployError: when the route's backends changed meanwhile or the patch is refused.
        """
        route = self._route()
        self._backend_weights(route)  # both tracks' backends are there
        names = [ref.get("name") for ref in route["spec"]["rules"][0]["backendRefs"]]
        patch: list[dict[str, Any]] = []
        for track in TRACKS:
            index = names.index(deployment_name(track))
            path = f"/spec/rules/0/backendRefs/{index}"
            patch.append({"op": "test", "path": f"{path}/name", "value": deployment_name(track)})
            patch.append({"op": "add", "path": f"{path}/weight", "value": getattr(weights, track)})
        self._call(
            f"patch HTTPRoute {self.route}",
            self._custom.patch_namespaced_custom_object,
            ROUTE_GROUP,
            ROUTE_VERSION,
            self.namespace,
            ROUTE_PLURAL,
            self.route,
            patch,
            _content_type=JSON_PATCH,
        )

    def endpoint(self) -> str:
        """Return ``http://<hostname>`` of the route, else ``gateway/<name>`` of its Gateway."""
        spec = self._route()["spec"]
        hostnames = spec.get("hostnames") or []
        if hostnames:
            return f"http://{hostnames[0]}"
        parents = spec.get("parentRefs") or [{}]
        return f"gateway/{parents[0].get('name', '?')}"

    # --- internals -------------------------------------------------------------------------------
    def _deployment(self, track: Track) -> Any:
        name = deployment_name(track)
        return self._call(
            f"read Deployment {name}", self._apps.read_namespaced_deployment, name, self.namespace
        )

    def _route(self) -> dict[str, Any]:
        route: dict[str, Any] = self._call(
            f"read HTTPRoute {self.route}",
            self._custom.get_namespaced_custom_object,
            ROUTE_GROUP,
            ROUTE_VERSION,
            self.namespace,
            ROUTE_PLURAL,
            self.route,
        )
        return route

    def _backend_weights(self, route: dict[str, Any]) -> dict[Track, int]:
        rules = route.get("spec", {}).get("rules") or [{}]
        # Gateway API: a backendRef without a weight has weight 1.
        found = {
            ref.get("name"): int(ref.get("weight", 1)) for ref in rules[0].get("backendRefs", [])
        }
        missing = [deployment_name(t) for t in TRACKS if deployment_name(t) not in found]
        if missing:
            raise ConfigError(
                f"HTTPRoute {self.namespace}/{self.route}: spec.rules[0].backendRefs lacks "
                f"{', '.join(missing)}; expected both track Services (apply k8s/serving)"
            )
        return {track: found[deployment_name(track)] for track in TRACKS}

    def _wait_for_rollout(self, track: Track, timeout_s: float) -> None:
        """Wait as ``kubectl rollout status`` does; raise naming what is still not done."""
        deadline = time.monotonic() + timeout_s
        while True:
            waiting = rollout_waiting_on(self._deployment(track))
            if waiting is None:
                return
            if time.monotonic() >= deadline:
                raise DeployError(
                    f"Deployment {self.namespace}/{deployment_name(track)} not rolled out within "
                    f"{timeout_s:g}s: {waiting}; the route was left as it was"
                )
            time.sleep(self.poll_interval_s)

    def _call(self, what: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return method(*args, _request_timeout=REQUEST_TIMEOUT_S, **kwargs)
        except ApiException as err:
            where = f"{what} in namespace {self.namespace}"
            if err.status in (401, 403, 404):
                raise ConfigError(
                    f"{where}: {err.status} {err.reason}: {status_message(err)}; expected "
                    "k8s/serving applied and the step's RBAC (get/patch on the Deployments and "
                    "the HTTPRoute)"
                ) from err
            raise DeployError(f"{where}: {err.status} {err.reason}: {status_message(err)}") from err
        except HTTPError as err:
            raise DeployError(f"{what}: the Kubernetes API server did not answer: {err}") from err


def rollout_waiting_on(deployment: Any) -> str | None:
    """Return what a Deployment's rollout still waits on, None when it is complete.

    The checks of ``kubectl rollout status``: the controller has seen the latest spec, every
    replica runs the new template and is available, no old replica is left.

    Raises:
        DeployError: when the Deployment's ``Progressing`` condition says its progress deadline
            was exceeded (the rollout failed; waiting longer cannot help).
    """
    spec, status = deployment.spec, deployment.status
    name = deployment.metadata.name
    conditions = list(status.conditions or []) if status else []
    for condition in conditions:
        if condition.type == "Progressing" and condition.reason == "ProgressDeadlineExceeded":
            raise DeployError(
                f"Deployment {name}: Progressing={condition.status} "
                f"(ProgressDeadlineExceeded: {condition.message}); the route was left as it was"
            )
    wanted = spec.replicas if spec.replicas is not None else 1
    observed = (status.observed_generation or 0) if status else 0
    if observed < (deployment.metadata.generation or 0):
        return "the controller has not observed the new spec yet (observedGeneration < generation)"
    updated = (status.updated_replicas or 0) if status else 0
    total = (status.replicas or 0) if status else 0
    available = (status.available_replicas or 0) if status else 0
    failing = "; ".join(
        f"{c.type}={c.status} ({c.reason}: {c.message})" for c in conditions if c.status != "True"
    )
    suffix = f"; {failing}" if failing else ""
    if updated < wanted:
        return f"{updated} of {wanted} replicas updated{suffix}"
    if total > updated:
        return f"{total - updated} old replicas pending termination{suffix}"
    if available < updated:
        return f"{available} of {updated} updated replicas available{suffix}"
    return None


def _release_of(deployment: Any) -> Release | None:
    labels = deployment.metadata.labels or {}
    version = labels.get(VERSION_LABEL, NO_VERSION)
    if version in ("", NO_VERSION):
        return None
    return Release(
        model_name=labels.get(MODEL_LABEL, ""),
        version=version,
        artifact=deployment.spec.template.spec.containers[0].image or "",
    )


def status_message(err: Any) -> str:
    """Return the ``message`` of an ``ApiException``'s Status body, else the raw body."""
    import json

    try:
        return str(json.loads(err.body).get("message", err.body))
    except (TypeError, ValueError):
        return str(err.body)
