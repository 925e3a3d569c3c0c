"""Submission through the real Hera client against an Argo Server stub that validates every body (swagger.json)."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.argo_stub import ArgoStub
from workflows.argo.pipeline import CRON_NAME, NAME
from workflows.argo.submit import ArgoError, ArgoTarget, install_cron, set_cron_suspended, submit_from_template
from workflows.cli import app
from workflows.params import ParamError

DATA = "phase_01_dataset_man_data_uri"


@pytest.fixture()
def stub() -> Iterator[ArgoStub]:
    s = ArgoStub()
    yield s
    s.close()


def _target(stub: ArgoStub, token: str | None = None) -> ArgoTarget:
    return ArgoTarget.resolve(host=stub.url, token=token or stub.token, namespace="ml")


def test_install_submit_from_template_and_wait(stub: ArgoStub) -> None:
    run = submit_from_template(_target(stub), {DATA: "s3://bucket/chat.jsonl", "phase_02_train_opt_use_liger": "False",
                                               "phase_03_eval_man_eval_tasks": "arc_easy, mmlu"},
                               install=True, wait=True, poll_seconds=0.01)
    assert run["phase"] == "Succeeded" and run["name"].startswith(f"{NAME}-")
    assert stub.invalid == []
    calls = [(m, p) for m, p, _ in stub.requests]
    assert calls[:3] == [("GET", f"/api/v1/workflow-templates/ml/{NAME}"),
                         ("POST", "/api/v1/workflow-templates/ml"),
                         ("POST", "/api/v1/workflows/ml/submit")]
    submit_body = stub.requests[2][2]
    # exactly what `argo submit --from workflowtemplate/osft-minimal-pipeline -p k=v` sends; values normalised
    assert submit_body == {
        "namespace": "ml", "resourceKind": "WorkflowTemplate", "resourceName": NAME,
        "submitOptions": {"generateName": f"{NAME}-", "parameters": [
            f"{DATA}=s3://bucket/chat.jsonl", "phase_02_train_opt_use_liger=false",
            'phase_03_eval_man_eval_tasks=["arc_easy", "mmlu"]']},
    }
    assert ("ml", NAME) in stub.templates and calls[3:] == [("GET", f"/api/v1/workflows/ml/{run['name']}")] * 2


def test_second_install_updates_with_resource_version(stub: ArgoStub) -> None:
    t = _target(stub)
    submit_from_template(t, {DATA: "/data/chat.jsonl"}, install=True)
    submit_from_template(t, {DATA: "/data/chat.jsonl"}, install=True)
    puts = [p for m, p, _ in stub.requests if m == "PUT"]
    assert puts == [f"/api/v1/workflow-templates/ml/{NAME}"] and stub.invalid == []
    assert stub.templates[("ml", NAME)]["metadata"]["resourceVersion"] == "2"


def test_bad_parameter_fails_before_any_request(stub: ArgoStub) -> None:
    with pytest.raises(Exception, match="phase_02_train_man_train_epochs: epochs=0: must be an integer >= 1"):
        submit_from_template(_target(stub), {DATA: "/d.jsonl", "phase_02_train_man_train_epochs": "0"})
    with pytest.raises(Exception, match="is required"):
        submit_from_template(_target(stub), {})
    assert stub.requests == []


def test_template_missing_on_server_is_a_clear_error(stub: ArgoStub) -> None:
    with pytest.raises(ArgoError, match="workflowtemplate/osft-minimal-pipeline is not installed in namespace ml: "
                                        "install it"):
        submit_from_template(_target(stub), {DATA: "/d.jsonl"})


def test_wrong_token_is_one_line_error_and_token_is_not_echoed(stub: ArgoStub) -> None:
    res = CliRunner().invoke(app, ["submit", "-p", f"{DATA}=/d.jsonl", "--host", stub.url,
                                   "--token", "wrong-token-123", "-n", "ml"])
    assert res.exit_code == 2
    assert "rejected the token (401)" in res.output and "wrong-token-123" not in res.output


def test_cli_uses_argo_env_vars_and_wait_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    stub = ArgoStub(final_phase="Failed")
    try:
        monkeypatch.setenv("ARGO_SERVER", stub.url.removeprefix("http://"))  # host:port, like the argo CLI
        monkeypatch.setenv("ARGO_SECURE", "false")
        monkeypatch.setenv("ARGO_TOKEN", stub.token)
        monkeypatch.setenv("ARGO_NAMESPACE", "team-a")
        res = CliRunner().invoke(app, ["submit", "--install", "--wait", "--poll-seconds", "0.01",
                                       "-p", f"{DATA}=hf://org/data", "-o", "json"])
        assert res.exit_code == 1, res.output  # the run failed
        assert '"phase": "Failed"' in res.output
        assert ("team-a", NAME) in stub.templates and stub.invalid == []
    finally:
        stub.close()


def test_cron_install_update_suspend_resume(stub: ArgoStub) -> None:
    t = _target(stub)
    submit_from_template(t, {DATA: "/d.jsonl"}, install=True)
    with pytest.raises(ParamError, match="continue_from='latest' needs a storage URI"):  # the cron's lineage
        install_cron(t, {DATA: "s3://b/weekly.jsonl"})
    storage = {"phase_04_registry_opt_storage_uri": "s3://models/osft"}
    install_cron(t, {DATA: "s3://b/weekly.jsonl", **storage}, schedule="0 4 * * 1", timezone="Europe/Berlin")
    cron = stub.crons[("ml", CRON_NAME)]
    assert cron["spec"]["schedules"] == ["0 4 * * 1"] and cron["spec"]["timezone"] == "Europe/Berlin"
    assert cron["spec"].get("suspend") is False
    args = {p["name"]: p["value"] for p in cron["spec"]["workflowSpec"]["arguments"]["parameters"]}
    assert args == {DATA: "s3://b/weekly.jsonl", "phase_04_registry_man_reg_version": "auto", **storage,
                    "phase_02_train_opt_continue_from": "latest", "phase_01_dataset_opt_since": "last"}
    install_cron(t, {DATA: "s3://b/v2.jsonl", "phase_02_train_opt_continue_from": "",  # lineage off: no storage
                     "phase_01_dataset_opt_since": ""})  # second install = GET + PUT with the resourceVersion
    assert [m for m, p, _ in stub.requests if p.startswith("/api/v1/cron-workflows")] == ["GET", "POST", "GET", "PUT"]
    assert set_cron_suspended(t, True) is True and stub.crons[("ml", CRON_NAME)]["spec"]["suspend"] is True
    res = CliRunner().invoke(app, ["cron", "resume", "--host", stub.url, "--token", stub.token, "-n", "ml"])
    assert res.exit_code == 0 and "active" in res.output
    assert stub.crons[("ml", CRON_NAME)]["spec"]["suspend"] is False
    assert stub.invalid == []


def test_cron_install_requires_a_dataset(stub: ArgoStub) -> None:
    res = CliRunner().invoke(app, ["cron", "install", "--host", stub.url, "--token", stub.token])
    assert res.exit_code == 2 and "phase_01_dataset_man_data_uri is required" in res.output
    assert stub.requests == []


def test_stub_rejects_bodies_that_do_not_match_swagger(stub: ArgoStub) -> None:
    """The stub really validates: a body with a misspelt field is refused and recorded."""
    import requests

    r = requests.post(f"{stub.url}/api/v1/workflows/ml/submit", timeout=5,
                      headers={"Authorization": f"Bearer {stub.token}"},
                      json={"namespace": "ml", "resourceKind": "WorkflowTemplate", "resourceName": NAME,
                            "submitOptions": {"parameterz": ["a=b"]}})
    assert r.status_code == 400 and "parameterz" in stub.invalid[0]


def test_install_installs_what_compile_writes_for_the_same_options(stub: ArgoStub, tmp_path: Path) -> None:
    """`submit --install --image I --artifacts -n ns` = `compile --image I --artifacts -n ns`: the same
    WorkflowTemplate (through the Argo Server) and the same RBAC (through the Kubernetes API)."""
    from tests.k8s_stub import KubeStub
    from workflows.argo import compile as comp
    from workflows.argo import goyaml

    kube = KubeStub()
    try:
        env = {"KUBECONFIG": str(kube.kubeconfig(tmp_path / "kc")), "ARGO_NAMESPACE": ""}
        res = CliRunner().invoke(app, ["submit", "--install", "--image", "reg.example/osft:7", "--artifacts",
                                       "-p", f"{DATA}=hf://o/d", "--host", stub.url, "--token", stub.token,
                                       "-n", "team"], env=env)
        assert res.exit_code == 0, res.output
        assert kube.invalid == [] and stub.invalid == []
        comp.write(tmp_path / "out", image="reg.example/osft:7", artifacts=True, namespace="team")
        compiled = comp.load_docs(tmp_path / "out" / "osft-minimal-pipeline.yaml")[0]
        installed = stub.templates[("team", NAME)]
        assert installed["spec"] == goyaml.load(goyaml.dump(compiled["spec"]))
        for doc in comp.load_docs(tmp_path / "out" / "rbac.yaml"):
            got = kube.objects[(doc["kind"], "team", doc["metadata"]["name"])]
            assert {k: v for k, v in got.items() if k != "metadata"} == {k: v for k, v in doc.items()
                                                                          if k != "metadata"}
        # a second install replaces them in place (resourceVersion), as kubectl apply would
        res = CliRunner().invoke(app, ["submit", "--install", "-p", f"{DATA}=hf://o/d", "--host", stub.url,
                                       "--token", stub.token, "-n", "team"], env=env)
        assert res.exit_code == 0 and kube.invalid == []
        assert [m for m, p, _ in kube.requests if p.endswith("/roles/osft-pipeline")] == ["GET", "PUT"]
    finally:
        kube.close()


def test_install_without_a_kubeconfig_installs_the_template_and_says_rbac_was_not(stub: ArgoStub,
                                                                                  tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["submit", "--install", "-p", f"{DATA}=hf://o/d", "--host", stub.url,
                                   "--token", stub.token, "-n", "ml"],
                             env={"KUBECONFIG": str(tmp_path / "none"), "HOME": str(tmp_path),
                                  "KUBERNETES_SERVICE_HOST": ""})
    assert res.exit_code == 0 and ("ml", NAME) in stub.templates
    assert "warning: RBAC not installed (no Kubernetes API configured" in res.output


def test_the_full_template_installs_submits_and_gets_its_own_cron(stub: ArgoStub) -> None:
    """--from workflowtemplate/osft-pipeline: checked with that template's parameters, installed and submitted;
    its cron (osft-pipeline-retrain) is installed, suspended and resumed beside the minimal one's."""
    t = _target(stub)
    values = {DATA: "s3://b/chat.jsonl", "phase_02_train_opt_lr_scheduler": "linear",
              "phase_02_train_opt_lr_warmup": "10", "phase_03_eval_opt_gen_kwargs": "max_gen_toks=64"}
    with pytest.raises(ParamError, match="is a parameter of the osft-pipeline template"):
        submit_from_template(t, values)  # the default --from is the minimal template
    run = submit_from_template(t, values, install=True, from_ref="workflowtemplate/osft-pipeline")
    assert run["name"].startswith("osft-pipeline-") and ("ml", "osft-pipeline") in stub.templates
    body = next(b for m, p, b in stub.requests if p == "/api/v1/workflows/ml/submit")
    assert body["resourceName"] == "osft-pipeline"
    assert "phase_03_eval_opt_gen_kwargs={\"max_gen_toks\": 64}" in body["submitOptions"]["parameters"]
    install_cron(t, {DATA: "s3://b/weekly.jsonl", "phase_02_train_opt_unmask": "true",
                     "phase_04_registry_opt_storage_uri": "s3://models/osft"}, template="osft-pipeline")
    cron = stub.crons[("ml", "osft-pipeline-retrain")]
    assert cron["spec"]["workflowSpec"]["workflowTemplateRef"] == {"name": "osft-pipeline"}
    res = CliRunner().invoke(app, ["cron", "suspend", "--template", "osft-pipeline", "--host", stub.url, "--token",
                                   stub.token, "-n", "ml"])
    assert res.exit_code == 0 and "cronworkflow/osft-pipeline-retrain suspended" in res.output
    assert ("ml", CRON_NAME) not in stub.crons and stub.invalid == []
