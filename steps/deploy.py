"""Deploy step: a registered version goes out as the canary beside the stable one.

``run`` resolves the version (number or alias), reads what each track serves and decides
(:func:`decide`, pure):

- nothing on stable yet: the version goes straight to stable at 100 % (first deployment);
- the version already is the canary with traffic, or stable with no canary in progress: nothing
  changes (running the step twice is safe);
- another version's canary is in progress: refused (:class:`~steps.core.errors.DeployConflict`,
  naming it) until it is promoted or rolled back;
- otherwise: the version rolls out on the canary track (deadline ``deploy.rollout_timeout_s``),
  is smoke-tested directly at the track's URL (its ``/metadata`` names the version; the model's
  logged input example scores as the MLflow model does), and only then the route moves to the
  first traffic step (stable 90 / canary 10 by default, ``deploy.traffic_steps``).

Then the MLflow model version records what went where (``deploy.*`` tags, :mod:`steps.core.names`).
A first deployment also makes the version ``champion`` (what production serves); after that the
champion moves only when a canary reaches 100 % (``steps/promote.py``).
The platform is ``LOOPLINE_PLATFORM``: ``kubernetes`` deploys the containerize step's image
(``--image-ref``), ``local`` the build step's bento archive (``--archive-uri``) on the local
stand-in (``loopline stack``).

CLI: ``python -m steps.deploy --model-version V | --alias A --archive-uri URI --image-ref REF
--out-dir DIR``; outputs ``track``, ``canary_weight``, ``endpoint``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import numpy as np
import typer
from pydantic import BaseModel, ConfigDict

from serving.model import MODEL_FILES
from serving.model import ModelKind as ServingKind
from steps.core import names
from steps.core.cli_support import console, new_app, reports_errors
from steps.core.errors import (
    ConfigError,
    DeployConflict,
    DeployError,
    RegistryError,
    ServabilityError,
)
from steps.core.outputs import write_outputs, write_result
from steps.core.settings import DeploySettings, Settings, load_settings
from steps.io import tracking
from steps.io.registry import Registry
from steps.ml.servability import compare_scores, example_scores
from steps.platform.base import Release, Served, Track, Weights
from steps.platform.target import Platform, platform_for

Action = Literal["first_deploy", "unchanged", "canary", "refuse"]
SMOKE_TIMEOUT_S = 60.0


class DeployDecision(BaseModel):
    """What to do with a version given what is served, and why."""

    model_config = ConfigDict(frozen=True)

    action: Action
    track: Track
    """Where the version is (unchanged) or goes."""
    weights: Weights
    """The route's split once the action is done."""
    reason: str


class SmokeReport(BaseModel):
    """The direct check of a freshly rolled-out track."""

    url: str
    bento_tag: str | None
    rows_compared: int
    max_abs_diff: float


class DeployResult(BaseModel):
    """What the deploy step decided and did."""

    model_name: str
    model_version: str
    platform: str
    decision: DeployDecision
    artifact: str
    endpoint: str
    smoke: SmokeReport | None
    seconds: float


def decide(served: Served, version: str, first_step: int) -> DeployDecision:
    """Decide what deploying ``version`` does, given what each track serves now.

    A canary is in progress when the canary track serves a version other than stable's (at any
    weight: a canary whose smoke test failed still waits to be rolled back). Deploying that same
    version again resumes it.

    Returns:
        The decision; ``refuse`` names the version in progress and what to do.
    """
    stable, canary, weights = served.stable, served.canary, served.weights
    if canary is not None and canary.version == version and weights.canary > 0:
        reason = f"v{version} already is the canary at {weights.canary}%: nothing to change"
        return DeployDecision(action="unchanged", track="canary", weights=weights, reason=reason)
    in_progress = None
    if canary is not None and (stable is None or canary.version != stable.version):
        in_progress = canary.version
    if stable is not None and stable.version == version and in_progress is None:
        reason = f"v{version} already is stable with no canary in progress: nothing to change"
        return DeployDecision(action="unchanged", track="stable", weights=weights, reason=reason)
    if in_progress is not None and in_progress != version:
        reason = (
            f"v{in_progress} is in progress as the canary ({weights.canary}% of traffic); promote "
            f"or roll it back before deploying v{version}"
        )
        return DeployDecision(action="refuse", track="canary", weights=weights, reason=reason)
    if stable is None:
        reason = f"nothing is served yet: v{version} goes straight to stable at 100%"
        return DeployDecision(
            action="first_deploy", track="stable", weights=Weights.canary_at(0), reason=reason
        )
    reason = f"v{stable.version} stays stable; v{version} takes {first_step}% as the canary"
    return DeployDecision(
        action="canary", track="canary", weights=Weights.canary_at(first_step), reason=reason
    )


def deploy(
    platform: Platform,
    release: Release,
    policy: DeploySettings,
    smoke_test: Callable[[str], SmokeReport],
) -> tuple[DeployDecision, SmokeReport | None]:
    """Act on :func:`decide`: roll out, smoke-test the track directly, then move the route.

    The route is set only after the rollout is ready and the smoke test passed.

    Returns:
        The decision and the smoke test's report (None when nothing changed).

    Raises:
        DeployConflict: when another version's canary is in progress.
        DeployError: when the rollout or the smoke test fails; the route is left as it was.
    """
    decision = decide(platform.served(), release.version, policy.traffic_steps[0])
    if decision.action == "refuse":
        raise DeployConflict(decision.reason)
    if decision.action == "unchanged":
        return decision, None
    platform.roll_out(decision.track, release, policy.rollout_timeout_s)
    report = smoke_test(platform.track_url(decision.track))
    platform.set_weights(decision.weights)
    return decision, report


def release_artifact(settings: Settings, archive_uri: str | None, image_ref: str | None) -> str:
    """Return what serves the version on ``settings.platform``: an image or a bento archive.

    Raises:
        ConfigError: when the platform's artifact was not given.
    """
    if settings.platform == "kubernetes":
        if not image_ref or image_ref == "none":
            raise ConfigError(
                f"LOOPLINE_PLATFORM=kubernetes deploys an image: expected --image-ref (the "
                f"containerize step's image_ref, name@sha256:...), got {image_ref!r}"
            )
        return image_ref
    if not archive_uri:
        raise ConfigError(
            "LOOPLINE_PLATFORM=local serves a bento archive: expected --archive-uri (the build "
            "step's archive_uri)"
        )
    return archive_uri


def smoke_test(
    url: str,
    release: Release,
    rows: list[dict[str, Any]],
    expected: np.ndarray,
    kind: ServingKind,
) -> SmokeReport:
    """Check a track directly: ``/metadata`` names the release's version, and ``rows`` posted
    to ``/predict_batch`` score ``expected`` within :data:`steps.ml.servability.MAX_ABS_DIFF`.

    Raises:
        DeployError: naming the URL and what differs (or the failed request).
    """
    import httpx

    what = f"smoke test of {release.model_name} v{release.version} at {url}"
    try:
        with httpx.Client(base_url=url, timeout=SMOKE_TIMEOUT_S) as http:
            metadata = _answer(what, http.post("/metadata", json={}))
            served_as = (metadata.get("model_name"), str(metadata.get("model_version")))
            if served_as != (release.model_name, release.version):
                raise DeployError(
                    f"{what}: /metadata names {served_as[0]} v{served_as[1]}, expected "
                    f"{release.model_name} v{release.version}; the route was left as it was"
                )
            answers = _answer(what, http.post("/predict_batch", json=rows))
    except httpx.HTTPError as err:
        raise DeployError(f"{what}: {type(err).__name__}: {err}") from err
    served = np.asarray([answer["probability"] for answer in answers], dtype=np.float64)
    try:
        diff = compare_scores(kind, MODEL_FILES[kind], expected, served)
    except ServabilityError as err:
        raise DeployError(f"{what}: {err}; the route was left as it was") from err
    bento_tag = metadata.get("bento_tag")
    return SmokeReport(
        url=url,
        bento_tag=str(bento_tag) if bento_tag else None,
        rows_compared=len(expected),
        max_abs_diff=diff,
    )


def _answer(what: str, response: Any) -> Any:
    if response.status_code != 200:
        raise DeployError(
            f"{what}: {response.request.method} {response.request.url.path} answered "
            f"{response.status_code}: {response.text[:300]}; the route was left as it was"
        )
    return response.json()


def run(
    settings: Settings,
    version: str | None = None,
    alias: str | None = None,
    archive_uri: str | None = None,
    image_ref: str | None = None,
    pipeline_run: str = "",
    platform: Platform | None = None,
) -> DeployResult:
    """Deploy a registered version on ``settings.platform`` (see the module docstring).

    Raises:
        ConfigError: for a bad version/alias choice or a missing artifact flag.
        RegistryError: when the version, its input example or its model kind cannot be read.
        DeployConflict: when another version's canary is in progress.
        DeployError: when the rollout or smoke test fails; the route is left as it was.
    """
    started = time.perf_counter()
    artifact = release_artifact(settings, archive_uri, image_ref)
    tracking.connect(settings)
    model_version = Registry(settings.model_name).resolve(version, alias)
    number = str(model_version.version)
    release = Release(model_name=settings.model_name, version=number, artifact=artifact)
    kind = _model_kind(model_version)
    target = platform if platform is not None else platform_for(settings)

    def check(url: str) -> SmokeReport:
        rows, expected = example_scores(f"models:/{settings.model_name}/{number}")
        return smoke_test(url, release, rows, expected, kind)

    decision, smoke = deploy(target, release, settings.deploy, check)
    bento_tag = smoke.bento_tag if smoke is not None else None
    if decision.action != "unchanged":
        _record(settings.model_name, number, decision, artifact, bento_tag, pipeline_run, image_ref)
    if decision.action == "first_deploy":
        Registry(settings.model_name).promote_champion(number)
    return DeployResult(
        model_name=settings.model_name,
        model_version=number,
        platform=settings.platform,
        decision=decision,
        artifact=artifact,
        endpoint=target.endpoint(),
        smoke=smoke,
        seconds=round(time.perf_counter() - started, 3),
    )


def _model_kind(model_version: Any) -> ServingKind:
    kind = model_version.tags.get("model_kind")
    if kind not in get_args(ServingKind):
        raise RegistryError(
            f"{model_version.name} v{model_version.version} has model_kind tag {kind!r}; "
            f"expected one of {get_args(ServingKind)} (a version registered by steps.register)"
        )
    found: ServingKind = kind
    return found


def _record(
    model_name: str,
    version: str,
    decision: DeployDecision,
    artifact: str,
    bento_tag: str | None,
    pipeline_run: str,
    image_ref: str | None,
) -> None:
    """Tag the model version with what was deployed where, and its image (MLflow's registry)."""
    weights = decision.weights
    tags = {
        names.DEPLOY_TRACK_TAG: decision.track,
        names.DEPLOY_ARTIFACT_TAG: artifact,
        names.DEPLOY_BENTO_TAG: bento_tag or "",
        names.DEPLOY_WEIGHTS_TAG: f"stable={weights.stable},canary={weights.canary}",
        names.DEPLOY_WORKFLOW_TAG: pipeline_run,
        names.DEPLOY_TIME_TAG: datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if image_ref and image_ref != "none":
        tags[names.IMAGE_REF_TAG] = image_ref
    Registry(model_name).set_version_tags(version, tags)


app = new_app("Deploy a registered model version as the canary (or first stable).")


@app.command()
@reports_errors
def main(
    out_dir: Annotated[Path, typer.Option(help="directory for output parameter files")],
    model_version: Annotated[str | None, typer.Option(help="registry version number")] = None,
    alias: Annotated[str | None, typer.Option(help="registry alias, e.g. challenger")] = None,
    archive_uri: Annotated[
        str | None, typer.Option(help="bento archive (build step), served on the local platform")
    ] = None,
    image_ref: Annotated[
        str | None, typer.Option(help="image name@digest (containerize step), on kubernetes")
    ] = None,
    pipeline_run: Annotated[str, typer.Option(help="workflow name, recorded on the version")] = "",
    model_name: Annotated[str | None, typer.Option(help="registered model name")] = None,
) -> None:
    """Deploy a version as the canary (first deployment: stable); write track, canary_weight,
    endpoint."""
    settings = load_settings(model_name=model_name)
    result = run(settings, model_version, alias, archive_uri, image_ref, pipeline_run)
    decision = result.decision
    write_outputs(
        out_dir,
        "deploy",
        {
            "track": decision.track,
            "canary_weight": str(decision.weights.canary),
            "endpoint": result.endpoint,
        },
    )
    write_result(out_dir, result)
    what = f"{result.model_name} v{result.model_version}"
    console.print(f"{what} on {result.platform}: {decision.reason}")
    if decision.action == "first_deploy":
        console.print(f"first deployment: {what} is now champion")
    if result.smoke is not None:
        smoke = result.smoke
        console.print(
            f"rolled out on {decision.track} ({result.artifact}); smoke test at {smoke.url}: "
            f"{smoke.rows_compared} rows, max abs difference {smoke.max_abs_diff:.1g} from MLflow"
        )
        console.print(
            f"route {result.endpoint}: stable {decision.weights.stable}% / "
            f"canary {decision.weights.canary}%"
        )


if __name__ == "__main__":
    app()
