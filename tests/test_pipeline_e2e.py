"""The real compiled WorkflowTemplate run locally with the real steps on a tiny model, end to end.

One Argo-template run with the parameter set the cluster e2e test submits (tests/e2e_checks.py: exactly
examples/laptop-params.yaml plus the data, here with a tiny model on disk) and held to the same checks
(``check_run``), then a resume of the register step against the in-process Model Registry, then the KFP twin
under kfp.local on the same inputs: both must leave the same workspace files. Every run has a distinct value
planted in every secret env var and in the secret parameter; none may be left anywhere in the workspace
(``.pods`` included) or its temp files.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from steps.common.secrets import SECRET_ENV_VARS
from tests.argo_nodes import workflow_from_run
from tests.e2e_checks import (
    PLANTED_PARAM_TOKEN,
    STORAGE,
    check_run,
    cluster_view,
    e2e_parameters,
    local_view,
    s3_published,
)
from tests.moto_s3 import moto_server
from tests.registry_server import RegistryServer
from tests.tiny_assets import chat_rows, write_jsonl
from workflows.paramfile import LAPTOP, load_parameter_file

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "templates" / "osft-minimal-pipeline.yaml"
TOKEN = "registry-token-e2e-123"
PLANTED = {  # one distinct value per secret env var (steps/common/secrets.py)
    "HF_TOKEN": "hf_plantedEnvToken0001",
    "AWS_ACCESS_KEY_ID": "AKIAPLANTED00000002",
    "AWS_SECRET_ACCESS_KEY": "planted-aws-secret-0003",
    "AWS_SESSION_TOKEN": "planted-aws-session-0004",
    "OCI_PULL_SECRET_MODEL_DOWNLOAD": '{"auths": {"quay.example": {"auth": "cGxhbnRlZC1vY2ktMDAwNQ=="}}}',
    "KUBERNETES_AUTH_TOKEN": "planted-kube-token-0006",
    "MODEL_REGISTRY_TOKEN": TOKEN,
}
PARAM_TOKEN = PLANTED_PARAM_TOKEN  # phase_01_dataset_opt_hf_token, planted in the shared parameter set
SECRET_VALUES = [*PLANTED.values(), "cGxhbnRlZC1vY2ktMDAwNQ==", PARAM_TOKEN]


STORAGE_URI = "s3://osft-e2e/models"  # the bucket the cluster e2e test publishes to (moto here)


def _params(data: Path, model: Path) -> dict[str, str]:
    """The cluster e2e test's parameter set, with this test's data and tiny model (the Hub is out of reach)."""
    return e2e_parameters(str(data), STORAGE_URI, model=str(model))


def _s3(endpoint: str):  # noqa: ANN202
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=PLANTED["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=PLANTED["AWS_SECRET_ACCESS_KEY"])


def _run(ws: Path, params: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "workflows.cli", "run", "--local", "--template", str(TEMPLATE),
            "--workspace", str(ws), *extra]
    for k, v in params.items():
        args += ["-p", f"{k}={v}"]
    tmp = ws.parent / "tmp"  # the run's own temp folder, scanned too
    tmp.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), **PLANTED, "KUBERNETES_SERVER_URL": "https://api.example:6443",
           "TMPDIR": str(tmp)}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=900)
    for value in SECRET_VALUES:
        assert value not in proc.stdout + proc.stderr
    return proc


def _leaks(root: Path) -> list[tuple[str, str]]:
    """(file, secret) for every planted secret found in any file under root, read as bytes."""
    found = []
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            data = p.read_bytes()
            found += [(str(p.relative_to(root)), v[:8]) for v in SECRET_VALUES if v.encode() in data]
    return found


def _files(ws: Path, parts: tuple[str, ...]) -> set[str]:
    out = set()
    for part in parts:
        for p in (ws / part).rglob("*"):
            rel = p.relative_to(ws).as_posix()
            if p.is_file() and "/run-" not in rel and "base_cache" not in rel:
                out.add(rel)
    return out


@pytest.fixture(scope="module")
def moto_endpoint():  # noqa: ANN201
    with moto_server(reset=True) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def argo_run(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, moto_endpoint: str
             ) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("e2e")
    data = write_jsonl(root / "chat.jsonl", chat_rows(80))  # the laptop set takes a subset of 72
    params = _params(data, tiny_model)
    ws = root / "ws"
    _s3(moto_endpoint).create_bucket(Bucket="osft-e2e")
    # the laptop cluster's parameter file as a user passes it, then the rest of the shared set; the s3-secret's
    # endpoint points at moto as the cluster's points at MinIO
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ENDPOINT_URL", moto_endpoint)
        proc = _run(ws, params, "-f", str(LAPTOP))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return ws, params


def test_every_step_ran_through_the_compiled_template(argo_run: tuple[Path, dict[str, str]],
                                                      moto_endpoint: str) -> None:
    ws, params = argo_run
    # what the cluster e2e test asserts, on this run: phases, rows, training, eval, exit outputs, the published model
    s3 = _s3(moto_endpoint)
    numbers = check_run(local_view(ws), params, published=lambda uri: s3_published(s3, uri))
    assert (numbers["train_rows"], numbers["eval_rows"], numbers["steps"]) == (64, 8, 8)
    assert numbers["published"] == f"{STORAGE_URI}/osft-model/1.0.0"
    checkpoint = (ws / "train" / "model").resolve()
    published = s3_published(s3, numbers["published"])
    for rel in numbers["published_files"]:  # locally the checkpoint is still there: the same bytes
        assert published.read(rel) == (checkpoint / rel).read_bytes(), rel
    run = json.loads((ws / "run.json").read_text())
    masked = {k: ("***" if k == "phase_01_dataset_opt_hf_token" else v) for k, v in params.items()}
    assert {k: run["parameters"][k] for k in params} == masked  # the run got exactly the shared set
    assert set(run["overrides"]) >= set(load_parameter_file(LAPTOP))
    assert run["tasks"]["workspace-bound"]["message"].startswith("skipped: locally the workspace is")
    # the pods the laptop cluster would run: rendered from the template with these values and validated
    assert run["tasks"]["train"]["resources"] == {"requests": {"cpu": "2", "memory": "6Gi"},
                                                  "limits": {"memory": "6Gi"}}
    assert run["tasks"]["evaluate"]["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"},
                                                     "limits": {"memory": "4Gi"}}
    metrics = json.loads((ws / "train" / "metrics.json").read_text())
    assert metrics["final_loss"] < metrics["first_loss"]
    model = (ws / "train" / "model").resolve()
    assert (model / "config.json").is_file() and model.relative_to(ws).as_posix() == numbers["checkpoint"]
    comparison = json.loads((ws / "eval" / "comparison.json").read_text())
    assert comparison["gate"] == numbers["gate"]
    tasks = {r["task"] for r in comparison["rows"]}
    assert "arc_easy@validation" in tasks  # offline: the local variant, named by the split it scores
    assert not (ws / "registry" / "registration.json").exists()
    report = (ws / "report.html").read_text()
    for section in ("Evaluation: base vs tuned", "Training", "Details", "Steps", "Dataset", "All parameters"):
        assert f">{section}</h" in report, section
    md = (ws / "report.md").read_text().splitlines()
    assert md[2].startswith(("**PASSED the eval gate", "**GATE FAILED"))
    # the model's durable place is where it was published
    assert f"model: `{numbers['published']}`" in md[2] and f"aws s3 sync {numbers['published']} model/" in md[2]


def test_the_cluster_reads_the_same_run_the_same_way(argo_run: tuple[Path, dict[str, str]],
                                                     moto_endpoint: str) -> None:
    """The same run as a cluster's Workflow object (Argo's Retry nodes, attempt pods ``train(0)``, the onExit
    boundary; here train needed a second attempt): the cluster test's view equals the local one, so check_run
    holds both to the same facts."""
    ws, params = argo_run
    run = json.loads((ws / "run.json").read_text())
    workflow = workflow_from_run(run, failed_attempts={"train": 1})
    assert cluster_view(workflow) == local_view(ws)
    s3 = _s3(moto_endpoint)
    published = lambda uri: s3_published(s3, uri)  # noqa: E731
    assert check_run(cluster_view(workflow), params, published) == check_run(local_view(ws), params, published)
    # read as pods (the way the report and --watch read nodes before), the retried task is lost
    pods = {n["displayName"] for n in workflow["status"]["nodes"].values() if n["type"] == "Pod"}
    assert "train" not in pods and {"train(0)", "train(1)"} <= pods


def test_register_resumes_against_the_registry(argo_run: tuple[Path, dict[str, str]]) -> None:
    ws, params = argo_run
    with RegistryServer(token=TOKEN) as registry:
        # no storage URI: the workspace copy is registered (pvc://); the published one is tested below
        proc = _run(ws, {**params, "phase_04_registry_man_address": registry.url,
                         "phase_04_registry_opt_force": "true", STORAGE: ""}, "--from-step", "register")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert registry.calls("POST"), "nothing was registered"
    record = json.loads((ws / "registry" / "registration.json").read_text())
    assert record["status"] in ("registered", "forced")
    assert record["uri"].startswith("pvc://") and "/train/" in record["uri"]
    run = json.loads((ws / "run.json").read_text())
    phases = {name: t["phase"] for name, t in run["tasks"].items()}
    assert phases["register"] == "Succeeded" and run["tasks"]["train"]["reused"] is True


def test_no_planted_secret_is_left_anywhere(argo_run: tuple[Path, dict[str, str]]) -> None:
    """A whole run (every step, register against the registry) leaves no secret in any file it wrote."""
    ws, params = argo_run
    with RegistryServer(token=TOKEN) as registry:
        proc = _run(ws, {**params, "phase_04_registry_man_address": registry.url, "phase_04_registry_opt_force":
                         "true", "phase_04_registry_man_reg_version": "auto"}, "--from-step", "register")
        assert proc.returncode == 0, proc.stderr[-3000:]
        sent = b" ".join(e.body or b"" for e in registry.exchanges)
    assert set(PLANTED) == set(SECRET_ENV_VARS)
    files = {p.relative_to(ws).parts[0] for p in ws.rglob("*") if p.is_file()}
    assert {".pods", "logs", "run.json", "pipeline_log.txt", "report.html", "dataset", "train", "eval",
            "registry"} <= files
    assert _leaks(ws) == [] and _leaks(ws.parent / "tmp") == []
    assert all(v.encode() not in sent for v in SECRET_VALUES if v != TOKEN)  # the bearer goes in a header only
    run = json.loads((ws / "run.json").read_text())
    assert run["parameters"]["phase_01_dataset_opt_hf_token"] == "***"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_kfp_twin_writes_the_same_workspace_files(argo_run: tuple[Path, dict[str, str]], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.kfp_local import kfp_local_workspace
    from workflows.kfp import pipeline as kfp_pipeline

    argo_ws, params = argo_run
    ws = kfp_local_workspace(tmp_path, monkeypatch)
    pipeline = kfp_pipeline.build_pipeline()
    # the same inputs, without publishing (the workspace files are compared; kfp.local has no s3-secret)
    inputs = {**params, STORAGE: ""}
    typed = {p.name: p.coerce(inputs[p.name]) for p in kfp_pipeline.INPUTS if p.name in inputs}
    pipeline(**typed)
    parts = ("dataset", "train", "eval")
    assert _files(ws, parts) == _files(argo_ws, parts)
    assert (ws / "dataset" / "train.jsonl").read_bytes() == (argo_ws / "dataset" / "train.jsonl").read_bytes()


# --- issue 15: the registered model outlives the run ----------------------------------------------------------


def test_published_to_s3_and_registered_with_that_uri(argo_run: tuple[Path, dict[str, str]], moto_endpoint: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    import boto3

    ws, params = argo_run
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                      aws_access_key_id=PLANTED["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=PLANTED["AWS_SECRET_ACCESS_KEY"])
    s3.create_bucket(Bucket="models")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    with RegistryServer(token=TOKEN) as registry:
        proc = _run(ws, {**params, "phase_04_registry_man_address": registry.url,
                         "phase_04_registry_opt_force": "true", "phase_04_registry_man_reg_version": "3.1.0",
                         "phase_04_registry_opt_storage_uri": "s3://models/osft"}, "--from-step", "preflight")
        assert proc.returncode == 0, proc.stderr[-3000:]
        artifacts = list(registry.registry.s.artifacts.values())
    run = json.loads((ws / "run.json").read_text())
    phases = {name: t["phase"] for name, t in run["tasks"].items()}
    assert phases["publish"] == phases["register"] == "Succeeded"
    assert phases["publish-pvc"] == phases["keep-workspace"] == "Skipped"
    prefix = "osft/osft-model/3.1.0/"
    manifest = json.loads(s3.get_object(Bucket="models", Key=prefix + "osft-manifest.json")["Body"].read())
    checkpoint = (ws / "train" / "model").resolve()
    assert {f["path"] for f in manifest["files"]} >= {"config.json", "model.safetensors"}
    for f in manifest["files"]:  # the stored objects are the checkpoint's files, byte for byte
        body = s3.get_object(Bucket="models", Key=prefix + f["path"])["Body"].read()
        local = (checkpoint / f["path"]).read_bytes()
        assert hashlib.sha256(body).hexdigest() == hashlib.sha256(local).hexdigest() == f["sha256"]
        assert len(body) == f["size"]
    record = json.loads((ws / "registry" / "registration.json").read_text())
    assert record["uri"] == "s3://models/osft/osft-model/3.1.0" and record["storage_key"] == "s3-secret"
    assert [a["uri"] for a in artifacts] == [record["uri"]]
    assert record["custom_properties"]["publish.manifest"] == f"s3://models/{prefix}osft-manifest.json"
    assert "s3://models/osft/osft-model/3.1.0" in (ws / "report.md").read_text()
    assert _leaks(ws) == []  # the AWS keys went into the publish pod only


def test_a_registered_workspace_uri_resolves_after_the_cleanup(argo_run: tuple[Path, dict[str, str]]) -> None:
    """Keep mode (a registry, no storage URI): after the run's cleanup as a cluster would do it (exit handler, then
    the workflow deleted with what it owns) the claim the registered pvc:// URI names is still there."""
    ws, params = argo_run
    with RegistryServer(token=TOKEN) as registry:
        proc = _run(ws, {**params, "phase_04_registry_man_address": registry.url, "phase_04_registry_opt_force":
                         "true", "phase_04_registry_man_reg_version": "4.0.0",
                         "phase_04_registry_opt_storage_uri": ""}, "--from-step", "keep-workspace")
        assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads((ws / "run.json").read_text())
    record = json.loads((ws / "registry" / "registration.json").read_text())
    claim, _, path = record["uri"].removeprefix("pvc://").partition("/")
    assert claim == f"{run['workflow']['name']}-workspace"
    fate = run["claims"][claim]
    assert fate["kept_after_cleanup"] is True and fate["owned"] is False and fate["deleted_by"] is None
    assert run["exit_handler"] and run["tasks"]["exit-handler.delete-workspace"]["phase"] == "Skipped"
    model = ws / path  # the claim is the workspace: the registered path is a loadable checkpoint
    assert (model / "config.json").is_file() and any(model.glob("*.safetensors"))
    # the first run's preflight said where that run's model would live (it published, as the cluster run does)
    assert (f"model home: published to {STORAGE_URI}/osft-model/1.0.0 (manifest last), not registered (no registry "
            "address)") in (ws / "pipeline_log.txt").read_text()


def test_published_to_a_models_volume(argo_run: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    """pvc://: the publish-pvc task mounts the claim the preflight names (locally the --pvc folder) at /models."""
    ws, params = argo_run
    volume = tmp_path / "models-volume"
    volume.mkdir()
    proc = _run(ws, {**params, "phase_04_registry_man_address": "", "phase_04_registry_man_reg_version": "5.0.0",
                     "phase_04_registry_opt_force": "true", "phase_04_registry_opt_storage_uri": "pvc://models/osft"},
                "--from-step", "preflight", "--pvc", f"models={volume}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads((ws / "run.json").read_text())
    assert run["tasks"]["publish-pvc"]["phase"] == "Succeeded" and run["tasks"]["publish"]["phase"] == "Skipped"
    folder = volume / "osft" / "osft-model" / "5.0.0"
    manifest = json.loads((folder / "osft-manifest.json").read_text())
    checkpoint = (ws / "train" / "model").resolve()
    assert manifest["uri"] == "pvc://models/osft/osft-model/5.0.0"
    for f in manifest["files"]:
        assert (folder / f["path"]).read_bytes() == (checkpoint / f["path"]).read_bytes()
    assert json.loads((ws / "publish" / "publish.json").read_text())["uri"] == manifest["uri"]
    assert run["claims"][f"{run['workflow']['name']}-workspace"]["deleted_by"] == "exit-handler.delete-workspace"
