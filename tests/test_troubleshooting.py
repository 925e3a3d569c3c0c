"""docs/troubleshooting.md quotes the real error texts: each is produced here by the code that says it (against
the stand-ins) and must appear in the page, with only addresses normalised."""

import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.argo_stub import ArgoStub
from tests.k8s_stub import KubeStub, node, storage_class
from workflows.cli import app
from workflows.doctor import diagnose
from workflows.params import BY_NAME, ParamError, validate

ROOT = Path(__file__).resolve().parents[1]
PAGE = (ROOT / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
CLAIM = "osft-minimal-pipeline-x7k2p-workspace"


def _norm(text: str) -> str:
    text = re.sub(r"(127\.0\.0\.1|localhost):\d+", "HOST", text)
    return " ".join(text.split())


def documented(message: str, prefix: int = 0) -> None:
    message = message.removeprefix("error: ") if message.startswith("error: ") and prefix else message
    want = _norm(message[:prefix] if prefix else message)
    assert want in _norm(PAGE), f"docs/troubleshooting.md does not quote: {message}"


@pytest.fixture()
def api(tmp_path: Path) -> Iterator[tuple[KubeStub, Any]]:
    from workflows.kube import api_client

    stub = KubeStub()
    stub.install_pipeline()
    yield stub, api_client(str(stub.kubeconfig(tmp_path / "kc")))
    stub.close()


def _doctor(api: Any, params: dict[str, str] | None = None) -> list[str]:
    values = validate({"phase_01_dataset_man_data_uri": "hf://o/d"} | (params or {}))
    return [f.line() for f in diagnose(api, "ml", values, image_check=lambda r: ("ok", r))]


def test_doctor_lines_are_quoted(api: tuple[KubeStub, Any]) -> None:
    stub, client = api
    stub.storage_classes = [storage_class("standard", "rancher.io/local-path", default=True)]
    stub.nodes = [node("kind", cpu="4", memory="7Gi")]
    lines = _doctor(client)
    documented(next(ln for ln in lines if "storage class 'nfs-csi' not found" in ln))
    documented(next(ln for ln in lines if "no node offers" in ln and "train" in ln))
    lines = _doctor(client, {"phase_00_workspace_opt_storage_class": "standard"})
    documented(next(ln for ln in lines if "cannot give ReadWriteMany" in ln))
    stub.storage_classes = [storage_class("fast", "example.com/fancy-csi")]
    documented(next(ln for ln in _doctor(client, {"phase_00_workspace_opt_storage_class": "fast"})
                    if "cannot tell" in ln))
    documented(next(ln for ln in _doctor(client, {"phase_02_train_man_train_workers": "2"}) if "Trainer" in ln))
    documented(next(ln for ln in _doctor(client, {"phase_02_train_man_train_gpu": "0", "phase_03_eval_opt_gpu": "0"})
                    if "of memory for the train pod" in ln))
    stub.denied = {("create", "workflows")}
    documented(next(ln for ln in _doctor(client) if "your account may not" in ln))
    stub.denied = set()
    del stub.objects[("ServiceAccount", "ml", "osft-pipeline")]
    del stub.custom[("workflowtemplates", "ml", "osft-minimal-pipeline")]
    lines = _doctor(client)
    documented(next(ln for ln in lines if "service account 'osft-pipeline' not found" in ln))
    documented(next(ln for ln in lines if "is not installed in namespace ml" in ln))


def test_image_lines_are_quoted(monkeypatch: pytest.MonkeyPatch) -> None:
    from workflows.doctor import _image

    ref = "quay.io/osft-pipeline/osft-pipeline:0.1.0"
    documented(_image(ref, lambda r: ("missing", f"{r}: no such image in quay.io"))[0].line())
    documented(_image(ref, lambda r: ("private", f"{r} cannot be pulled anonymously from quay.io (private, or it "
                                                 "does not exist)"))[0].line())
    from workflows import registry_check

    class Answer:
        status_code, headers = 404, {}

    monkeypatch.setattr(registry_check.requests, "head", lambda *a, **k: Answer())
    assert registry_check.check_image(ref)[1] == f"{ref}: no such image in quay.io"  # the detail quoted above


def test_volume_messages_are_quoted(api: tuple[KubeStub, Any]) -> None:
    from kubernetes import client

    from steps.volume import VolumeError, wait_for_claim

    stub, c = api
    core = client.CoreV1Api(c)
    stub.add_pvc("ml", CLAIM)
    stub.add_event("ml", CLAIM, "ProvisioningFailed", 'storageclass.storage.k8s.io "nfs-csi" not found')
    with pytest.raises(VolumeError) as err:
        wait_for_claim(core, CLAIM, "ml")
    documented(str(err.value))
    stub.events.clear()
    stub.add_event("ml", CLAIM, "ExternalProvisioning", "Waiting for a volume to be created either by the external "
                   "provisioner 'nfs.csi.k8s.io' or manually by the system administrator. If volume creation is "
                   "delayed, please verify that the provisioner is running and correctly registered.", kind="Normal")
    now = [0.0]
    with pytest.raises(VolumeError) as err:
        wait_for_claim(core, CLAIM, "ml", clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    documented(str(err.value), prefix=str(err.value).index("administrator.") + len("administrator."))


@pytest.mark.parametrize(("name", "value"), [("phase_02_train_opt_cpu", "4 cores"),
                                             ("phase_02_train_opt_memory", "32GB")])
def test_parameter_messages_are_quoted(name: str, value: str) -> None:
    with pytest.raises(ParamError) as err:
        BY_NAME[name].coerce(value)
    documented(f"error: {err.value}")


def test_cli_messages_are_quoted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def err(*args: str) -> list[str]:
        res = CliRunner().invoke(app, list(args), env={"ARGO_SERVER": "", "ARGO_NAMESPACE": ""})
        return [ln for ln in res.output.splitlines() if ln.startswith("error: ")]

    for line in err("submit", "-n", "Bad_NS", "-p", "phase_01_dataset_man_data_split=1.5",
                    "-p", "phase_01_dataset_man_data_uri=hf://o/d"):
        documented(line)
    for line in err("cron", "install", "--schedule", "0 25 * * *", "--timezone", "Mars/Base",
                    "-p", "phase_01_dataset_man_data_uri=hf://o/d"):
        documented(line)
    documented(err("submit", "-p", "phase_01_dataset_man_data_uri=hf://o/d")[0])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    documented(err("submit", "-p", "phase_01_dataset_man_data_uri=hf://o/d", "--host", f"http://127.0.0.1:{port}",
                   "--token", "t")[0].replace(f"127.0.0.1:{port}", "localhost:2746"))
    documented(err("submit", "-p", "phase_01_dataset_man_data_uri=hf://o/d", "--host", "https://argo-server.argo",
                   "--token", "t")[0])
    stub = ArgoStub()
    try:
        tls = err("submit", "-p", "phase_01_dataset_man_data_uri=hf://o/d", "--host",
                  stub.url.replace("http://", "https://"), "--token", stub.token, "-n", "ml")[0]
        bad_token = err("submit", "-p", "phase_01_dataset_man_data_uri=hf://o/d", "--host", stub.url, "--token",
                        "nope", "-n", "ml")[0]
        missing = err("submit", "-p", "phase_01_dataset_man_data_uri=hf://o/d", "--host", stub.url, "--token",
                      stub.token, "-n", "ml")[0]
    finally:
        stub.close()
    for line in (tls, bad_token, missing):
        documented(line)
    from workflows.argo import compile as comp

    documented(err("compile", "--out", str(comp.TEMPLATES_DIR))[0].replace(str(comp.TEMPLATES_DIR), "templates"))
    documented(err("lint", "/no/such/dir")[0])
