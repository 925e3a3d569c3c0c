"""The register step with the REAL model-registry 0.3.18 client against the in-process fake registry."""

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from steps.common.errors import StepError
from steps.common.workspace import Workspace
from steps.register import client as registry_client
from steps.register import next_version, register_model
from steps.register.client import parse_address
from tests import tls_certs
from tests.registry_server import V1ALPHA3, RegistryServer

TOKEN = "tok-3f9a1c77e2b84d0c"  # noqa: S105 - a test token, asserted never to leak
CLAIM = "osft-run-abc12-workspace"


def make_workspace(root: Path, gate: str = "pass") -> Path:
    """A workspace as the dataset/train/eval steps leave it (files crafted per the workspace contract)."""
    ws = Workspace.at(root)
    ckpt = ws.train_dir / "hf_format" / "samples_96.0"
    ckpt.mkdir(parents=True)
    (ckpt / "config.json").write_text("{}", encoding="utf-8")
    ws.point_model_at(ckpt)
    ws.dataset_dir.mkdir()
    ws.dataset_summary.write_text(json.dumps({"source": "s3://***@data-bucket/chat.jsonl", "rows": 120}))
    (ws.train_dir / "metrics.json").write_text(json.dumps({
        "final_loss": 1.25, "min_loss": 1.2, "steps": 12, "samples": 96, "wall_time_s": 31.5,
        "loss_per_epoch": [{"epoch": 0, "mean_loss": 1.4}], "loss_curve": [{"step": 1, "loss": 2.0}],
        "hyper_parameters": {"model": "Qwen/Qwen2.5-1.5B-Instruct", "learning_rate": 5e-06, "epochs": 1,
                             "effective_batch_size": 8, "unfreeze_rank_ratio": 0.25, "use_liger": False,
                             "training_max_seq_len": 512, "max_tokens_per_gpu": 4096, "hf_token": "hf_leak",
                             "lr_scheduler": "cosine"}}))
    ws.eval_dir.mkdir()
    tuned, base = {"role": "tuned", "model": "/workspace/train/model"}, {"role": "base", "model": "Qwen/Qwen2.5"}
    (ws.eval_dir / "metrics.json").write_text(json.dumps([  # the evaluate step's rows: role + model path
        {**tuned, "task": "arc_easy", "metric": "acc", "filter": "none", "value": 0.61, "stderr": 0.02},
        {**tuned, "task": "arc_easy", "metric": "acc_norm,none", "value": 0.58, "stderr": 0.02},
        {**base, "task": "arc_easy", "metric": "acc", "filter": "none", "value": 0.6, "stderr": 0.02},
        {**tuned, "task": "eval_holdout", "metric": "perplexity", "filter": "none", "value": 3.4}]))
    (ws.eval_dir / "comparison.json").write_text(json.dumps({"gate": gate, "max_regression": 0.02, "rows": [
        {"task": "arc_easy", "metric": "acc", "filter": "none", "base": 0.6, "tuned": 0.61, "delta": 0.01,
         "verdict": "unchanged within stderr"}]}))
    return root


@pytest.fixture()
def ws(workspace: Path) -> Path:
    return make_workspace(workspace)


@pytest.fixture()
def server():
    with RegistryServer(token=TOKEN) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODEL_REGISTRY_TOKEN", TOKEN)
    monkeypatch.delenv("KF_PIPELINES_SA_TOKEN_PATH", raising=False)
    monkeypatch.setattr(registry_client, "SA_TOKEN_PATH", str(tmp_path / "no-sa-token"))
    monkeypatch.setattr(registry_client, "BACKOFF_BASE_S", 0.01)
    for name in ("ARGO_WORKFLOW_NAME", "ARGO_WORKFLOW_UID"):
        monkeypatch.delenv(name, raising=False)


def reg(ws: Path, server: RegistryServer, **kw):
    args = {"address": "http://127.0.0.1", "port": server.port, "pvc_claim": CLAIM, "workflow_name": "osft-run-abc12",
            "workflow_uid": "9d2c-uid", "namespace": "team-a", **kw}
    return register_model(str(ws), **args)


def record(ws: Path) -> dict:
    return json.loads((ws / "registry" / "registration.json").read_text())


def test_skip_without_address_writes_dry_run(ws: Path) -> None:
    out = register_model(str(ws), pvc_claim=CLAIM, version="2.0.0")
    rec = record(ws)
    assert out["status"] == rec["status"] == "skipped"
    plan = rec["would_register"]
    assert plan["uri"] == f"pvc://{CLAIM}/train/hf_format/samples_96.0"
    assert plan["version"] == "2.0.0" and plan["gate"] == "pass"
    assert plan["custom_properties"]["eval.arc_easy.acc.delta"] == 0.01
    assert "[register] skipped" in (ws / "pipeline_log.txt").read_text()


def test_cli_skip_local_run_has_no_container_path(ws: Path) -> None:
    from workflows.cli import app

    res = CliRunner().invoke(app, ["step", "register", "--workspace", str(ws)])
    assert res.exit_code == 0, res.output
    plan = record(ws)["would_register"]
    assert plan["uri"] is None and "pvc-claim" in plan["uri_note"]
    assert plan["model_path"] == "train/hf_format/samples_96.0"


def test_register_then_rerun_is_idempotent(ws: Path, server: RegistryServer) -> None:
    out = reg(ws, server)
    assert out["status"] == "registered" and out["version"] == "1.0.0"
    assert [e.path.removeprefix("/api/model_registry/v1") for e in server.calls("POST")] == [
        "/registered_models", "/model_versions", f"/model_versions/{out['model_version_id']}/artifacts"]
    rec = record(ws)
    assert rec["registered_model_id"] == out["registered_model_id"] and rec["server"].endswith(str(server.port))
    assert rec["uri"] == f"pvc://{CLAIM}/train/hf_format/samples_96.0"
    assert rec["api"] == "/api/model_registry/v1/"

    from model_registry import ModelRegistry
    mr = ModelRegistry("http://127.0.0.1", server.port, author="t", is_secure=False, user_token=TOKEN)
    props = mr.get_model_version("osft-model", "1.0.0").custom_properties
    art = mr.get_model_artifact("osft-model", "1.0.0")
    assert art.uri == rec["uri"] and art.model_format_name == "pytorch" and art.model_format_version == "2.9"
    assert art.model_source_id == "9d2c-uid" and art.model_source_group == "team-a"
    assert props["train.final_loss"] == 1.25 and props["train.learning_rate"] == 5e-06
    assert props["train.max_seq_len"] == 512 and props["train.epochs"] == 1 and props["train.use_liger"] is False
    assert props["eval.arc_easy.acc.tuned"] == 0.61 and props["eval.arc_easy.acc.base"] == 0.6
    assert props["eval.arc_easy.acc.delta"] == 0.01 and props["eval.arc_easy.acc_norm.tuned"] == 0.58
    assert props["eval.holdout.perplexity.tuned"] == 3.4 and props["eval.gate"] == "pass"
    assert props["dataset.uri"] == "s3://***@data-bucket/chat.jsonl"
    assert props["base_model"] == "Qwen/Qwen2.5-1.5B-Instruct" and props["pipeline.name"] == "osft-minimal-pipeline"
    assert props["workflow.name"] == "osft-run-abc12" and props["workflow.namespace"] == "team-a"
    assert not [k for k in props if "token" in k.lower() and "tokens" not in k.lower()]
    assert not [k for k in props if k.split(".")[1:2] and k.split(".")[1].startswith(("train", "eval"))]
    assert "hf_leak" not in json.dumps(props) and "loss_curve" not in json.dumps(props)

    posts = len(server.calls("POST"))
    again = reg(ws, server)
    assert again["status"] == "already registered"
    assert again["model_version_id"] == out["model_version_id"] and len(server.calls("POST")) == posts
    assert (ws / "pipeline_log.txt").read_text().count("already registered") == 1


def test_format_version_is_the_parameter_not_the_torch_version(ws: Path, server: RegistryServer) -> None:
    out = reg(ws, server, format_version="3.1")
    assert record(ws)["format_version"] == "3.1"
    body = json.loads(server.calls("POST")[-1].body)  # the artifact the registry stored
    assert body["modelFormatVersion"] == "3.1" and out["status"] == "registered"
    with pytest.raises(StepError, match="format_version is empty"):
        reg(ws, server, version="2.0.0", format_version=" ")


def test_base_model_credentials_never_reach_the_registry(ws: Path, server: RegistryServer,
                                                         capfd: pytest.CaptureFixture) -> None:
    """The version description and the base_model property carry the base model without its user:password."""
    reg(ws, server, base_model="oci://bob:s3cretPassw0rd@quay.io/org/base:1.0")
    sent = " ".join(e.body.decode() if isinstance(e.body, bytes) else str(e.body) for e in server.calls("POST"))
    assert "s3cretPassw0rd" not in sent and "oci://***@quay.io/org/base:1.0" in sent
    for text in ((ws / "pipeline_log.txt").read_text(), (ws / "registry" / "registration.json").read_text(),
                 capfd.readouterr().err):
        assert "s3cretPassw0rd" not in text


def test_version_auto_bumps_patch(ws: Path, server: RegistryServer) -> None:
    assert reg(ws, server, version="auto")["version"] == "1.0.0"
    assert reg(ws, server, version="auto")["status"] == "already registered"  # retried run: same URI
    assert reg(ws, server, version="1.4.9", model_uri="s3://models/osft/b")["version"] == "1.4.9"
    out = reg(ws, server, version="auto", model_uri="s3://models/osft/c")
    assert (out["status"], out["version"]) == ("registered", "1.4.10")
    assert record(ws)["uri"] == "s3://models/osft/c"


def test_next_version() -> None:
    assert next_version([]) == "1.0.0"
    assert next_version(["latest", "1.2.9", "1.10.0", "v2.0.3"]) == "2.0.4"


def test_same_version_other_uri_fails(ws: Path, server: RegistryServer) -> None:
    reg(ws, server)
    with pytest.raises(StepError, match="already registered with a different URI"):
        reg(ws, server, model_uri="s3://models/other")
    assert not (ws / "registry" / "registration.json").exists()


def test_failed_gate_refused_unless_forced(workspace: Path, server: RegistryServer) -> None:
    ws = make_workspace(workspace, gate="fail")
    with pytest.raises(StepError, match="--force"):
        reg(ws, server)
    assert server.exchanges == [] and not (ws / "registry" / "registration.json").exists()
    out = reg(ws, server, force=True)
    assert out["status"] == "registered" and record(ws)["forced"] is True
    assert record(ws)["custom_properties"]["eval.gate_forced"] is True


def test_old_server_404_names_both_api_generations(ws: Path) -> None:
    with RegistryServer(prefixes=(V1ALPHA3,)) as old, pytest.raises(StepError) as err:
        reg(ws, old)
    msg = str(err.value)
    assert "404" in msg and "/api/model_registry/v1/" in msg and "only the older v1alpha3" in msg
    with RegistryServer(prefixes=()) as none, pytest.raises(StepError, match="serves neither"):
        reg(ws, none)


def test_server_down_retries_then_clear_error(ws: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StepError, match=r"cannot reach the Model Registry .* after 3 attempts"):
        register_model(str(ws), address=f"127.0.0.1:{port}", pvc_claim=CLAIM, retries=2)
    assert (ws / "pipeline_log.txt").read_text().count("registry unreachable") == 2


def test_token_never_printed_or_recorded(ws: Path, server: RegistryServer, capfd: pytest.CaptureFixture) -> None:
    reg(ws, server)
    assert all(e.headers.get("authorization") == f"Bearer {TOKEN}" for e in server.exchanges)
    with RegistryServer(token="other-token") as strict, pytest.raises(StepError, match="refused the token") as err:
        reg(ws, strict)
    out = capfd.readouterr()
    assert "env MODEL_REGISTRY_TOKEN" in out.err
    for text in (out.out, out.err, str(err.value), (ws / "pipeline_log.txt").read_text(),
                 json.dumps(reg(ws, server)), (ws / "registry" / "registration.json").read_text()):
        assert TOKEN not in text


def test_token_from_service_account_file(ws: Path, server: RegistryServer, monkeypatch, tmp_path: Path) -> None:
    sa = tmp_path / "sa-token"
    sa.write_text(TOKEN + "\n")
    monkeypatch.delenv("MODEL_REGISTRY_TOKEN")
    monkeypatch.setattr(registry_client, "SA_TOKEN_PATH", str(sa))
    assert reg(ws, server, address="127.0.0.1")["status"] == "registered"  # bare host form
    assert server.exchanges[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_https_without_token_is_refused(ws: Path, monkeypatch) -> None:
    monkeypatch.delenv("MODEL_REGISTRY_TOKEN")
    with pytest.raises(StepError, match="needs a bearer token"):
        register_model(str(ws), address="https://registry.example", pvc_claim=CLAIM)


@pytest.mark.parametrize(("address", "port", "want"), [
    ("http://reg.ns.svc", 8080, ("http", "reg.ns.svc", 8080)),
    ("reg.ns.svc", 9090, ("http", "reg.ns.svc", 9090)),
    ("reg.ns.svc:7000", 8080, ("http", "reg.ns.svc", 7000)),
    ("https://reg.example.com", 0, ("https", "reg.example.com", 443)),
    ("https://reg.example.com:8443/", 8080, ("https", "reg.example.com", 8443)),
])
def test_address_forms(address: str, port: int, want: tuple) -> None:
    s = parse_address(address, port)
    assert (s.scheme, s.host, s.port) == want


@pytest.mark.parametrize("address", ["grpc://reg:9090", "http://reg/api", "http://u:p@reg", "http://reg:99999"])
def test_bad_addresses(address: str) -> None:
    with pytest.raises(StepError):
        parse_address(address, 8080)


@pytest.mark.parametrize("uri", ["/workspace/train/model", "file:///tmp/m", "train/model", "s3://k:s@bucket/m"])
def test_container_local_or_secret_uri_refused(ws: Path, uri: str) -> None:
    with pytest.raises(StepError, match="--model-uri"):
        register_model(str(ws), model_uri=uri)


def self_signed(tmp_path: Path) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key, as PEM files."""
    return tls_certs.self_signed(tmp_path, ip="127.0.0.1", common_name="fake-registry")


def test_tls_with_custom_ca(ws: Path, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    with RegistryServer(token=TOKEN, tls=(cert, key)) as srv:
        out = register_model(str(ws), address="https://127.0.0.1", port=srv.port, ca_cert=cert, pvc_claim=CLAIM)
        assert out["status"] == "registered" and record(ws)["server"] == srv.url
        assert srv.exchanges[0].headers["authorization"] == f"Bearer {TOKEN}"
        with pytest.raises(StepError, match="--ca-cert"):
            register_model(str(ws), address=srv.url, pvc_claim=CLAIM, version="2.0.0")
