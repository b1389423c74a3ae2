"""Loopline's exception hierarchy.

Every error a user can act on derives from :class:`LooplineError`. Each carries the offending
value and the expected form in its message; the CLI layer prints the message (no traceback) and
exits with the error's ``exit_code`` so Argo marks the node failed.
"""

from __future__ import annotations


class LooplineError(Exception):
    """Base class: an error whose message tells the user what to fix."""

    exit_code: int = 2


class ConfigError(LooplineError):
    """A setting or flag has a value outside its expected form."""


class DataError(LooplineError):
    """An input file or data set is missing, unreadable or malformed."""


class RegistryError(LooplineError):
    """The MLflow tracking server or model registry refused or lacks something."""


class GateRejected(LooplineError):
    """A quality gate decided against promotion; the message carries its reasons."""

    exit_code = 3


class BuildError(LooplineError):
    """Packaging a model (bento build, export, image build) failed."""


class WorkflowError(LooplineError):
    """A workflow file uses something the local runner cannot run, or a workflow run failed."""


class StoreError(LooplineError):
    """The artifact store (a local directory or S3) lacks an object or refused an operation."""
