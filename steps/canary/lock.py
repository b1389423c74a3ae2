"""The promotion lock: one canary promotion at a time per service.

A promotion moves the route's traffic and replaces what the tracks serve for many minutes; two at
once would fight over the same route. Each promotion holds a :class:`PromotionLock` for its whole
run (:func:`held`), renews it every analysis interval, and releases it at the end, however it ends.
A second promotion is refused with :class:`~steps.core.errors.PromotionLocked` (exit 2) naming the
holder, when it last renewed, and how to break a stale lock.

- On the local stand-in, :class:`FileLock`: ``flock`` on ``<state_dir>/stack/promotion.lock``. The
  kernel drops the lock when its holder exits, even on SIGKILL, so a crashed promotion never
  leaves it taken; the file's JSON content only says who holds it.
- On a cluster, :class:`LeaseLock`: the ``coordination.k8s.io/v1`` Lease ``loopline-promotion``
  in ``settings.deploy.namespace``, written with the ``resourceVersion`` it was read at, so of
  two racing writers the API server accepts one. A lease not renewed for ``leaseDurationSeconds``
  is stale: a new promotion takes it over (``leaseTransitions`` + 1).
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from steps.core.errors import DeployError, LooplineError, PromotionLocked
from steps.core.settings import Settings

LEASE_NAME = "loopline-promotion"
"""The Lease of the cluster's lock (k8s/serving/base/rbac.yaml grants get/update on it)."""
LOCK_FILE = "promotion.lock"
"""The local lock's file, in the stack's directory (``<state_dir>/stack/``)."""
REQUEST_TIMEOUT_S = 30.0
_CONFLICT_RETRIES = 3


@dataclass(frozen=True)
class Holder:
    """Who holds a promotion lock, since when, and when it last renewed (unix seconds)."""

    identity: str
    acquired_at: float
    renewed_at: float


class PromotionLock(Protocol):
    """One promotion at a time: acquire before the first change, renew each interval, release."""

    def acquire(self) -> None:
        """Take the lock; taking a lock this identity holds again renews it.

        Raises:
            PromotionLocked: naming the holder, how long ago it renewed, how to break a stale lock.
        """
        ...

    def renew(self) -> None:
        """Record that the holder is alive (every analysis interval).

        Raises:
            PromotionLocked: when this identity no longer holds the lock.
        """
        ...

    def release(self) -> None:
        """Let the lock go if this identity holds it; nothing when it is already gone."""
        ...

    def holder(self) -> Holder | None:
        """Who holds the lock now, None when it is free (a stale or crashed holder's is free)."""
        ...


def default_identity(version: str) -> str:
    """Return ``promote v<version> by <user>@<host> pid <pid>``: who to ask, where to stop it."""
    return f"promote v{version} by {getpass.getuser()}@{socket.gethostname()} pid {os.getpid()}"


@contextmanager
def held(lock: PromotionLock) -> Iterator[PromotionLock]:
    """Acquire ``lock``, yield it, release it however the block ends.

    When the block raises and the release fails too, the block's error is raised with a note
    about the lock (which then frees itself: at the holder's exit, or going stale).

    Raises:
        PromotionLocked: when another promotion holds the lock.
    """
    lock.acquire()
    try:
        yield lock
    except BaseException as err:
        try:
            lock.release()
        except LooplineError as release_error:
            err.add_note(f"the promotion lock was not released: {release_error}")
        raise
    lock.release()


def lock_for(settings: Settings, identity: str, api_client: Any = None) -> PromotionLock:
    """Return the platform's lock: a :class:`LeaseLock` on kubernetes, else a :class:`FileLock`.

    Args:
        settings: ``platform``, ``deploy.namespace``, ``canary.lock_ttl_s``, ``state_dir``.
        identity: who is promoting (:func:`default_identity`, or the workflow's name).
        api_client: a ``kubernetes.client.ApiClient``; by default the pod's or the kubeconfig's.

    Raises:
        ConfigError: on kubernetes, when no cluster configuration is found.
    """
    ttl_s = settings.canary.lock_ttl_s
    if settings.platform == "kubernetes":
        from steps.platform.kubernetes import load_api_client

        client = api_client if api_client is not None else load_api_client()
        return LeaseLock(client, settings.deploy.namespace, identity, ttl_s)
    from steps.platform.local.stack import LocalPlatform

    return FileLock(LocalPlatform(settings).paths.root / LOCK_FILE, identity, ttl_s)


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _described(holder: Holder, now: float) -> str:
    if holder.renewed_at <= 0:
        return repr(holder.identity)
    return (
        f"{holder.identity!r} (acquired {_duration(now - holder.acquired_at)} ago, "
        f"last renewed {_duration(now - holder.renewed_at)} ago)"
    )


# --- the local stand-in: flock on a file ----------------------------------------------------------
class FileLock:
    """``flock`` on ``<state_dir>/stack/promotion.lock``, the holder written into the file.

    The lock is the kernel's, on an open file description this object keeps until
    :meth:`release`: it dies with the process, so a file whose lock is free is free, whatever it
    says. The file is never deleted (a process could lock the deleted copy while another creates
    a new one: two holders); release empties it.
    """

    def __init__(self, path: Path, identity: str, ttl_s: float) -> None:
        """Bind to ``path``; nothing is opened yet.

        ``ttl_s`` is not needed for correctness here (the lock dies with its process); a holder
        not renewed for that long is called stuck in the refusal.
        """
        self.path = path
        self.identity = identity
        self.ttl_s = ttl_s
        self._fd: int | None = None
        self._acquired_at = 0.0

    def acquire(self) -> None:
        """Take the lock without waiting; see :meth:`PromotionLock.acquire`.

        Raises:
            PromotionLocked: naming the holder recorded in the file.
        """
        if self._fd is not None:
            self.renew()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if not _try_flock(fd, fcntl.LOCK_EX):
                raise PromotionLocked(self._refusal(_read_holder(fd)))
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._acquired_at = time.time()
        self._write(self._acquired_at)

    def renew(self) -> None:
        """Write the current time as the holder's last renewal.

        Raises:
            PromotionLocked: when this object does not hold the lock (never taken, or released).
        """
        if self._fd is None:
            raise PromotionLocked(
                f"promotion lock {self.path}: {self.identity!r} does not hold it (released or "
                "never acquired); acquire it before renewing"
            )
        self._write(time.time())

    def release(self) -> None:
        """Empty the file and unlock it, if this object holds it."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def holder(self) -> Holder | None:
        """Return the holder recorded in the file while its lock is taken, else None."""
        if self._fd is not None:
            return _read_holder(self._fd)
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            if os.fstat(fd).st_size == 0:
                return None  # released cleanly: skip the probe below
            # A shared lock granted means no one holds the exclusive one: a crashed holder's file.
            if _try_flock(fd, fcntl.LOCK_SH, attempts=1):
                fcntl.flock(fd, fcntl.LOCK_UN)
                return None
            return _read_holder(fd)
        finally:
            os.close(fd)

    def _write(self, renewed_at: float) -> None:
        assert self._fd is not None
        holder = Holder(self.identity, self._acquired_at, renewed_at)
        data = (json.dumps(asdict(holder)) + "\n").encode()
        # Write, then cut: a reader sees the old or the new record, never an empty file.
        os.pwrite(self._fd, data, 0)
        os.ftruncate(self._fd, len(data))

    def _refusal(self, holder: Holder | None) -> str:
        now = time.time()
        if holder is None:
            who = "a process that recorded no holder (yet)"
            stuck = ""
        else:
            who = _described(holder, now)
            stuck = (
                f"; not renewed for over {self.ttl_s:g} s: it looks stuck"
                if now - holder.renewed_at > self.ttl_s
                else ""
            )
        return (
            f"another promotion holds the promotion lock {self.path}: {who}{stuck}. Wait for it "
            "to finish or roll it back. The lock is freed when that process exits, even when "
            "killed: if it is stuck, stop it (its pid is in its identity). Deleting the file "
            "also breaks the lock, at the risk of two promotions at once."
        )


def _try_flock(fd: int, operation: int, attempts: int = 3) -> bool:
    """``flock`` without blocking; True when granted.

    Refused attempts are retried a few ms apart: :meth:`FileLock.holder`'s probe holds a shared
    lock for an instant, which must not refuse a promotion.
    """
    for attempt in range(attempts):
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
        except BlockingIOError:
            if attempt + 1 < attempts:
                time.sleep(0.01)
            continue
        return True
    return False


def _read_holder(fd: int) -> Holder | None:
    """The holder recorded in the lock file, None when it records none."""
    text = os.pread(fd, 4096, 0).decode("utf-8", errors="replace")
    if not text.strip():
        return None
    try:
        # raw_decode: a reader racing a renewal may see the record followed by an old tail.
        record, _ = json.JSONDecoder().raw_decode(text)
        return Holder(
            identity=str(record["identity"]),
            acquired_at=float(record["acquired_at"]),
            renewed_at=float(record["renewed_at"]),
        )
    except (ValueError, KeyError, TypeError):
        return Holder(identity=f"unreadable record {text[:200]!r}", acquired_at=0, renewed_at=0)


# --- a cluster: a coordination.k8s.io/v1 Lease ----------------------------------------------------
class LeaseLock:
    """The Lease ``name`` in ``namespace``, read and written with optimistic concurrency."""

    def __init__(
        self,
        api_client: Any,
        namespace: str,
        identity: str,
        ttl_s: float,
        name: str = LEASE_NAME,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Bind to the Lease; nothing is read yet.

        Args:
            api_client: a ``kubernetes.client.ApiClient``.
            namespace: the serving namespace (``settings.deploy.namespace``).
            identity: written as ``holderIdentity``.
            ttl_s: ``leaseDurationSeconds``: not renewed for this long, the lease is stale.
            name: the Lease's name.
            clock: the current unix time (tests pin it).
        """
        from kubernetes import client

        self._api = client.CoordinationV1Api(api_client)
        self._models = client
        self.namespace = namespace
        self.identity = identity
        self.ttl_s = ttl_s
        self.name = name
        self._clock = clock

    def acquire(self) -> None:
        """Create the Lease, take it over when free or stale, or renew it when already ours.

        Raises:
            PromotionLocked: naming the live holder (also when another writer won a race).
            DeployError: when the API server fails, refuses or cannot be reached.
        """
        now = self._clock()
        lease = self._read()
        if lease is None:
            spec = self._spec(acquired_at=now, renewed_at=now, transitions=0)
            body = self._models.V1Lease(
                metadata=self._models.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=spec,
            )
            if self._write("create", self._api.create_namespaced_lease, self.namespace, body):
                return
            raise PromotionLocked(self._refusal(self._read(), now))
        spec = lease.spec or self._models.V1LeaseSpec()
        holder = _lease_holder(lease)
        if holder is not None and holder.identity == self.identity:
            acquired_at = holder.acquired_at
            transitions = spec.lease_transitions or 0
        elif holder is None or self._stale(lease, now):
            acquired_at = now
            transitions = (spec.lease_transitions or 0) + 1
        else:
            raise PromotionLocked(self._refusal(lease, now))
        lease.spec = self._spec(acquired_at=acquired_at, renewed_at=now, transitions=transitions)
        if not self._replace(lease):
            raise PromotionLocked(self._refusal(self._read(), now))

    def renew(self) -> None:
        """Write the current time as ``renewTime``.

        Raises:
            PromotionLocked: when the Lease is gone or held by another identity (taken over once
                stale), naming that holder.
            DeployError: when the API server fails, refuses or cannot be reached.
        """
        for _ in range(_CONFLICT_RETRIES):
            now = self._clock()
            lease = self._read()
            if lease is None or lease.spec is None or lease.spec.holder_identity != self.identity:
                raise PromotionLocked(self._lost(lease, now))
            lease.spec.renew_time = _micro_time(now)
            if lease.spec.acquire_time is not None:
                lease.spec.acquire_time = _micro_time(lease.spec.acquire_time.timestamp())
            if self._replace(lease):
                return
        raise DeployError(
            f"Lease {self.namespace}/{self.name}: renewal conflicted {_CONFLICT_RETRIES} times "
            "with other writers; retry"
        )

    def release(self) -> None:
        """Clear ``holderIdentity`` if this identity holds the Lease; nothing otherwise.

        Raises:
            DeployError: when the API server fails, refuses or cannot be reached.
        """
        for _ in range(_CONFLICT_RETRIES):
            lease = self._read()
            if lease is None or lease.spec is None or lease.spec.holder_identity != self.identity:
                return
            lease.spec = self._models.V1LeaseSpec(
                lease_duration_seconds=lease.spec.lease_duration_seconds,
                lease_transitions=lease.spec.lease_transitions,
            )
            if self._replace(lease):
                return
        raise DeployError(
            f"Lease {self.namespace}/{self.name}: release conflicted {_CONFLICT_RETRIES} times "
            "with other writers; it goes stale after its leaseDurationSeconds"
        )

    def holder(self) -> Holder | None:
        """Return the Lease's live holder; None when it is missing, released or stale.

        Raises:
            DeployError: when the API server fails, refuses or cannot be reached.
        """
        lease = self._read()
        if lease is None or self._stale(lease, self._clock()):
            return None
        return _lease_holder(lease)

    # --- internals -------------------------------------------------------------------------------
    def _spec(self, acquired_at: float, renewed_at: float, transitions: int) -> Any:
        return self._models.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=max(1, int(self.ttl_s)),
            acquire_time=_micro_time(acquired_at),
            renew_time=_micro_time(renewed_at),
            lease_transitions=transitions,
        )

    @staticmethod
    def _stale(lease: Any, now: float) -> bool:
        spec = lease.spec
        if spec is None or not spec.holder_identity:
            return True
        if spec.renew_time is None or spec.lease_duration_seconds is None:
            return True  # a holder that never renewed cannot be shown alive
        return bool(spec.renew_time.timestamp() + spec.lease_duration_seconds < now)

    def _read(self) -> Any | None:
        """The Lease, None when it does not exist."""
        try:
            return self._call("read", self._api.read_namespaced_lease, self.name, self.namespace)
        except _Missing:
            return None

    def _replace(self, lease: Any) -> bool:
        """Write ``lease`` at the resourceVersion it was read at; False when another won."""
        return self._write(
            "replace", self._api.replace_namespaced_lease, self.name, self.namespace, lease
        )

    def _write(self, what: str, method: Any, *args: Any) -> bool:
        """Create or replace; False on 409 (it exists, or changed since it was read)."""
        try:
            self._call(what, method, *args)
        except _Conflict:
            return False
        return True

    def _call(self, what: str, method: Any, *args: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        from steps.platform.kubernetes import status_message

        where = f"{what} Lease {self.name} in namespace {self.namespace}"
        try:
            return method(*args, _request_timeout=REQUEST_TIMEOUT_S)
        except ApiException as err:
            if err.status == 404:
                raise _Missing from err
            if err.status == 409:
                raise _Conflict from err
            hint = (
                "; expected the Role loopline-deployer (k8s/serving) to grant get, update and "
                "create on it"
                if err.status in (401, 403)
                else ""
            )
            raise DeployError(
                f"{where}: {err.status} {err.reason}: {status_message(err)}{hint}"
            ) from err
        except HTTPError as err:
            raise DeployError(f"{where}: the Kubernetes API server did not answer: {err}") from err

    def _refusal(self, lease: Any | None, now: float) -> str:
        holder = _lease_holder(lease) if lease is not None else None
        if holder is None or lease is None:
            who, stale = "another writer, just now", ""
        else:
            who = _described(holder, now)
            stale_in = holder.renewed_at + (lease.spec.lease_duration_seconds or 0) - now
            stale = (
                f" Unless renewed, it goes stale in {_duration(stale_in)}; the next promotion "
                "then takes it over."
            )
        return (
            f"another promotion holds the promotion lock, Lease {self.namespace}/{self.name}: "
            f"{who}. Wait for it to finish or roll it back.{stale} To break a lock whose holder "
            f"is gone: kubectl -n {self.namespace} delete lease {self.name}"
        )

    def _lost(self, lease: Any | None, now: float) -> str:
        holder = _lease_holder(lease) if lease is not None else None
        now_held = f"it is now held by {_described(holder, now)}" if holder else "it is gone"
        return (
            f"{self.identity!r} lost the promotion lock, Lease {self.namespace}/{self.name}: "
            f"{now_held} (not renewed within its leaseDurationSeconds?); stop this promotion"
        )


class _Missing(Exception):
    """The Lease does not exist (404)."""


class _Conflict(Exception):
    """Create: the Lease exists; replace: it changed since it was read (409)."""


def _micro_time(unix_s: float) -> datetime:
    """``unix_s`` as a datetime the client serialises as a valid ``MicroTime``.

    The API server parses MicroTime with exactly six fractional digits; the client writes
    ``datetime.isoformat()``, which leaves the fraction out when it is zero: never send one.
    """
    moment = datetime.fromtimestamp(unix_s, UTC)
    return moment if moment.microsecond else moment.replace(microsecond=1)


def _lease_holder(lease: Any) -> Holder | None:
    spec = lease.spec
    if spec is None or not spec.holder_identity:
        return None
    renewed = spec.renew_time.timestamp() if spec.renew_time else 0.0
    acquired = spec.acquire_time.timestamp() if spec.acquire_time else renewed
    return Holder(identity=spec.holder_identity, acquired_at=acquired, renewed_at=renewed)
