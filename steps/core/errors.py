"""Loopline's exception hierarchy and the exit codes every command line shares.

Every error a user can act on derives from :class:`LooplineError`. Each carries the offending
value and the expected form in its message; the CLI layer prints the message (no traceback) and
exits with the error's ``exit_code`` so Argo marks the node failed. The exit code says whether
running the same command again can help, and the workflows' ``retryStrategy.expression``
(``pipelines/templates.py``) retries on that alone:

=====  ===========================  ======================================================  =====
exit   meaning                      raised as                                               retry
=====  ===========================  ======================================================  =====
0      done                         (a rejected challenger under ``--no-fail-on-reject``)   -
1      a service failed or could    :class:`ServiceError`, :class:`StoreError`,             yes
       not be reached               :class:`BuildError`, :class:`DeployError`; and any
                                    unexpected exception (a
                                    bug: exits 1 with its traceback, as Python does)
2      the input is wrong           :class:`ConfigError`, :class:`DataError`,               never
                                    :class:`RegistryError`, :class:`ServabilityError`,
                                    :class:`WorkflowError`; Typer's usage errors too
3      a quality gate said no       :class:`GateRejected`                                   never
4      a canary was rolled back     :class:`CanaryRolledBack`                               never
=====  ===========================  ======================================================  =====

Transient or not is decided per class, not per message. :class:`RegistryError` means "MLflow
answered, and lacks or refuses what was asked" (a missing run, version or alias), which the same
input meets again; when MLflow does not answer or fails, :func:`steps.io.tracking.mlflow_error`
makes it a :class:`ServiceError` instead (:func:`steps.io.tracking.connect` does so for every step).
:class:`StoreError` is retried: the artifact store reports an unreachable endpoint and a missing
object with the same class, and a lost connection must not fail a run, so a missing object costs
a few retries. :class:`BuildError` is retried: a build resolves packages and base images and
pushes over the network, and a deterministic build failure costs only its retries.
"""

from __future__ import annotations

EXIT_SERVICE_FAILED = 1
"""A service failed or was unreachable: running the same command again may succeed."""

EXIT_BAD_INPUT = 2
"""The input (a flag, setting, file, run, model) is wrong: retrying cannot help."""

EXIT_GATE_REJECTED = 3
"""A quality gate decided against promotion: retrying gives the same decision."""

EXIT_ROLLED_BACK = 4
"""A canary was rolled back (its analysis failed, stayed inconclusive, or was aborted): stable
serves as before; retrying would judge the same canary again."""

NOT_RETRIED_EXIT_CODES = (EXIT_BAD_INPUT, EXIT_GATE_REJECTED, EXIT_ROLLED_BACK)
"""Exit codes a workflow step is never retried on (``pipelines.templates.service_retry``)."""


class LooplineError(Exception):
    """Base class: an error whose message tells the user what to fix."""

    exit_code: int = EXIT_BAD_INPUT


class ConfigError(LooplineError):
    """A setting or flag has a value outside its expected form."""


class DataError(LooplineError):
    """An input file or data set is missing, unreadable or malformed."""


class RegistryError(LooplineError):
    """The MLflow tracking server or model registry lacks or refuses something asked of it."""


class ServiceError(LooplineError):
    """A service (MLflow, S3, a registry) could not be reached or failed: worth retrying."""

    exit_code = EXIT_SERVICE_FAILED


class GateRejected(LooplineError):
    """A quality gate decided against promotion; the message carries its reasons."""

    exit_code = EXIT_GATE_REJECTED


class BuildError(LooplineError):
    """Packaging a model (bento build, export, image build) failed; retried as transient."""

    exit_code = EXIT_SERVICE_FAILED


class ServabilityError(LooplineError):
    """A model cannot be served by any Loopline service image, or scores differently there."""


class WorkflowError(LooplineError):
    """A workflow file uses something the local runner cannot run, or a workflow run failed."""


class StoreError(LooplineError):
    """The artifact store (a local directory or S3) lacks an object, refused an operation or
    could not be reached; retried, as it cannot tell which (see the module docstring)."""

    exit_code = EXIT_SERVICE_FAILED


class DeployError(LooplineError):
    """A rollout did not become ready, a smoke test failed, or the platform refused a change;
    retried as transient (a node may be short of capacity). The route is left as it was."""

    exit_code = EXIT_SERVICE_FAILED


class DeployConflict(LooplineError):
    """Another version's canary is in progress: finish or roll it back first (exit 2)."""


class StackError(LooplineError):
    """A part of the local serving stand-in failed to start or stop; the message names it and
    ends with the tail of its log."""


class PromotionLocked(LooplineError):
    """Another promotion of the same service holds the lock; the message names its holder."""


class CanaryRolledBack(LooplineError):
    """The canary was rolled back; the message carries the reasons (exit 4, never retried)."""

    exit_code = EXIT_ROLLED_BACK
