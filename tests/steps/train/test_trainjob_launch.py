"""The workers > 1 path: create a TrainJob through the real kubernetes client against an API stub, poll, adopt."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from steps.common.errors import StepError
from steps.train.trainjob_launch import job_name, launch_trainjob, trainjob_state
from tests.json_http import JsonHandler, LoopbackServer

BASE = "/apis/trainer.kubeflow.org/v1alpha1/namespaces/ml/trainjobs"


class KubeStub(LoopbackServer):
    """Custom-objects endpoints for trainjobs; ``states`` is the list of status.conditions per GET."""

    def __init__(self, states: list[list[dict[str, str]]], create_status: int = 201) -> None:
        self.states = states
        self.create_status = create_status
        self.calls: list[tuple[str, str, Any, str]] = []
        self.gets = 0
        stub = self

        class Handler(JsonHandler):

            def _record(self, method: str) -> Any:
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n)) if n else None
                stub.calls.append((method, self.path, body, self.headers.get("Authorization", "")))
                return body

            def do_POST(self) -> None:  # noqa: N802
                body = self._record("POST")
                status = stub.create_status
                self._reply(status, body if status == 201 else {"kind": "Status", "code": status, "message": "x"})

            def do_GET(self) -> None:  # noqa: N802
                self._record("GET")
                conds = stub.states[min(stub.gets, len(stub.states) - 1)]
                stub.gets += 1
                self._reply(200, {"metadata": {"name": self.path.rsplit("/", 1)[1]}, "status": {"conditions": conds}})

            def do_DELETE(self) -> None:  # noqa: N802
                self._record("DELETE")
                self._reply(200, {"kind": "Status", "status": "Success"})

        self.serve(Handler)


def _fake_manifest(name: str, namespace: str, image: str, pvc_claim: str, workers: int, gpus_per_worker: int,
                   train_args: dict, runtime: str = "training-hub", **_settings: Any) -> dict[str, Any]:
    return {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"runtimeRef": {"name": runtime}, "trainer": {"image": image, "numNodes": workers,
                                                                  "args": [json.dumps(train_args)]}}}


@pytest.fixture()
def env(monkeypatch: pytest.MonkeyPatch, workspace: Path) -> Iterator[Path]:
    import steps.train.trainjob

    monkeypatch.setattr(steps.train.trainjob, "trainjob_manifest", _fake_manifest, raising=False)
    monkeypatch.setenv("KUBERNETES_AUTH_TOKEN", "kube-token-xyz")
    ckpt = workspace / "train" / "hf_format" / "samples_100.0"
    ckpt.mkdir(parents=True)
    (ckpt / "config.json").write_text("{}")
    (workspace / "train" / "model").symlink_to("hf_format/samples_100.0")
    yield workspace


def _launch(stub: KubeStub, ws: Path, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> dict[str, Any]:
    monkeypatch.setenv("KUBERNETES_SERVER_URL", stub.url)
    return launch_trainjob(str(ws), workers=2, gpus_per_worker=4, image="img:1", namespace="ml",
                           pvc_claim="wf-1-workspace", name="wf-1-train", owner_name="wf-1", owner_uid="u-1",
                           poll_seconds=0.01, **kw)


def test_creates_owned_trainjob_and_waits_by_condition_type(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Suspended (False) sits at index 0, Complete at index 1: an index-0 success condition would never match
    stub = KubeStub([[], [{"type": "Suspended", "status": "False"}],
                     [{"type": "Suspended", "status": "False"}, {"type": "Complete", "status": "True"}]])
    try:
        out = _launch(stub, env, monkeypatch, learning_rate=1e-5)
    finally:
        stub.close()
    assert out["state"] == "Complete" and out["model_path"].endswith("samples_100.0")
    method, path, body, auth = stub.calls[0]
    assert (method, path, auth) == ("POST", BASE, "Bearer kube-token-xyz")
    assert body["metadata"]["ownerReferences"] == [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
                                                   "name": "wf-1", "uid": "u-1"}]
    assert json.loads(body["spec"]["trainer"]["args"][0])["learning_rate"] == 1e-5
    assert [c[0] for c in stub.calls[1:]] == ["GET"] * 3
    assert "TrainJob wf-1-train: Complete" in (env / "pipeline_log.txt").read_text()


def test_failed_trainjob_is_a_step_error(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stub = KubeStub([[{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "node 1"}]])
    try:
        with pytest.raises(StepError, match="TrainJob wf-1-train failed: BackoffLimitExceeded node 1"):
            _launch(stub, env, monkeypatch)
    finally:
        stub.close()


def test_retry_adopts_existing_job_and_timeout_deletes_it(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stub = KubeStub([[]], create_status=409)
    try:
        with pytest.raises(StepError, match="did not finish within"):
            _launch(stub, env, monkeypatch, timeout_seconds=0.05)
    finally:
        stub.close()
    assert "already exists (step retried)" in (env / "pipeline_log.txt").read_text()
    assert stub.calls[-1][0] == "DELETE" and stub.calls[-1][1] == f"{BASE}/wf-1-train"


def test_rbac_refusal_names_the_fix(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stub = KubeStub([[]], create_status=403)
    try:
        with pytest.raises(StepError, match="403 .*templates/rbac.yaml"):
            _launch(stub, env, monkeypatch)
    finally:
        stub.close()


def test_single_worker_and_names() -> None:
    with pytest.raises(StepError, match="2 or more workers"):
        launch_trainjob("/tmp/x", workers=1, gpus_per_worker=1, image="i", namespace="n", pvc_claim="p", name="n")
    assert job_name("OSFT_Minimal.Pipeline-abc12-train") == "osft-minimal-pipeline-abc12-train"
    assert job_name("9abc") == "osft-9abc" and len(job_name("a" * 80)) == 63
    assert trainjob_state({"status": {"conditions": [{"type": "Complete", "status": "False"}]}})[0] == "Running"
