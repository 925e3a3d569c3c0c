"""`osft-pipeline doctor` against a Kubernetes API stand-in whose requests and answers follow the API's schemas,
and the image check against a registry stand-in that speaks the OCI distribution API's token dance."""

import json
import re
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.json_http import JsonHandler
from tests.k8s_stub import KubeStub, node, storage_class
from workflows.cli import app
from workflows.doctor import Finding, diagnose
from workflows.kube import api_client
from workflows.params import validate
from workflows.registry_check import check_image, parse_image

DATA = {"phase_01_dataset_man_data_uri": "hf://org/data"}


class RegistryStub:
    """``/v2/<repo>/manifests/<tag>`` behind a Bearer challenge; ``public`` repos get anonymous tokens."""

    def __init__(self, images: set[str], public: set[str]) -> None:
        self.images, self.public, self.calls = images, public, []
        stub = self

        class Handler(JsonHandler):
            def do_GET(self) -> None:  # noqa: N802
                if self.path.startswith("/token"):
                    from urllib.parse import parse_qs, urlsplit

                    scope = (parse_qs(urlsplit(self.path).query).get("scope") or [""])[0]
                    repo = scope.removeprefix("repository:").removesuffix(":pull")
                    stub.calls.append(("token", repo))
                    self._reply(200, {"token": f"anon-{repo}" if repo in stub.public else "anon-none"})
                else:
                    self._reply(404, {})

            def do_HEAD(self) -> None:  # noqa: N802
                m = re.fullmatch(r"/v2/(.+)/manifests/(.+)", self.path)
                stub.calls.append(("head", self.path))
                repo, tag = m.groups() if m else ("", "")
                if self.headers.get("Authorization") != f"Bearer anon-{repo}":
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", f'Bearer realm="http://127.0.0.1:{stub.port}/token",'
                                                         'service="stub-registry"')
                    self.end_headers()
                    return
                self.send_response(200 if f"{repo}:{tag}" in stub.images else 404)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture()
def kube(tmp_path: Path) -> Iterator[tuple[KubeStub, Any]]:
    stub = KubeStub()
    stub.install_pipeline()
    yield stub, api_client(str(stub.kubeconfig(tmp_path / "kubeconfig")))
    stub.close()
    assert stub.invalid == [], stub.invalid  # every request and answer had the real API's shape


def _run(api: Any, params: dict[str, str] | None = None, ns: str = "ml") -> dict[str, Finding]:
    findings = diagnose(api, ns, validate(DATA | (params or {})), image_check=lambda ref: ("ok", ref))
    return {f.text.split(" ")[0] + ("" if f.level == "ok" else f":{f.level}"): f for f in findings}


def _lines(api: Any, params: dict[str, str] | None = None, ns: str = "ml") -> list[str]:
    return [f.line() for f in diagnose(api, ns, validate(DATA | (params or {})), image_check=lambda r: ("ok", r))]


def test_a_ready_cluster_is_all_ok(kube: tuple[KubeStub, Any]) -> None:
    lines = _lines(kube[1])
    assert [ln.split(":")[0] for ln in lines] == ["ok"] * 6 + ["skipped"] + ["ok"] * 3, lines
    assert "ok: storage class 'nfs-csi' (nfs.csi.k8s.io) gives ReadWriteMany volumes" in lines


def test_a_missing_class_names_the_classes_there_and_the_fix(kube: tuple[KubeStub, Any]) -> None:
    stub, api = kube
    stub.storage_classes = [storage_class("standard", "rancher.io/local-path", default=True,
                                          binding="WaitForFirstConsumer")]
    assert ("error: storage class 'nfs-csi' not found (classes here: standard [default, rancher.io/local-path, "
            "ReadWriteOnce only]): install an RWX class (NFS, CephFS), or on a single-node cluster pass -p "
            "phase_00_workspace_opt_storage_class=standard -p phase_00_workspace_opt_access_mode=ReadWriteOnce"
            ) in _lines(api)
    stub.storage_classes.append(storage_class("cephfs", "openshift-storage.cephfs.csi.ceph.com"))
    assert any("pass -p phase_00_workspace_opt_storage_class=cephfs;" in ln for ln in _lines(api))


def test_a_class_that_cannot_share_a_volume_is_an_error_unless_read_write_once(kube: tuple[KubeStub, Any]) -> None:
    stub, api = kube
    stub.storage_classes = [storage_class("standard", "rancher.io/local-path", binding="WaitForFirstConsumer")]
    params = {"phase_00_workspace_opt_storage_class": "standard"}
    assert ("error: storage class 'standard' (rancher.io/local-path) cannot give ReadWriteMany volumes: install an "
            "RWX class (NFS, CephFS); on a single-node cluster -p phase_00_workspace_opt_access_mode=ReadWriteOnce "
            "works with any class") in _lines(api, params)
    ok = _lines(api, params | {"phase_00_workspace_opt_access_mode": "ReadWriteOnce"})
    assert ("ok: storage class 'standard' (rancher.io/local-path) gives ReadWriteOnce volumes, binds when the first "
            "pod is scheduled (WaitForFirstConsumer)") in ok
    stub.storage_classes = [storage_class("fast", "example.com/fancy-csi")]
    assert any(ln.startswith("warning: storage class 'fast' (example.com/fancy-csi): cannot tell")
               for ln in _lines(api, {"phase_00_workspace_opt_storage_class": "fast"}))


def test_the_trainer_is_checked_only_for_several_workers(kube: tuple[KubeStub, Any]) -> None:
    stub, api = kube
    assert "skipped: Kubeflow Trainer: not needed (phase_02_train_man_train_workers=1)" in _lines(api)
    two = {"phase_02_train_man_train_workers": "2"}
    assert ("error: Kubeflow Trainer v2 is not installed (no trainjobs.trainer.kubeflow.org), needed for "
            "phase_02_train_man_train_workers=2: install it (docs/cluster.md) or pass -p "
            "phase_02_train_man_train_workers=1") in _lines(api, two)
    stub.groups["trainer.kubeflow.org/v1alpha1"] = ["trainjobs", "trainingruntimes", "clustertrainingruntimes"]
    stub.custom[("clustertrainingruntimes", "", "torch-distributed")] = {
        "apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "ClusterTrainingRuntime",
        "metadata": {"name": "torch-distributed"}}
    assert ("error: ClusterTrainingRuntime 'training-hub' not found (here: torch-distributed): pass -p "
            "phase_02_train_opt_runtime=<name>") in _lines(api, two)
    assert "ok: Kubeflow Trainer v2 with ClusterTrainingRuntime 'torch-distributed'" in _lines(
        api, two | {"phase_02_train_opt_runtime": "torch-distributed"})


def test_nodes_must_hold_the_pods_gpus_and_memory(kube: tuple[KubeStub, Any]) -> None:
    stub, api = kube
    stub.nodes = [node("kind-control-plane", cpu="4", memory="7Gi")]
    lines = _lines(api)
    assert ("error: no node offers 1 nvidia.com/gpu for the train pod (most: 0): pass -p "
            "phase_02_train_man_train_gpu=0 -p phase_03_eval_opt_gpu=0 (CPU) (examples/laptop-params.yaml sizes a "
            "laptop cluster)") in lines
    cpu = {"phase_02_train_man_train_gpu": "0", "phase_03_eval_opt_gpu": "0"}
    assert ("error: no node has 32Gi of memory for the train pod (most allocatable: 7.0Gi): pass -p "
            "phase_02_train_opt_memory=<less> (examples/laptop-params.yaml sizes a laptop cluster)") in _lines(api, cpu)
    from workflows.paramfile import LAPTOP, load_parameter_file

    laptop = [ln for ln in _lines(api, load_parameter_file(LAPTOP)) if "pod" in ln and "node" in ln]
    assert laptop == ["ok: a node can hold the train pod (0 GPU, 2 CPU, 6Gi)",
                      "ok: a node can hold the evaluate pod (0 GPU, 2 CPU, 4Gi)"]
    stub.forbidden = [r"/api/v1/nodes"]
    assert any(ln.startswith("skipped: nodes: this account may not list nodes (403)") for ln in _lines(api))


def test_rbac_of_the_user_and_of_the_service_account(kube: tuple[KubeStub, Any]) -> None:
    stub, api = kube
    stub.denied = {("create", "workflows"), ("get", "pods/log")}
    assert ("error: your account may not create workflows, get pods/log in namespace ml: ask an admin for Argo's "
            "edit role there (ClusterRole argo-aggregate-to-edit via the edit role)") in _lines(api)
    stub.denied = {("list", "events")}
    assert any(ln.startswith("error: service account 'osft-pipeline' may not list events in namespace ml")
               for ln in _lines(api))
    del stub.objects[("ServiceAccount", "ml", "osft-pipeline")]
    assert ("error: service account 'osft-pipeline' not found in namespace ml: install the RBAC that "
            "`osft-pipeline compile --namespace ml` writes (rbac.yaml), or `osft-pipeline submit --install`"
            ) in _lines(api)
    sars = [b for m, p, b in stub.requests if p.endswith("/subjectaccessreviews") and "selfsubject" not in p]
    assert sars and sars[0]["spec"]["user"] == "system:serviceaccount:ml:osft-pipeline"


def test_argo_namespace_and_template(kube: tuple[KubeStub, Any]) -> None:
    stub, api = kube
    assert _lines(api, ns="nope")[-1] == ("error: namespace 'nope' not found: kubectl create namespace nope, or pass "
                                          "-n <namespace>")
    del stub.custom[("workflowtemplates", "ml", "osft-minimal-pipeline")]
    assert ("error: workflowtemplate/osft-minimal-pipeline is not installed in namespace ml: osft-pipeline compile "
            "--namespace ml --out install && kubectl apply -k install/ (or osft-pipeline submit --install)"
            ) in _lines(api)
    stub.groups.clear()
    assert ("error: Argo Workflows is not installed (no workflows.argoproj.io API): install Argo Workflows >= 3.6 "
            "(docs/cluster.md)") in _lines(api)


def test_an_unreachable_api_is_one_line_with_its_cause(tmp_path: Path) -> None:
    stub = KubeStub()
    api = api_client(str(stub.kubeconfig(tmp_path / "kc")))
    stub.close()
    lines = _lines(api)
    assert len(lines) == 1 and re.fullmatch(r"error: Kubernetes API at http://127\.0\.0\.1:\d+: connection refused "
                                            r"by 127\.0\.0\.1:\d+: nothing listens there", lines[0]), lines


def test_the_installed_templates_image_is_checked_against_its_registry(kube: tuple[KubeStub, Any]) -> None:
    stub, api = kube
    reg = RegistryStub(images={"team/osft:1"}, public={"team/osft", "team/other"})
    try:
        host = f"127.0.0.1:{reg.port}"
        stub.install_pipeline(image=f"{host}/team/osft:1")
        findings = diagnose(api, "ml", validate(DATA))
        assert findings[-1].line() == f"ok: image {host}/team/osft:1 exists in {host}"
        assert ("token", "team/osft") in reg.calls  # the anonymous token dance, as a runtime does it
        assert check_image(f"{host}/team/osft:2") == ("missing", f"{host}/team/osft:2: no such image in {host}")
        assert check_image(f"{host}/team/private:1")[0] == "private"
        line = diagnose(api, "ml", validate(DATA), image=f"{host}/team/other:9")[-1].line()
        assert line.startswith(f"error: image {host}/team/other:9: no such image in {host}: build and push it (make "
                               "image IMAGE=")
    finally:
        reg.close()


@pytest.mark.parametrize(("ref", "parts"), [
    ("quay.io/osft-pipeline/osft-pipeline:0.1.0", ("quay.io", "osft-pipeline/osft-pipeline", "0.1.0")),
    ("python:3.11-slim", ("docker.io", "library/python", "3.11-slim")),
    ("docker.io/pytorch/pytorch", ("docker.io", "pytorch/pytorch", "latest")),
    ("localhost:5000/osft@sha256:abc", ("localhost:5000", "osft", "sha256:abc")),
])
def test_image_references_split_like_a_runtime(ref: str, parts: tuple[str, str, str]) -> None:
    img = parse_image(ref)
    assert (img.registry, img.repository, img.reference) == parts


def test_doctor_cli_exit_codes_and_parameter_checks(kube: tuple[KubeStub, Any], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    stub, _ = kube
    monkeypatch.setattr("workflows.registry_check.check_image", lambda ref, timeout=10.0: ("ok", ref))
    env = {"KUBECONFIG": str(tmp_path / "kubeconfig"), "ARGO_NAMESPACE": ""}
    res = CliRunner().invoke(app, ["doctor", "-n", "ml"], env=env)
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["doctor", "-n", "ml", "-p", "phase_02_train_man_train_workers=3"], env=env)
    assert res.exit_code == 1 and "error: Kubeflow Trainer v2 is not installed" in res.output
    asked = len(stub.requests)
    res = CliRunner().invoke(app, ["doctor", "-n", "ml", "-p", "phase_02_train_opt_memory=32GB"], env=env)
    assert res.exit_code == 2 and "(did you mean 32Gi?)" in res.output
    assert len(stub.requests) == asked  # a bad parameter stops it before the first request
    res = CliRunner().invoke(app, ["doctor", "-n", "ml", "--kubeconfig", str(tmp_path / "none")],
                             env={"KUBECONFIG": "", "HOME": str(tmp_path), "KUBERNETES_SERVICE_HOST": ""})
    assert res.exit_code == 2 and "error: no Kubernetes API configured" in res.output


def test_stub_refuses_bodies_that_do_not_match_the_api(kube: tuple[KubeStub, Any]) -> None:
    """The stand-in really validates: a SelfSubjectAccessReview with a misspelt field is refused and recorded."""
    import requests

    stub, _ = kube
    r = requests.post(f"{stub.url}/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", timeout=5,
                      headers={"Authorization": f"Bearer {stub.token}"},
                      json={"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                            "spec": {"resourceAttribute": {"verb": "get"}}})
    assert r.status_code == 422 and "resourceAttribute" in json.dumps(stub.invalid)
    stub.invalid.clear()
