"""Tests of steps/canary/lock.py: the file lock across real processes, the Lease lock against the
fake API server (tests/fixtures/kube_api)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kubernetes import client

from steps.canary.lock import (
    LEASE_NAME,
    FileLock,
    Holder,
    LeaseLock,
    default_identity,
    held,
    lock_for,
)
from steps.core.errors import DeployError, PromotionLocked
from steps.core.settings import Settings
from tests.fixtures.kube_api import FakeKubeAPI

REPO = Path(__file__).resolve().parents[3]
NS = "loopline-serving"
LEASE_PATH = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"
ALICE = "promote v7 by alice@build-1 pid 4242"
BOB = "promote v8 by bob@laptop pid 77"
MICRO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")

# A holder in another process: acquires, says so, releases when told, exits at EOF.
HOLDER_PROCESS = """
import sys
from pathlib import Path
from steps.canary.lock import FileLock
lock = FileLock(Path(sys.argv[1]), sys.argv[2], 900.0)
lock.acquire()
print("locked", flush=True)
for line in sys.stdin:
    if line.strip() == "release":
        lock.release()
        print("released", flush=True)
"""


# --- FileLock: across processes ------------------------------------------------------------------
@pytest.fixture
def holder_process(tmp_path: Path) -> Iterator[Callable[[Path, str], subprocess.Popen[str]]]:
    """Start a process holding the file lock; every one started is stopped after the test."""
    started: list[subprocess.Popen[str]] = []

    def start(path: Path, identity: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", HOLDER_PROCESS, str(path), identity],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        started.append(process)
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "locked"
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


def test_a_second_process_is_refused_naming_the_first_holder(
    tmp_path: Path, holder_process: Callable[[Path, str], subprocess.Popen[str]]
) -> None:
    path = tmp_path / "stack" / "promotion.lock"
    holder_process(path, ALICE)
    ours = FileLock(path, BOB, ttl_s=900)

    with pytest.raises(PromotionLocked) as refused:
        ours.acquire()

    message = str(refused.value)
    assert repr(ALICE) in message
    assert re.search(r"last renewed \d+ s ago", message)
    assert "stop it" in message and str(path) in message  # how to break it
    assert refused.value.exit_code == 2
    holder = ours.holder()
    assert holder is not None and holder.identity == ALICE


def test_the_lock_is_free_once_its_holder_releases_it(
    tmp_path: Path, holder_process: Callable[[Path, str], subprocess.Popen[str]]
) -> None:
    path = tmp_path / "promotion.lock"
    other = holder_process(path, ALICE)
    ours = FileLock(path, BOB, ttl_s=900)
    with pytest.raises(PromotionLocked):
        ours.acquire()
    assert other.stdin is not None and other.stdout is not None

    other.stdin.write("release\n")
    other.stdin.flush()
    assert other.stdout.readline().strip() == "released"

    assert ours.holder() is None  # released: the file is emptied
    ours.acquire()
    holder = ours.holder()
    assert holder is not None and holder.identity == BOB
    assert json.loads(path.read_text())["identity"] == BOB
    assert other.poll() is None  # the other process lives on: its release, not its exit, freed it


def test_a_holder_killed_with_sigkill_leaves_the_lock_free(
    tmp_path: Path, holder_process: Callable[[Path, str], subprocess.Popen[str]]
) -> None:
    path = tmp_path / "promotion.lock"
    other = holder_process(path, ALICE)

    os.kill(other.pid, signal.SIGKILL)
    other.wait(timeout=10)

    assert json.loads(path.read_text())["identity"] == ALICE  # its record is left behind ...
    ours = FileLock(path, BOB, ttl_s=900)
    assert ours.holder() is None  # ... but a file whose flock is free is free
    ours.acquire()
    holder = ours.holder()
    assert holder is not None and holder.identity == BOB


# --- FileLock: in one process --------------------------------------------------------------------
def test_reacquire_and_renew_keep_the_acquisition_and_move_the_renewal(tmp_path: Path) -> None:
    lock = FileLock(tmp_path / "promotion.lock", ALICE, ttl_s=900)
    lock.acquire()
    first = lock.holder()
    assert first is not None
    time.sleep(0.02)

    lock.acquire()  # ours already: fine
    lock.renew()

    renewed = lock.holder()
    assert renewed is not None
    assert renewed.acquired_at == first.acquired_at
    assert renewed.renewed_at > first.renewed_at
    lock.release()


def test_two_lock_objects_in_one_process_exclude_each_other(tmp_path: Path) -> None:
    path = tmp_path / "promotion.lock"
    first, second = FileLock(path, ALICE, 900), FileLock(path, BOB, 900)
    first.acquire()

    with pytest.raises(PromotionLocked, match=re.escape(repr(ALICE))):
        second.acquire()

    first.release()
    second.acquire()
    assert first.holder() == second.holder()
    second.release()


def test_renew_without_holding_is_refused_and_release_is_a_no_op(tmp_path: Path) -> None:
    lock = FileLock(tmp_path / "promotion.lock", ALICE, ttl_s=900)

    lock.release()  # never acquired: nothing to do
    with pytest.raises(PromotionLocked, match="does not hold it"):
        lock.renew()

    assert lock.holder() is None


def test_a_holder_not_renewed_within_the_ttl_is_called_stuck(tmp_path: Path) -> None:
    path = tmp_path / "promotion.lock"
    stuck = FileLock(path, ALICE, ttl_s=0.01)
    stuck.acquire()
    time.sleep(0.05)

    with pytest.raises(PromotionLocked, match="looks stuck"):
        FileLock(path, BOB, ttl_s=0.01).acquire()
    stuck.release()


def test_held_releases_when_the_block_raises(tmp_path: Path) -> None:
    path = tmp_path / "promotion.lock"
    lock = FileLock(path, ALICE, ttl_s=900)

    with pytest.raises(RuntimeError, match="analysis failed"), held(lock):
        assert lock.holder() == Holder(ALICE, *_times(path))
        raise RuntimeError("analysis failed")

    assert lock.holder() is None
    with held(FileLock(path, BOB, ttl_s=900)) as other:
        holder = other.holder()
        assert holder is not None and holder.identity == BOB


def _times(path: Path) -> tuple[float, float]:
    record = json.loads(path.read_text())
    return record["acquired_at"], record["renewed_at"]


# --- LeaseLock against the fake API server -------------------------------------------------------
def _api(kube_api: FakeKubeAPI) -> client.ApiClient:
    return client.ApiClient(client.Configuration(host=kube_api.url))


def _lease_lock(kube_api: FakeKubeAPI, identity: str, **kwargs: object) -> LeaseLock:
    return LeaseLock(_api(kube_api), NS, identity, ttl_s=900, **kwargs)  # type: ignore[arg-type]


def _spec(kube_api: FakeKubeAPI) -> dict[str, object]:
    spec: dict[str, object] = kube_api.get("leases", NS, LEASE_NAME)["spec"]
    return spec


def test_acquire_creates_the_lease_with_our_identity(kube_api: FakeKubeAPI) -> None:
    _lease_lock(kube_api, ALICE).acquire()

    spec = _spec(kube_api)
    assert spec["holderIdentity"] == ALICE
    assert spec["leaseDurationSeconds"] == 900
    assert spec["leaseTransitions"] == 0
    assert MICRO_TIME.match(str(spec["renewTime"])) and MICRO_TIME.match(str(spec["acquireTime"]))
    assert [r[:2] for r in kube_api.requests] == [
        ("GET", f"{LEASE_PATH}/{LEASE_NAME}"),
        ("POST", LEASE_PATH),
    ]


def test_a_second_identity_is_refused_naming_the_first(kube_api: FakeKubeAPI) -> None:
    _lease_lock(kube_api, ALICE).acquire()
    before = kube_api.get("leases", NS, LEASE_NAME)

    with pytest.raises(PromotionLocked) as refused:
        _lease_lock(kube_api, BOB).acquire()

    message = str(refused.value)
    assert repr(ALICE) in message and f"Lease {NS}/{LEASE_NAME}" in message
    assert re.search(r"last renewed \d+ s ago", message)
    assert re.search(r"goes stale in 1\d min", message)
    assert f"kubectl -n {NS} delete lease {LEASE_NAME}" in message
    assert kube_api.get("leases", NS, LEASE_NAME) == before
    holder = _lease_lock(kube_api, BOB).holder()
    assert holder is not None and holder.identity == ALICE


def test_reacquiring_our_own_lease_renews_it(kube_api: FakeKubeAPI) -> None:
    clock = iter([1_800_000_000.5, 1_800_000_030.5])
    lock = _lease_lock(kube_api, ALICE, clock=lambda: next(clock))
    lock.acquire()

    lock.acquire()

    spec = _spec(kube_api)
    assert spec["holderIdentity"] == ALICE
    assert spec["acquireTime"] == "2027-01-15T08:00:00.500000Z"
    assert spec["renewTime"] == "2027-01-15T08:00:30.500000Z"
    assert spec["leaseTransitions"] == 0


def test_renew_updates_renew_time_and_keeps_acquire_time(kube_api: FakeKubeAPI) -> None:
    clock = iter([1_800_000_000.25, 1_800_000_300.75, 1_800_000_301.0])
    lock = _lease_lock(kube_api, ALICE, clock=lambda: next(clock))
    lock.acquire()
    version = kube_api.get("leases", NS, LEASE_NAME)["metadata"]["resourceVersion"]

    lock.renew()

    lease = kube_api.get("leases", NS, LEASE_NAME)
    assert lease["spec"]["renewTime"] == "2027-01-15T08:05:00.750000Z"
    assert lease["spec"]["acquireTime"] == "2027-01-15T08:00:00.250000Z"
    assert int(lease["metadata"]["resourceVersion"]) > int(version)
    holder = lock.holder()
    assert holder == Holder(ALICE, acquired_at=1_800_000_000.25, renewed_at=1_800_000_300.75)


def test_a_stale_lease_is_taken_over_with_transitions_incremented(kube_api: FakeKubeAPI) -> None:
    now = time.time()
    kube_api.add_lease(NS, LEASE_NAME, ALICE, renewed_at=now - 1000, duration_s=900, transitions=4)
    bob = _lease_lock(kube_api, BOB)
    assert bob.holder() is None  # stale: held by no one alive

    bob.acquire()

    spec = _spec(kube_api)
    assert spec["holderIdentity"] == BOB
    assert spec["leaseTransitions"] == 5
    holder = bob.holder()
    assert holder is not None and holder.acquired_at > now - 5


def test_a_live_lease_just_inside_its_duration_is_not_taken_over(kube_api: FakeKubeAPI) -> None:
    kube_api.add_lease(NS, LEASE_NAME, ALICE, renewed_at=time.time() - 880, duration_s=900)

    with pytest.raises(PromotionLocked, match=re.escape(repr(ALICE))):
        _lease_lock(kube_api, BOB).acquire()

    assert _spec(kube_api)["holderIdentity"] == ALICE


def test_release_clears_the_holder_and_the_next_acquire_counts_a_transition(
    kube_api: FakeKubeAPI,
) -> None:
    alice = _lease_lock(kube_api, ALICE)
    alice.acquire()

    alice.release()

    assert "holderIdentity" not in _spec(kube_api)
    assert alice.holder() is None
    alice.release()  # not ours any more: nothing to do, no error
    bob = _lease_lock(kube_api, BOB)
    bob.acquire()
    assert _spec(kube_api)["holderIdentity"] == BOB
    assert _spec(kube_api)["leaseTransitions"] == 1


def test_release_leaves_another_holders_lease_and_a_missing_one_alone(
    kube_api: FakeKubeAPI,
) -> None:
    bob = _lease_lock(kube_api, BOB)
    bob.release()  # no Lease at all: no error, nothing written
    _lease_lock(kube_api, ALICE).acquire()
    before = kube_api.get("leases", NS, LEASE_NAME)

    bob.release()

    assert kube_api.get("leases", NS, LEASE_NAME) == before
    assert [r[0] for r in kube_api.requests].count("PUT") == 0


def test_a_concurrent_takeover_is_refused_naming_the_winner(kube_api: FakeKubeAPI) -> None:
    kube_api.add_lease(NS, LEASE_NAME, ALICE, renewed_at=time.time() - 1000, duration_s=900)
    winner = "promote v9 by carol@ci pid 9"

    def carol_writes_first(method: str, path: str) -> None:
        if method == "PUT":  # between our read and our write
            kube_api.before_request = None
            kube_api.add_lease(NS, LEASE_NAME, winner, renewed_at=time.time(), transitions=1)

    kube_api.before_request = carol_writes_first

    with pytest.raises(PromotionLocked, match=re.escape(repr(winner))):
        _lease_lock(kube_api, BOB).acquire()

    assert _spec(kube_api)["holderIdentity"] == winner
    assert [r[0] for r in kube_api.requests] == ["GET", "PUT", "GET"]  # PUT refused with 409


def test_a_concurrent_create_is_refused_naming_the_winner(kube_api: FakeKubeAPI) -> None:
    def alice_creates_first(method: str, path: str) -> None:
        if method == "POST":
            kube_api.before_request = None
            kube_api.add_lease(NS, LEASE_NAME, ALICE, renewed_at=time.time())

    kube_api.before_request = alice_creates_first

    with pytest.raises(PromotionLocked, match=re.escape(repr(ALICE))):
        _lease_lock(kube_api, BOB).acquire()

    assert _spec(kube_api)["holderIdentity"] == ALICE


def test_the_fake_refuses_a_replace_at_a_stale_resource_version(kube_api: FakeKubeAPI) -> None:
    kube_api.add_lease(NS, LEASE_NAME, ALICE, renewed_at=time.time())
    api = client.CoordinationV1Api(_api(kube_api))
    lease = api.read_namespaced_lease(LEASE_NAME, NS)
    kube_api.add_lease(NS, LEASE_NAME, BOB, renewed_at=time.time())  # another writer

    with pytest.raises(client.ApiException) as raised:
        api.replace_namespaced_lease(LEASE_NAME, NS, lease)

    assert raised.value.status == 409
    assert "the object has been modified" in str(raised.value.body)


def test_renew_after_a_takeover_says_the_lock_was_lost(kube_api: FakeKubeAPI) -> None:
    alice = _lease_lock(kube_api, ALICE)
    alice.acquire()
    kube_api.add_lease(NS, LEASE_NAME, BOB, renewed_at=time.time(), transitions=1)

    with pytest.raises(PromotionLocked) as lost:
        alice.renew()

    assert "lost the promotion lock" in str(lost.value) and repr(BOB) in str(lost.value)
    assert _spec(kube_api)["holderIdentity"] == BOB


def test_times_on_a_whole_second_are_still_valid_micro_times(kube_api: FakeKubeAPI) -> None:
    # The client writes datetime.isoformat(), which drops a zero fraction: the server refuses it.
    raw = client.CoordinationV1Api(_api(kube_api))
    whole = client.V1LeaseSpec(holder_identity=BOB, renew_time=datetime(2027, 1, 15, tzinfo=UTC))
    with pytest.raises(client.ApiException) as raised:
        raw.create_namespaced_lease(
            NS, client.V1Lease(metadata=client.V1ObjectMeta(name="raw"), spec=whole)
        )
    assert raised.value.status == 400 and "2006-01-02T15:04:05.000000Z07:00" in str(
        raised.value.body
    )

    _lease_lock(kube_api, ALICE, clock=lambda: 1_800_000_000.0).acquire()

    assert _spec(kube_api)["renewTime"] == "2027-01-15T08:00:00.000001Z"


def test_an_unreachable_api_server_is_a_deploy_error_naming_the_lease() -> None:
    configuration = client.Configuration(host="http://127.0.0.1:9")  # discard: nothing listens
    configuration.retries = False
    lock = LeaseLock(client.ApiClient(configuration), NS, ALICE, ttl_s=900)

    with pytest.raises(DeployError, match=f"read Lease {LEASE_NAME} in namespace {NS}") as error:
        lock.acquire()

    assert error.value.exit_code == 1


# --- choosing the lock ---------------------------------------------------------------------------
def test_lock_for_the_local_platform_is_a_file_lock_in_the_stack_directory(
    tmp_path: Path,
) -> None:
    settings = Settings.model_validate({"state_dir": tmp_path, "platform": "local"})

    lock = lock_for(settings, ALICE)

    assert isinstance(lock, FileLock)
    assert lock.path == tmp_path.resolve() / "stack" / "promotion.lock"
    assert lock.ttl_s == settings.canary.lock_ttl_s


def test_lock_for_kubernetes_is_the_lease_in_the_serving_namespace(kube_api: FakeKubeAPI) -> None:
    settings = Settings.model_validate(
        {"platform": "kubernetes", "deploy": {"namespace": "serving-2"}}
    )

    lock = lock_for(settings, ALICE, api_client=_api(kube_api))
    lock.acquire()

    assert isinstance(lock, LeaseLock)
    assert kube_api.get("leases", "serving-2", LEASE_NAME)["spec"]["holderIdentity"] == ALICE


def test_default_identity_names_the_version_the_user_the_host_and_the_pid() -> None:
    identity = default_identity("7")

    assert re.fullmatch(rf"promote v7 by [^@ ]+@\S+ pid {os.getpid()}", identity)
