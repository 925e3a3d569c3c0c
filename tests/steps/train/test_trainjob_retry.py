"""Defect 8: a retried multi-node train step meets the ``<workflow>-train`` TrainJob of its earlier attempt.

A running (or suspended) one is adopted; a finished or failed one is replaced, so the retry trains again and
resumes from the workspace's checkpoint. The nodes get the GPU toleration and an in-memory /dev/shm.
Everything runs through the real kubernetes client against a stateful API stub.
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from steps.common.errors import StepError
from steps.train.trainjob_launch import job_manifest, launch_trainjob
from tests.json_http import JsonHandler, LoopbackServer
from workflows.argo import crd

BASE = "/apis/trainer.kubeflow.org/v1alpha1/namespaces/ml/trainjobs"


class StatefulKube(LoopbackServer):
    """trainjobs with state: POST 409s while the name exists, DELETE removes it after ``linger`` GETs, and a job
    created by this stub runs through ``states`` (conditions per GET)."""

    def __init__(self, existing: list[dict[str, str]] | None, states: list[list[dict[str, str]]],
                 linger: int = 1) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        if existing is not None:
            self.jobs["wf-1-train"] = {"metadata": {"name": "wf-1-train"}, "status": {"conditions": existing},
                                       "old": True}
        self.states, self.linger, self.calls = states, linger, []
        self.deleting: dict[str, int] = {}
        self.created: list[dict[str, Any]] = []
        stub = self

        class Handler(JsonHandler):
            def _body(self) -> Any:
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n)) if n else None

            def do_POST(self) -> None:  # noqa: N802
                body = self._body()
                stub.calls.append(("POST", body["metadata"]["name"]))
                if body["metadata"]["name"] in stub.jobs:
                    self._reply(409, {"kind": "Status", "code": 409, "reason": "AlreadyExists"})
                    return
                stub.jobs[body["metadata"]["name"]] = {**body, "gets": 0}
                stub.created.append(body)
                self._reply(201, body)

            def do_GET(self) -> None:  # noqa: N802
                name = self.path.rsplit("/", 1)[1]
                stub.calls.append(("GET", name))
                job = stub.jobs.get(name)
                if name in stub.deleting:
                    stub.deleting[name] -= 1
                    if stub.deleting[name] < 0:
                        stub.jobs.pop(name, None)
                        stub.deleting.pop(name)
                        job = None
                if job is None:
                    self._reply(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
                    return
                if not job.get("old"):
                    job["status"] = {"conditions": stub.states[min(job["gets"], len(stub.states) - 1)]}
                    job["gets"] += 1
                self._reply(200, job)

            def do_DELETE(self) -> None:  # noqa: N802
                name = self.path.rsplit("/", 1)[1]
                stub.calls.append(("DELETE", name))
                stub.deleting[name] = stub.linger  # foreground deletion: gone after a few reads
                self._reply(200, {"kind": "Status", "status": "Success"})

        self.serve(Handler)


@pytest.fixture()
def ws(monkeypatch: pytest.MonkeyPatch, workspace: Path) -> Iterator[Path]:
    monkeypatch.setenv("KUBERNETES_AUTH_TOKEN", "kube-token-xyz")
    ckpt = workspace / "train" / "hf_format" / "samples_100.0"
    ckpt.mkdir(parents=True)
    (ckpt / "config.json").write_text("{}")
    (workspace / "train" / "model").symlink_to("hf_format/samples_100.0")
    yield workspace


def _launch(stub: StatefulKube, ws: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("KUBERNETES_SERVER_URL", stub.url)
    return launch_trainjob(str(ws), workers=2, gpus_per_worker=4, image="img:1", namespace="ml",
                           pvc_claim="wf-1-workspace", name="wf-1-train", owner_name="wf-1", owner_uid="u-1",
                           poll_seconds=0.01, replace_timeout_seconds=5)


COMPLETE = [{"type": "Complete", "status": "True"}]


@pytest.mark.parametrize("earlier", [
    [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}],
    COMPLETE,
])
def test_a_finished_or_failed_job_of_an_earlier_attempt_is_replaced(ws: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   earlier: list[dict[str, str]]) -> None:
    stub = StatefulKube(existing=earlier, states=[[], COMPLETE], linger=2)
    try:
        out = _launch(stub, ws, monkeypatch)
    finally:
        stub.close()
    assert out["state"] == "Complete"
    methods = [c[0] for c in stub.calls]
    assert methods[:3] == ["POST", "GET", "DELETE"]  # 409, read its state, delete it
    assert methods.count("POST") == 2 and len(stub.created) == 1  # created again once it was gone
    assert methods.index("DELETE") < len(methods) - 1 - methods[::-1].index("POST")
    log = (ws / "pipeline_log.txt").read_text()
    assert "replacing it" in log and "replaced TrainJob wf-1-train" in log


def test_a_running_job_is_adopted(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stub = StatefulKube(existing=[{"type": "Suspended", "status": "False"}], states=[[]])
    stub.jobs["wf-1-train"]["old"] = False  # it progresses while we wait
    stub.jobs["wf-1-train"]["gets"] = 0
    stub.states = [[], [], COMPLETE]
    try:
        out = _launch(stub, ws, monkeypatch)
    finally:
        stub.close()
    assert out["state"] == "Complete" and "DELETE" not in [c[0] for c in stub.calls] and not stub.created
    assert "is Running: adopting it" in (ws / "pipeline_log.txt").read_text()


def test_a_replaced_job_that_does_not_go_away_is_a_clear_error(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stub = StatefulKube(existing=COMPLETE, states=[[]], linger=10_000)
    monkeypatch.setenv("KUBERNETES_SERVER_URL", stub.url)
    try:
        with pytest.raises(StepError, match="still there after 0s; delete it"):
            launch_trainjob(str(ws), workers=2, gpus_per_worker=4, image="img:1", namespace="ml",
                            pvc_claim="wf-1-workspace", name="wf-1-train", poll_seconds=0.01,
                            replace_timeout_seconds=0)
    finally:
        stub.close()


def test_nodes_get_the_gpu_toleration_shm_and_fs_group_and_validate_against_the_trainer_crd() -> None:
    manifest = job_manifest(workers="4", gpus_per_worker="8", image="img:1", namespace="ml", pvc_claim="wf-workspace",
                            name="wf-train", owner_name="wf", owner_uid="u", learning_rate="5e-06",
                            use_liger="false")
    pod = manifest["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    pod = pod["template"]["spec"]["template"]["spec"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory"}} in pod["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in pod["containers"][0]["volumeMounts"]
    assert pod["securityContext"]["fsGroup"] == 1001 and pod["securityContext"]["runAsNonRoot"] is True
    assert manifest["metadata"]["ownerReferences"][0]["uid"] == "u"
    assert manifest["spec"]["trainer"]["numNodes"] == 4 and "--no-use-liger" in manifest["spec"]["trainer"]["command"]
    assert crd.trainjob_errors(manifest) == []
    bad = json.loads(json.dumps(manifest))
    bad["metadata"]["name"] = "Wf_Train"
    assert any("RFC 1035" in e for e in crd.trainjob_errors(bad))  # the CRD's CEL rule on the name
