"""The preflight task (parameter rules + secrets) and the exit handler, including through Hera's runner."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from steps.common.errors import StepError
from steps.finish import record_status
from steps.preflight import check_environment
from workflows.argo.preflight import PreflightInputs, resolve
from workflows.params import PARAMS, ParamError

ROOT = Path(__file__).resolve().parents[2]
SECRET_VARS = ("HF_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "OCI_PULL_SECRET_MODEL_DOWNLOAD",
               "KUBERNETES_SERVER_URL", "KUBERNETES_AUTH_TOKEN")


@pytest.fixture(autouse=True)
def _no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRET_VARS:
        monkeypatch.delenv(name, raising=False)


def _raw(**over: str) -> dict[str, str]:
    fields = PreflightInputs.model_fields
    return {k: f.default for k, f in fields.items()} | {"phase_01_dataset_man_data_uri": "/data/x.jsonl"} | over


def test_inputs_are_every_parameter_as_text() -> None:
    """One preflight entry per template, taking exactly that template's parameters (in its order) as text, with
    that template's defaults."""
    from workflows.argo.preflight import PREFLIGHT, PreflightInputsFull
    from workflows.params import FULL, MINIMAL, params_for

    for model, template in ((PreflightInputs, MINIMAL), (PreflightInputsFull, FULL)):
        names = [p.name for p in params_for(template)]
        assert list(model.model_fields) == names + ["workspace", "workflow_name"]
        assert all(f.annotation is str for f in model.model_fields.values())
        assert model.model_fields["phase_02_train_opt_cpu"].default == {MINIMAL: "4", FULL: "8"}[template]
    assert len(PreflightInputsFull.model_fields) == len(PARAMS) + 2  # the full template takes every parameter
    assert {t: f.__name__ for t, f in PREFLIGHT.items()} == {MINIMAL: "preflight", FULL: "preflight_full"}


def test_resolve_normalises_what_later_tasks_take(tiny_model: Path) -> None:
    model = str(tiny_model)
    out, values = resolve(_raw(phase_03_eval_man_eval_tasks="arc_easy, mmlu", phase_02_train_man_train_workers="3",
                               phase_02_train_man_train_model=model))
    assert values["phase_02_train_man_train_workers"] == 3
    assert out["eval_tasks"] == '["arc_easy", "mmlu"]' and out["train_mode"] == "trainjob"
    assert out["base_model"] == model
    out, _ = resolve(_raw(phase_03_eval_opt_compare_base="false", phase_02_train_man_train_model=model))
    assert out["base_model"] == "" and out["train_mode"] == "single" and out["eval_tasks"] == '["arc_easy"]'


def test_offline_hub_model_must_be_in_the_cache() -> None:
    """Offline (the suite sets HF_HUB_OFFLINE=1) the default Hub model is not cached here: the train step would
    stop after the dataset step, so the preflight stops first."""
    with pytest.raises(ParamError, match="phase_02_train_man_train_model: model Qwen/Qwen2.5-1.5B-Instruct: the "
                                         "Hugging Face Hub is offline here"):
        resolve(_raw())


@pytest.mark.parametrize("over, message", [
    ({"phase_01_dataset_man_data_uri": ""}, "phase_01_dataset_man_data_uri is required"),
    ({"phase_01_dataset_man_data_split": "1.5"}, "must be in (0, 1]"),
    ({"phase_04_registry_man_reg_version": "v1"}, "semantic version"),
    ({"phase_02_train_man_train_workers": "two"}, "must be an integer"),
])
def test_resolve_rejects_bad_values_with_the_cli_rules(over: dict[str, str], message: str) -> None:
    with pytest.raises(ParamError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        resolve(_raw(**over))


def test_s3_needs_both_aws_keys(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEY")
    with pytest.raises(StepError, match="AWS_SECRET_ACCESS_KEY is not set: create the secret s3-secret"):
        check_environment(str(workspace), "s3://bucket/data.jsonl", "/models/base")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    out = check_environment(str(workspace), "s3://bucket/data.jsonl", "/models/base")
    assert out["warnings"] == [] and out["secrets_set"]["AWS_SECRET_ACCESS_KEY"] is True
    log = (workspace / "pipeline_log.txt").read_text()
    assert "very-secret-value" not in log and "AKIAEXAMPLEKEY" not in log and "AWS_SECRET_ACCESS_KEY" in log


def test_hub_inputs_without_token_warn(workspace: Path) -> None:
    out = check_environment(str(workspace), "hf://org/data", "Qwen/Qwen2.5-1.5B-Instruct")
    assert len(out["warnings"]) == 2 and all("hf-token" in w for w in out["warnings"])
    assert check_environment(str(workspace), "hf://org/data", "Qwen/Qwen2.5-1.5B-Instruct",
                             hf_token="hf_abc")["warnings"] == []


def test_oci_model_pull_secret(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = check_environment(str(workspace), "/d.jsonl", "oci://quay.io/org/model:1")
    assert "oci-pull-secret-model-download" in out["warnings"][0]
    monkeypatch.setenv("OCI_PULL_SECRET_MODEL_DOWNLOAD", "not json")
    with pytest.raises(StepError, match='not a Docker config.json with an "auths" object'):
        check_environment(str(workspace), "/d.jsonl", "oci://quay.io/org/model:1")
    monkeypatch.setenv("OCI_PULL_SECRET_MODEL_DOWNLOAD", json.dumps({"auths": {"quay.io": {"auth": "eA=="}}}))
    assert check_environment(str(workspace), "/d.jsonl", "oci://quay.io/org/model:1")["warnings"] == []


def test_trainjob_needs_cluster_access(workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = str(tmp_path / "no-token")
    with pytest.raises(StepError, match="workers=2 runs a Kubeflow Trainer TrainJob"):
        check_environment(str(workspace), "/d.jsonl", "/m", workers=2, token_path=missing)
    sa = tmp_path / "token"
    sa.write_text("t")
    check_environment(str(workspace), "/d.jsonl", "/m", workers=2, token_path=str(sa))
    monkeypatch.setenv("KUBERNETES_SERVER_URL", "https://api.example:6443")
    with pytest.raises(StepError, match="sets KUBERNETES_SERVER_URL but not KUBERNETES_AUTH_TOKEN"):
        check_environment(str(workspace), "/d.jsonl", "/m", workers=2, token_path=missing)
    monkeypatch.setenv("KUBERNETES_AUTH_TOKEN", "tok-123456")
    check_environment(str(workspace), "/d.jsonl", "/m", workers=2, token_path=missing)


def _run_runner(entry: str, inputs: list[dict[str, str]], tmp_path: Path, env: dict[str, str] | None = None
                ) -> subprocess.CompletedProcess[str]:
    """Exactly what the Argo pod runs: python -m hera.workflows.runner -e <entry> <inputs.json>."""
    src = tmp_path / "inputs.json"
    src.write_text(json.dumps(inputs))
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "hera__outputs_directory": str(tmp_path / "hera-outputs"),
                **(env or {})}
    return subprocess.run([sys.executable, "-m", "hera.workflows.runner", "-e", entry, str(src)],
                          capture_output=True, text=True, env=full_env, timeout=120)


def test_preflight_through_heras_runner(workspace: Path, tmp_path: Path, tiny_model: Path) -> None:
    raw = _raw(workspace=str(workspace), phase_02_train_man_train_model=str(tiny_model),
               phase_03_eval_man_eval_tasks="gsm8k,mmlu")
    res = _run_runner("workflows.argo.preflight:preflight", [{"name": k, "value": v} for k, v in raw.items()], tmp_path)
    assert res.returncode == 0, res.stderr
    outs = tmp_path / "hera-outputs" / "parameters"
    assert (outs / "train_mode").read_text() == "single"
    assert (outs / "base_model").read_text() == str(tiny_model)
    assert json.loads((outs / "eval_tasks").read_text()) == ["gsm8k", "mmlu"]
    assert "[preflight] ok" in (workspace / "pipeline_log.txt").read_text()


def test_preflight_failure_is_fast_and_logged(workspace: Path, tmp_path: Path, tiny_model: Path) -> None:
    raw = _raw(workspace=str(workspace), phase_01_dataset_man_data_uri="s3://bucket/x.jsonl",
               phase_02_train_man_train_model=str(tiny_model))
    res = _run_runner("workflows.argo.preflight:preflight", [{"name": k, "value": v} for k, v in raw.items()], tmp_path)
    assert res.returncode != 0 and "create the secret s3-secret" in res.stderr
    assert "[preflight] error: data_uri is s3://" in (workspace / "pipeline_log.txt").read_text()
    # Hera writes placeholder outputs on failure (so Argo can collect them); none says "single"
    assert (tmp_path / "hera-outputs" / "parameters" / "train_mode").read_text() != "single"


def test_exit_handler_records_status_and_key_numbers(workspace: Path, tmp_path: Path) -> None:
    (workspace / "train").mkdir()
    (workspace / "train" / "metrics.json").write_text(json.dumps({"final_loss": 1.25, "steps": 40}))
    (workspace / "eval").mkdir()
    (workspace / "eval" / "comparison.json").write_text(json.dumps({"gate": "pass", "rows": []}))
    res = _run_runner("steps.finish:record_status", [
        {"name": "workspace", "value": str(workspace)}, {"name": "status", "value": "Succeeded"},
        {"name": "workflow", "value": "osft-minimal-pipeline-x1"}, {"name": "duration", "value": "93.4"},
        {"name": "outputs_dir", "value": str(tmp_path / "outputs")}], tmp_path)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "outputs"
    assert (out / "final_loss").read_text() == "1.25" and (out / "train_steps").read_text() == "40"
    assert (out / "eval_gate").read_text() == "pass" and (out / "registration_status").read_text() == ""
    log = (workspace / "pipeline_log.txt").read_text()
    assert "[exit] workflow osft-minimal-pipeline-x1 finished: Succeeded after 93s (final_loss 1.25" in log


def test_exit_handler_after_failure_reports_last_error(workspace: Path) -> None:
    (workspace / "pipeline_log.txt").write_text("2026-01-01T00:00:00Z [dataset] error: no rows found\n")
    out = record_status(str(workspace), "Failed", "wf-1", "{{workflow.duration}}")
    assert out["status"] == "Failed" and out["duration"] == "" and "no rows found" in out["last_error"]


def test_preflight_says_where_the_model_will_live() -> None:
    from workflows.argo.preflight import model_home, routing

    base = {"phase_04_registry_man_reg_name": "m", "phase_04_registry_man_reg_version": "auto"}
    level, line = model_home({**base, "phase_04_registry_man_address": "reg",
                              "phase_04_registry_opt_storage_uri": "s3://b/p/"}, "wf-1")
    assert level == "ok" and "published to s3://b/p/m/<workflow name>" in line and "then registered" in line
    level, line = model_home({**base, "phase_04_registry_man_address": "reg", "phase_04_registry_opt_storage_uri": ""},
                             "wf-1")
    assert level == "ok" and "pvc://wf-1-workspace/" in line and "kept after the run" in line
    assert "kubectl delete pvc wf-1-workspace" in line
    level, line = model_home({**base, "phase_04_registry_man_address": "", "phase_04_registry_opt_storage_uri": ""})
    assert level == "warning" and "deleted when the run succeeds" in line
    assert routing({"phase_04_registry_opt_storage_uri": "pvc://models-pvc/x"}) == {
        "publish_mode": "pvc", "models_claim": "models-pvc"}
    assert routing({"phase_04_registry_opt_storage_uri": ""}) == {"publish_mode": "none", "models_claim": ""}


def test_an_s3_storage_uri_needs_the_s3_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    with pytest.raises(StepError, match="storage_uri is s3:// but AWS_ACCESS_KEY_ID"):
        check_environment(str(tmp_path), data_uri="/data/x.jsonl", model="/m", storage_uri="s3://models/p")


def test_exit_handler_reports_a_registration_attempt_so_the_workspace_is_kept(tmp_path: Path) -> None:
    """register writes registry/attempt.json before its first write to the registry: a run that failed after it
    reports 'registering' (reown-workspace then leaves the claim kept); one that never got there reports ''."""
    ws = tmp_path / "ws"
    out_dir = tmp_path / "out"
    assert record_status(str(ws), "Failed", "wf", "1", str(out_dir))["registration_status"] == ""
    (ws / "registry").mkdir()
    (ws / "registry" / "attempt.json").write_text(json.dumps({"status": "registering"}))
    assert record_status(str(ws), "Failed", "wf", "1", str(out_dir))["registration_status"] == "registering"
    assert (out_dir / "registration_status").read_text() == "registering"
    (ws / "registry" / "registration.json").write_text(json.dumps({"status": "registered"}))
    assert record_status(str(ws), "Succeeded", "wf", "1", str(out_dir))["registration_status"] == "registered"


def test_register_writes_the_attempt_before_reaching_the_registry(tmp_path: Path) -> None:
    from steps.register import register_model
    from tests.steps.publish.conftest import make_checkpoint

    ws = tmp_path / "ws"
    make_checkpoint(ws)
    with pytest.raises(StepError):  # nothing listens there: connecting fails, before any write
        register_model(str(ws), address="http://127.0.0.1:9", pvc_claim="wf-workspace", retries=0)
    assert not (ws / "registry" / "attempt.json").exists()
