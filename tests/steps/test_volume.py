"""The workspace-bound task: a volume that does not bind fails the run, in bounded time, with the claim's event."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from steps.volume import VolumeError, wait_for_claim, wait_for_workspace
from tests.k8s_stub import KubeStub

CLAIM = "osft-minimal-pipeline-x7k2p-workspace"


@pytest.fixture()
def kube(tmp_path: Path) -> Iterator[tuple[KubeStub, Any]]:
    from kubernetes import client

    from workflows.kube import api_client

    stub = KubeStub()
    yield stub, client.CoreV1Api(api_client(str(stub.kubeconfig(tmp_path / "kc"))))
    stub.close()
    assert stub.invalid == [], stub.invalid


class FakeClock:
    """Time that passes only when the task sleeps, so a 600 s wait takes no time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps = 0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s
        self.sleeps += 1


def test_a_bound_claim_returns_at_once(kube: tuple[KubeStub, Any]) -> None:
    stub, api = kube
    pvc = stub.add_pvc("ml", CLAIM, phase="Bound")
    pvc["spec"]["volumeName"], pvc["status"]["capacity"] = "pvc-0a1b", {"storage": "50Gi"}
    assert wait_for_claim(api, CLAIM, "ml") == {"claim": CLAIM, "phase": "Bound", "storage_class": "nfs-csi",
                                                "access_modes": ["ReadWriteMany"], "volume": "pvc-0a1b",
                                                "capacity": "50Gi"}


def test_a_missing_class_fails_at_once_with_the_event_and_the_fix(kube: tuple[KubeStub, Any]) -> None:
    stub, api = kube
    stub.add_pvc("ml", CLAIM)
    stub.add_event("ml", CLAIM, "ProvisioningFailed", 'storageclass.storage.k8s.io "nfs-csi" not found')
    clock = FakeClock()
    with pytest.raises(VolumeError) as err:
        wait_for_claim(api, CLAIM, "ml", clock=clock, sleep=clock.sleep)
    assert clock.sleeps == 0
    assert str(err.value) == (
        f'workspace volume {CLAIM} cannot be created: storageclass.storage.k8s.io "nfs-csi" not found; pick a '
        "storage class that supports ReadWriteMany (kubectl get storageclass) and pass -p "
        "phase_00_workspace_opt_storage_class=<class>, or on a single-node cluster -p "
        "phase_00_workspace_opt_access_mode=ReadWriteOnce; `osft-pipeline doctor` checks this before a run")


def test_a_claim_that_stays_pending_fails_after_the_timeout_with_its_last_event(kube: tuple[KubeStub, Any]) -> None:
    stub, api = kube
    stub.add_pvc("ml", CLAIM)
    stub.add_event("ml", CLAIM, "ExternalProvisioning", "Waiting for a volume to be created either by the external "
                   "provisioner 'nfs.csi.k8s.io' or manually by the system administrator.", kind="Normal")
    clock = FakeClock()
    with pytest.raises(VolumeError, match=rf"^workspace volume {CLAIM} did not bind within 600s, still Pending "
                                          r"\(ExternalProvisioning: Waiting for a volume"):
        wait_for_claim(api, CLAIM, "ml", timeout_seconds=600, poll_seconds=5, clock=clock, sleep=clock.sleep)
    assert clock.now == 600 and clock.sleeps == 120  # bounded: it polled every 5 s, for 10 minutes, then failed
    events = [p for m, p, _ in stub.requests if p.endswith("/events")]
    assert events and all(p == "/api/v1/namespaces/ml/events" for p in events)


def test_a_claim_that_binds_while_waiting(kube: tuple[KubeStub, Any]) -> None:
    stub, api = kube
    stub.add_pvc("ml", CLAIM)
    clock = FakeClock()

    def sleep(s: float) -> None:
        clock.sleep(s)
        if clock.sleeps == 3:
            stub.pvcs[("ml", CLAIM)]["status"]["phase"] = "Bound"

    assert wait_for_claim(api, CLAIM, "ml", clock=clock, sleep=sleep)["phase"] == "Bound" and clock.sleeps == 3


def test_wait_for_first_consumer_is_said_and_left_to_the_first_pod(kube: tuple[KubeStub, Any]) -> None:
    stub, api = kube
    stub.add_pvc("ml", CLAIM, storage_class="standard")
    stub.add_event("ml", CLAIM, "WaitForFirstConsumer", "waiting for first consumer to be created before binding",
                   kind="Normal")
    out = wait_for_claim(api, CLAIM, "ml")
    assert out["phase"] == "WaitForFirstConsumer" and "first pod" in out["note"]


def test_a_forbidden_claim_names_the_rbac_fix(kube: tuple[KubeStub, Any]) -> None:
    stub, api = kube
    stub.forbidden = [r"/api/v1/namespaces/ml/persistentvolumeclaims/.*"]
    with pytest.raises(VolumeError, match="may not read it \\(403\\); install the RBAC"):
        wait_for_claim(api, CLAIM, "ml")


def test_outside_a_pod_it_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(VolumeError, match="no in-cluster Kubernetes API"):
        wait_for_workspace(CLAIM, "ml")
