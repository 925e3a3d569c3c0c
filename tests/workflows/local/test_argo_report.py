"""`osft-pipeline report --from-argo NAME`: a cluster run's report, from the Workflow the Argo Server returns."""

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from tests.argo_nodes import NodeBuilder
from tests.argo_stub import ArgoStub
from workflows.cli import app

NAME = "osft-minimal-pipeline-x7k2p"


def _node(node_id: str, name: str, phase: str, start: str, end: str, kind: str = "Pod", message: str = "",
          outputs: dict[str, str] | None = None) -> dict[str, Any]:
    n: dict[str, Any] = {"id": node_id, "name": f"{NAME}.{name}", "displayName": name, "type": kind,
                         "templateName": name, "phase": phase, "startedAt": start, "finishedAt": end}
    if message:
        n["message"] = message
    if outputs is not None:
        n["outputs"] = {"parameters": [{"name": k, "value": v} for k, v in outputs.items()], "exitCode": "0"}
    return n


def workflow(phase: str = "Succeeded", evaluate_phase: str = "Succeeded") -> dict[str, Any]:
    train = {"final_loss": 1.21, "min_loss": 1.1, "first_loss": 2.5, "steps": 40}
    ev = {"gate": "pass", "max_regression": 0.02, "tasks": ["arc_easy", "held_out"], "base_vs_tuned": [
        {"task": "arc_easy", "metric": "acc", "base": 0.61, "tuned": 0.63, "delta": 0.02,
         "verdict": "unchanged within stderr"},
        {"task": "held_out", "metric": "token_perplexity", "base": 9.1, "tuned": 5.2, "delta": -3.9,
         "verdict": "improved"}]}
    nodes = {
        "n0": _node("n0", "workspace-pvc", "Succeeded", "2026-01-01T10:00:00Z", "2026-01-01T10:00:05Z", "Pod"),
        "n1": _node("n1", "preflight", "Succeeded", "2026-01-01T10:00:10Z", "2026-01-01T10:01:00Z"),
        "n2": _node("n2", "train", "Succeeded", "2026-01-01T10:02:00Z", "2026-01-01T11:02:00Z",
                    outputs={"summary": json.dumps(train)}),
        "n3": _node("n3", "train-trainjob", "Skipped", "2026-01-01T10:02:00Z", "2026-01-01T10:02:00Z", "Skipped",
                    message="when 'single' == 'trainjob' evaluated false"),
        "n4": _node("n4", "evaluate", evaluate_phase, "2026-01-01T11:03:00Z", "2026-01-01T11:33:00Z",
                    message="" if evaluate_phase == "Succeeded" else "Error (exit code 2)",
                    outputs={"summary": json.dumps(ev)} if evaluate_phase == "Succeeded" else None),
        "n5": _node("n5", "register", "Skipped", "2026-01-01T11:34:00Z", "2026-01-01T11:34:00Z", "Skipped",
                    message="when '' != '' evaluated false"),
    }
    return {"metadata": {"name": NAME, "namespace": "ml", "uid": "u-1"},
            "spec": {"workflowTemplateRef": {"name": "osft-minimal-pipeline"}, "arguments": {"parameters": [
                {"name": "phase_01_dataset_man_data_uri", "value": "hf://org/data"},
                {"name": "phase_01_dataset_opt_hf_token", "value": "hf_secret_in_clear"}]}},
            "status": {"phase": phase, "startedAt": "2026-01-01T10:00:00Z", "finishedAt": "2026-01-01T11:35:00Z",
                       "message": "" if phase == "Succeeded" else "child 'n4' failed", "nodes": nodes,
                       "storedWorkflowTemplateSpec": {"arguments": {"parameters": [
                           {"name": "phase_01_dataset_man_data_uri", "value": ""},
                           {"name": "phase_02_train_man_train_epochs", "value": "1"}]}}}}


def _report(tmp_path: Path, wf: dict[str, Any], *extra: str) -> tuple[Any, Path]:
    stub = ArgoStub()
    try:
        stub.workflows[("ml", NAME)] = wf
        stub.polls_to_finish, stub.final_phase = 0, wf["status"]["phase"]
        out = tmp_path / "report"
        res = CliRunner().invoke(app, ["report", "--from-argo", NAME, "--out", str(out), "--host", stub.url,
                                       "--token", stub.token, "-n", "ml", *extra])
    finally:
        stub.close()
    return res, out


def test_a_succeeded_cluster_run_reports_like_a_local_one(tmp_path: Path) -> None:
    res, out = _report(tmp_path, workflow())
    assert res.exit_code == 0, res.output
    md = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    first = md.splitlines()[2]
    assert first.startswith("**PASSED the eval gate (no benchmark regressed beyond its stderr)** · arc_easy acc 0.61 "
                            "→ 0.63 (unchanged within stderr); held_out token_perplexity 9.1 → 5.2 (improved); loss "
                            "2.5 → 1.21 · model: not kept: a successful run's workspace volume is deleted")
    assert "skipped: no registry address (phase_04_registry_man_address is empty)" in md
    assert "'' != ''" not in md and "hf_secret_in_clear" not in md + page
    assert f'href="{"http://127.0.0.1"}' in page and f"/workflows/ml/{NAME}?nodeId=n2&amp;nodePanelView=logs" in page
    assert "You set: `phase_01_dataset_man_data_uri=hf://org/data`, `phase_01_dataset_opt_hf_token=***`" in md


def test_a_failed_cluster_run_names_the_step_and_the_retry(tmp_path: Path) -> None:
    res, out = _report(tmp_path, workflow("Failed", "Failed"))
    assert res.exit_code == 0, res.output
    first = (out / "report.md").read_text().splitlines()[2]
    assert first == ("**FAILED at step evaluate** · Error (exit code 2); fix it, then: argo retry -n ml "
                     f"{NAME} · loss 2.5 → 1.21 · model: "
                     f"`pvc://{NAME}-workspace/train/model` · load: `on the cluster: mount PVC {NAME}-workspace and "
                     'AutoModelForCausalLM.from_pretrained("/mnt/train/model")`')


def test_a_workspace_copy_brings_the_plots_and_full_files(tmp_path: Path) -> None:
    copy = tmp_path / "ws"
    (copy / "train").mkdir(parents=True)
    (copy / "train" / "metrics.json").write_text(json.dumps({"final_loss": 0.9, "first_loss": 3.0}))
    (copy / "dataset").mkdir()
    (copy / "dataset" / "summary.json").write_text(json.dumps({"rows": 1000}))
    res, out = _report(tmp_path, workflow(), "--workspace-copy", str(copy))
    assert res.exit_code == 0, res.output
    md = (out / "report.md").read_text()
    assert "loss 3 → 0.9" in md.splitlines()[2] and "| rows | 1000 |" in md
    res, _ = _report(tmp_path, workflow(), "--workspace-copy", str(tmp_path / "none"))
    assert res.exit_code == 2 and "no such folder" in res.output


def _retried(evaluate_phase: str = "Succeeded") -> dict[str, Any]:
    """The workflow above laid out the way Argo lays it out: every retried task a Retry node over its attempt pods
    (``train(0)`` failed, ``train(1)`` succeeded), the exit handler under ``<wf>.onExit`` (tests/argo_nodes.py)."""
    flat = workflow("Succeeded" if evaluate_phase == "Succeeded" else "Failed", evaluate_phase)
    b = NodeBuilder(NAME)
    root, on_exit = b.boundary(NAME), None
    for n in flat["status"]["nodes"].values():
        out = n.get("outputs")
        if n["type"] == "Skipped":
            b.task(root, n["displayName"], n["templateName"], "Skipped", message=n.get("message", ""))
            continue
        failures = [{"phase": "Failed", "message": "OOMKilled (exit code 137)"}] if n["displayName"] == "train" else []
        b.task(root, n["displayName"], n["templateName"], n["phase"],
               [*failures, {"phase": n["phase"], "message": n.get("message", ""), "outputs": out}])
    on_exit = b.boundary(f"{NAME}.onExit")
    b.task(on_exit, "record-status", "record-status", "Succeeded", [{"phase": "Succeeded", "outputs": {
        "parameters": [{"name": "final_loss", "value": "1.21"}, {"name": "eval_gate", "value": "pass"}]}}])
    flat["status"]["nodes"] = b.nodes
    return flat


def test_a_retried_task_is_one_step_with_its_last_attempt(tmp_path: Path) -> None:
    """Argo runs a retried task's attempts as pods named ``train(0)``, ``train(1)`` under a Retry node ``train``:
    the report shows the task once, with its final phase, outputs and the last attempt's log."""
    res, out = _report(tmp_path, _retried())
    assert res.exit_code == 0, res.output
    run = json.loads((out / "run.json").read_text())
    assert run["order"] == ["workspace-pvc", "preflight", "train", "train-trainjob", "evaluate", "register"]
    train = run["tasks"]["train"]
    assert (train["phase"], train["attempts"]) == ("Succeeded", 2)
    last_pod = next(k for k, n in _retried()["status"]["nodes"].items() if n["displayName"] == "train(1)")
    assert train["log_url"].endswith(f"?nodeId={last_pod}&nodePanelView=logs")
    assert run["exit_handler"]["name"] == "record-status" and run["exit_handler"]["outputs"]["eval_gate"] == "pass"
    first = (out / "report.md").read_text().splitlines()[2]
    assert first.startswith("**PASSED the eval gate") and "loss 2.5 → 1.21" in first


def test_a_task_that_failed_every_attempt_says_why(tmp_path: Path) -> None:
    res, out = _report(tmp_path, _retried("Failed"))
    assert res.exit_code == 0, res.output
    run = json.loads((out / "run.json").read_text())
    assert run["tasks"]["evaluate"]["message"] == "Error (exit code 2)"  # the attempt's, not "No more retries left"
    assert run["workflow"]["failed_task"] == "evaluate"


def test_a_published_model_is_where_the_report_says_it_is(tmp_path: Path) -> None:
    """A successful run deletes its workspace; when it published, the report's first line names the durable URI
    (from the publish task's summary output), not "not kept"."""
    wf = workflow()
    summary = {"status": "published", "uri": "s3://models/osft/osft-model/1.0.0",
               "manifest": "s3://models/osft/osft-model/1.0.0/osft-manifest.json", "total_bytes": 1234, "files": 5}
    wf["status"]["nodes"]["n6"] = _node("n6", "publish", "Succeeded", "2026-01-01T11:33:30Z", "2026-01-01T11:33:50Z",
                                        outputs={"summary": json.dumps(summary)})
    wf["status"]["nodes"]["n7"] = _node("n7", "publish-pvc", "Skipped", "2026-01-01T11:33:30Z",
                                        "2026-01-01T11:33:30Z", "Skipped", message="when 's3' == 'pvc' evaluated false")
    res, out = _report(tmp_path, wf)
    assert res.exit_code == 0, res.output
    first = (out / "report.md").read_text().splitlines()[2]
    assert "model: `s3://models/osft/osft-model/1.0.0`" in first and "not kept" not in first
    assert "aws s3 sync s3://models/osft/osft-model/1.0.0 model/" in first
