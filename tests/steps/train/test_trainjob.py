"""The Kubeflow Trainer TrainJob manifest: valid against the CRD schema, secrets by reference only."""

import copy
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from steps.common.errors import StepError
from steps.train.trainjob import trainjob_manifest
from workflows.argo.crd import CRD_DIR

ROOT = Path(__file__).resolve().parents[3]
# the TrainJob CRD (Kubeflow Trainer v2.3.0), vendored once for the lint: see workflows/argo/schemas/crds/SOURCE.txt
CRD = CRD_DIR / "trainer-v2.3.0-trainjobs.yaml.gz"
ARGS = {"model": "Qwen/Qwen2.5-1.5B-Instruct", "effective_batch_size": 128, "learning_rate": 5e-6,
        "unfreeze_rank_ratio": 0.25, "use_liger": True, "checkpoint_at_epoch": False}


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    doc = yaml.safe_load(gzip.decompress(CRD.read_bytes()))
    version = next(v for v in doc["spec"]["versions"] if v.get("served") and v.get("storage"))
    return jsonschema.Draft7Validator(version["schema"]["openAPIV3Schema"])


def _manifest(**kw: object) -> dict:
    base = {"name": "osft-demo-train", "namespace": "ml", "image": "quay.io/org/osft-pipeline:0.1.0",
            "pvc_claim": "osft-demo-workspace", "workers": 2, "gpus_per_worker": 4, "train_args": dict(ARGS)}
    return trainjob_manifest(**{**base, **kw})


def test_manifest_validates_against_the_crd(validator: jsonschema.Draft7Validator) -> None:
    m = _manifest(cpu_per_worker="8", memory_per_worker="64Gi")
    errors = sorted(validator.iter_errors(m), key=lambda e: list(e.path))
    assert not errors, [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors]
    spec = m["spec"]
    assert spec["runtimeRef"]["name"] == "training-hub"
    assert spec["trainer"]["numNodes"] == 2
    assert spec["trainer"]["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == 4
    pod = spec["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    pod = pod["template"]["spec"]["template"]["spec"]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "osft-demo-workspace"
    assert pod["containers"][0]["volumeMounts"][0]["mountPath"] == "/workspace"


def test_argo_placeholders_are_accepted(validator: jsonschema.Draft7Validator) -> None:
    m = _manifest(name="{{workflow.name}}-train", namespace="{{workflow.namespace}}",
                  pvc_claim="{{workflow.name}}-workspace", runtime="my-runtime")
    assert m["spec"]["runtimeRef"]["name"] == "my-runtime"
    sample = json.loads(json.dumps(m).replace("{{workflow.name}}", "osft-x1").replace("{{workflow.namespace}}", "ml"))
    assert not list(validator.iter_errors(sample))


def test_schema_catches_a_broken_manifest(validator: jsonschema.Draft7Validator) -> None:
    bad = copy.deepcopy(_manifest())
    bad["spec"]["trainer"]["numNodes"] = "two"
    del bad["spec"]["runtimeRef"]
    messages = {e.message for e in validator.iter_errors(bad)}
    assert "'runtimeRef' is a required property" in messages and "'two' is not of type 'integer'" in messages


def test_command_runs_the_same_train_step_on_every_node() -> None:
    cmd = _manifest()["spec"]["trainer"]["command"]
    assert cmd[:5] == ["osft-pipeline", "step", "train", "--workspace", "/workspace"]
    flags = {c: cmd[i + 1] for i, c in enumerate(cmd[:-1]) if c.startswith("--")}
    assert "--use-liger" in cmd and "--no-checkpoint-at-epoch" in cmd
    assert cmd[cmd.index("--nnodes") + 1] == "2" and cmd[cmd.index("--nproc-per-node") + 1] == "4"
    assert cmd[cmd.index("--device") + 1] == "cuda" and flags["--model"] == "Qwen/Qwen2.5-1.5B-Instruct"


def test_command_is_accepted_by_the_cli() -> None:
    """The generated argv parses: the CLI reaches the step and fails only on the missing workspace."""
    cmd = _manifest(workers=1, gpus_per_worker=1)["spec"]["trainer"]["command"]
    cmd = [c if c != "/workspace" else "/nonexistent-osft-ws" for c in cmd]
    cmd = [c if c != "cuda" else "cpu" for c in cmd]
    proc = subprocess.run([sys.executable, "-m", "workflows.cli", *cmd[1:]], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 2 and "error: workspace /nonexistent-osft-ws does not exist" in proc.stderr


def test_no_secret_values_only_references(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_s3cretValueNeverInYaml")
    monkeypatch.setenv("OCI_PULL_SECRET_MODEL_DOWNLOAD", '{"auths": {"q": {"auth": "c2VjcmV0"}}}')
    m = _manifest(extra_env={"LOG_LEVEL": "info"})
    text = json.dumps(m)
    assert "hf_s3cretValueNeverInYaml" not in text and "c2VjcmV0" not in text
    env = {e["name"]: e for e in m["spec"]["trainer"]["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "HF_TOKEN", "optional": True}
    assert "value" not in env["HF_TOKEN"] and "value" not in env["OCI_PULL_SECRET_MODEL_DOWNLOAD"]
    assert env["LOG_LEVEL"]["value"] == "info"
    with pytest.raises(StepError, match="is a secret: secrets are attached by secretKeyRef only"):
        _manifest(extra_env={"HF_TOKEN": "x"})
    with pytest.raises(StepError, match="looks like a secret"):
        _manifest(extra_env={"WANDB_API_KEY": "x"})


@pytest.mark.parametrize(("kw", "msg"), [
    ({"name": "Bad_Name"}, "name="),
    ({"name": "x" * 64}, "name="),
    ({"workers": 0}, "workers=0"),
    ({"gpus_per_worker": True}, "gpus_per_worker=True"),
    ({"image": "has space"}, "image="),
    ({"train_args": {"learnin_rate": 1e-5}}, "unknown parameter"),
    ({"train_args": {"nnodes": 3}}, "must not set"),
    ({"workspace_path": "relative"}, "workspace_path="),
])
def test_bad_arguments(kw: dict, msg: str) -> None:
    with pytest.raises(StepError, match=msg):
        _manifest(**kw)
