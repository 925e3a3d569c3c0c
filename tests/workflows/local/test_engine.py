"""`osft-pipeline run --local`: a Hera-compiled test template executed from its YAML, end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from steps.common.errors import StepError
from tests.local_steps import build_template
from tests.tiny_assets import chat_rows, write_jsonl
from workflows.local.engine import LocalRunner
from workflows.local.pod import parse_progress

ROOT = Path(__file__).resolve().parents[3]
SECRET = "hf_localRunnerSecret9876"


def run_cli(template: Path, ws: Path, *params: str, extra: tuple[str, ...] = (),
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "workflows.cli", "run", "--local", "--template", str(template),
           "--workspace", str(ws), *extra]
    for p in params:
        cmd += ["-p", p]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=300)


def tasks(ws: Path) -> dict[str, Any]:
    return json.loads((ws / "run.json").read_text())["tasks"]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tmpl") / "local-test.yaml"
    path.write_text(build_template(), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "chat.jsonl", chat_rows(40))


@pytest.fixture(scope="module")
def full_run(template: Path, data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """All steps, registry address given, a secret passed both as parameter and as the hf-token secret env."""
    ws = tmp_path_factory.mktemp("full") / "ws"
    proc = run_cli(template, ws, f"data_uri={data}", "split=0.5", "train_steps=4",
                   "registry_address=http://127.0.0.1:9", f"hf_token={SECRET}", env={"HF_TOKEN": SECRET})
    return ws, proc


def test_all_steps_succeed_and_overrides_reach_them(full_run: tuple[Path, Any]) -> None:
    ws, proc = full_run
    assert proc.returncode == 0, proc.stderr
    t = tasks(ws)
    assert {n: v["phase"] for n, v in t.items()} == {"dataset": "Succeeded", "train": "Succeeded",
                                                     "evaluate": "Succeeded", "register": "Succeeded"}
    assert json.loads(t["dataset"]["result"])["train_rows"] == 20  # split=0.5 of 40 rows
    metrics = json.loads((ws / "train" / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["train_rows"] == 20 and metrics["hf_token_set"] is True
    assert t["evaluate"]["outputs"] == {"gate": "pass"}  # read back from valueFrom.path
    reg = json.loads((ws / "registry" / "registration.json").read_text())
    assert reg["name"] == "osft-model-pass" and reg["address"] == "http://127.0.0.1:9"  # {{= }} + task output
    assert all(v["exit_code"] == 0 and v["peak_rss_mb"] > 0 for v in t.values())
    assert "step 4/4 loss 0.5000" in proc.stderr  # training progress parsed from the metrics lines
    assert "workflow Succeeded; failed: none" in (ws / "pipeline_log.txt").read_text()  # onExit ran
    for name in t:
        assert (ws / "logs" / f"{name}.log").is_file()


def test_no_secret_anywhere(full_run: tuple[Path, Any]) -> None:
    ws, proc = full_run
    files = [p for p in ws.rglob("*") if p.is_file()]  # .pods included: a staged script must not remain
    assert {"run.json", "report.html", "report.md", "pipeline_log.txt"} <= {p.name for p in files}
    for p in files:
        assert SECRET.encode() not in p.read_bytes(), p
    assert SECRET not in proc.stderr + proc.stdout
    assert json.loads((ws / "run.json").read_text())["parameters"]["hf_token"] == "***"


def test_when_false_skips_and_report_says_so(template: Path, data: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    proc = run_cli(template, ws, f"data_uri={data}", "train_steps=2")
    assert proc.returncode == 0, proc.stderr
    reg = tasks(ws)["register"]
    assert reg["phase"] == "Skipped" and "'' != ''" in reg["message"]
    assert not (ws / "registry").exists()
    md = (ws / "report.md").read_text()
    assert "registry/registration.json missing" in md and "step 'register' Skipped" in md


def test_failing_step_stops_dependants_then_resume(template: Path, data: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    proc = run_cli(template, ws, f"data_uri={data}", "train_fail=true", "registry_address=http://x:1")
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "step 'train' failed (exit 1): training diverged: loss is NaN" in errors[0]
    assert "--from-step train" in errors[0]
    t = tasks(ws)
    assert (t["dataset"]["phase"], t["train"]["phase"]) == ("Succeeded", "Failed")
    assert t["evaluate"]["phase"] == t["register"]["phase"] == "Omitted"
    run = json.loads((ws / "run.json").read_text())
    assert run["workflow"]["phase"] == "Failed" and run["workflow"]["failed_task"] == "train"
    assert "workflow Failed; failed: train" in (ws / "pipeline_log.txt").read_text()
    assert "training diverged" in (ws / "report.md").read_text()

    proc = run_cli(template, ws, "train_fail=false", extra=("--from-step", "train"))
    assert proc.returncode == 0, proc.stderr
    t = tasks(ws)
    assert t["dataset"]["reused"] and t["dataset"]["phase"] == "Succeeded"
    assert [t[n]["phase"] for n in ("train", "evaluate", "register")] == ["Succeeded"] * 3
    assert (ws / "pipeline_log.txt").read_text().count("[dataset] start") == 1  # not re-run
    run = json.loads((ws / "run.json").read_text())
    assert run["workflow"]["from_step"] == "train"
    assert run["parameters"]["registry_address"] == "http://x:1"  # earlier parameters kept on resume


def test_progress_from_metrics_file_and_fresh_workspace(template: Path, data: Path, tmp_path: Path) -> None:
    d = yaml.safe_load(template.read_text())
    dag = next(t for t in d["spec"]["templates"] if t["name"] == "pipeline")["dag"]
    train = next(t for t in dag["tasks"] if t["name"] == "train")
    train["arguments"]["parameters"].append({"name": "slow", "value": "1.3"})
    seen: list[str] = []
    ws = tmp_path / "ws"
    (ws / "registry").mkdir(parents=True)
    (ws / "registry" / "registration.json").write_text("{}")
    with pytest.raises(StepError, match="is not empty and holds no earlier local run"):
        LocalRunner(d, ws, overrides={"data_uri": str(data)}).run()
    (ws / "run.json").write_text("{}")  # an earlier run's folder is cleared, like a fresh volume
    state = LocalRunner(d, ws, overrides={"data_uri": str(data)},
                        listener=lambda st, ev: seen.append(st.tasks["train"].progress)).run()
    assert state.phase == "Succeeded" and not (ws / "registry").exists()
    assert "step 2/3 loss 1.0000" in seen  # read from train/training_metrics_0.jsonl while the step ran


def test_bad_inputs_fail_early_with_one_line(template: Path, data: Path, tmp_path: Path) -> None:
    proc = run_cli(template, tmp_path / "a", f"data_uri={data}", "trian_steps=2")
    assert proc.returncode == 2 and "unknown parameter 'trian_steps' (did you mean train_steps?)" in proc.stderr
    assert not (tmp_path / "a").exists()
    proc = run_cli(template, tmp_path / "b", extra=("--from-step", "evaluate"))
    assert proc.returncode == 2 and "no earlier run" in proc.stderr
    proc = run_cli(tmp_path / "missing.yaml", tmp_path / "c")
    assert proc.returncode == 2 and "template" in proc.stderr and "not found" in proc.stderr
    proc = run_cli(template, tmp_path / "d", "data_uri=/nonexistent/chat.jsonl")
    assert proc.returncode == 2 and "step 'dataset' failed (exit 1)" in proc.stderr


# ------------------------------------------------------------------------- small hand-written templates


def doc(tasks_: list[dict[str, Any]], templates: list[dict[str, Any]], args: dict[str, str] | None = None,
        **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTemplate", "metadata": {"name": "t"},
            "spec": {"entrypoint": "main", "arguments": {"parameters": [{"name": k, "value": v}
                                                                        for k, v in (args or {}).items()]},
                     "volumeClaimTemplates": [{"metadata": {"name": "ws"}, "spec": {}}],
                     "templates": [{"name": "main", "dag": {"tasks": tasks_}}, *templates], **spec}}


def py(name: str, code: str, inputs: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    return {"name": name, "inputs": {"parameters": [{"name": i} for i in inputs]},
            "container": {"image": "x", "command": ["python", "-c", code],
                          "volumeMounts": [{"name": "ws", "mountPath": "/data"}], **extra.pop("container", {})},
            **extra}


def test_container_template_mounts_outputs_and_parallel_branches(tmp_path: Path) -> None:
    code = ("import os, sys; os.makedirs('/data/out', exist_ok=True); "
            "open('/data/out/msg.txt', 'w').write(sys.argv[1].upper()); print('done')")
    write = py("write", code, ("msg",), container={"args": ["{{inputs.parameters.msg}}"]},
               outputs={"parameters": [{"name": "msg", "valueFrom": {"path": "/data/out/msg.txt"}}]})
    fail = py("fail", "import sys; print('boom', file=sys.stderr); sys.exit(3)")
    d = doc([{"name": "w", "template": "write", "arguments": {"parameters": [
                {"name": "msg", "value": "{{workflow.parameters.m}}-{{workflow.name}}"}]}},
             {"name": "f", "template": "fail", "dependencies": ["w"], "continueOn": {"failed": True}},
             {"name": "after", "template": "write", "depends": "f.Failed && w.Succeeded",
              "arguments": {"parameters": [{"name": "msg", "value": "{{tasks.w.outputs.parameters.msg}}"}]}},
             {"name": "never", "template": "write", "depends": "f.Succeeded",
              "arguments": {"parameters": [{"name": "msg", "value": "x"}]}}],
            [write, fail], {"m": "hi"})
    state = LocalRunner(d, tmp_path / "ws", overrides={"m": "yo"}).run()
    assert state.phase == "Succeeded"  # continueOn.failed
    t = state.tasks
    assert t["w"].outputs["msg"] == f"YO-{state.name.upper()}" and t["w"].result == "done"
    assert (t["f"].phase, t["f"].exit_code, t["f"].message) == ("Failed", 3, "boom")
    assert t["after"].outputs["msg"] == f"YO-{state.name.upper()}"
    assert t["never"].phase == "Omitted"
    assert (tmp_path / "ws" / "out" / "msg.txt").is_file()  # /data mapped onto the workspace


def test_nested_dag_exit_handler_with_output_dir(tmp_path: Path) -> None:
    # like the pipeline's onExit: a dag whose step writes outputs to a folder passed as a parameter
    code = ("import os, sys; d = sys.argv[1]; os.makedirs(d, exist_ok=True); "
            "open(d + '/status', 'w').write(sys.argv[2]); open('/data/exit.txt', 'w').write(sys.argv[3])")
    record = py("record", code, ("status", "outputs_dir", "failures"),
                container={"args": ["{{inputs.parameters.outputs_dir}}", "{{inputs.parameters.status}}",
                                    "{{inputs.parameters.failures}}"]},
                outputs={"parameters": [{"name": "status", "valueFrom": {"path": "/tmp/osft-test-out/status"}}]})
    exit_dag = {"name": "on-exit", "outputs": {"parameters": [
                    {"name": "status", "valueFrom": {"parameter": "{{tasks.record.outputs.parameters.status}}"}}]},
                "dag": {"tasks": [{"name": "record", "template": "record", "arguments": {"parameters": [
                    {"name": "status", "value": "{{workflow.status}}"}, {"name": "failures",
                                                                        "value": "{{workflow.failures}}"},
                    {"name": "outputs_dir", "value": "/tmp/osft-test-out"}]}}]}}
    boom = py("boom", "import sys; sys.exit('error: disk full')")
    d = doc([{"name": "b", "template": "boom"}], [boom, record, exit_dag], onExit="on-exit")
    state = LocalRunner(d, tmp_path / "ws").run()
    assert state.phase == "Failed" and state.failed_task == "b" and state.error == "step 'b' failed (exit 1): disk full"
    assert state.exit_handler is not None and state.exit_handler.phase == "Succeeded"
    assert state.exit_handler.outputs == {"status": "Failed"}
    assert state.order == ["b", "on-exit.record"] and state.tasks["on-exit.record"].outputs == {"status": "Failed"}
    assert json.loads((tmp_path / "ws" / "exit.txt").read_text())[0]["displayName"] == "b"
    assert (tmp_path / "ws" / ".pods" / "on-exit.record" / "tmp" / "osft-test-out" / "status").is_file()
    assert not Path("/tmp/osft-test-out").exists()  # the pod's own /tmp stays in the pod root


def test_unsupported_features_fail_clearly(tmp_path: Path) -> None:
    resource = {"name": "trainjob", "resource": {"action": "create", "manifest": "kind: TrainJob"}}
    ok = py("ok", "print(1)")
    skipped = doc([{"name": "tj", "template": "trainjob", "when": "'{{workflow.parameters.workers}}' != '1'"},
                   {"name": "ok", "template": "ok", "depends": "tj"}], [resource, ok], {"workers": "1"})
    state = LocalRunner(skipped, tmp_path / "a").run()
    assert state.phase == "Succeeded" and state.tasks["tj"].phase == "Skipped"
    state = LocalRunner(skipped, tmp_path / "b", overrides={"workers": "2"}).run()
    assert state.phase == "Failed" and "resource templates (Kubernetes objects such as a TrainJob) need a cluster" \
        in state.tasks["tj"].message and state.tasks["ok"].phase == "Omitted"
    loop = doc([{"name": "l", "template": "ok", "withItems": [1, 2]}], [ok])
    with pytest.raises(StepError, match="task 'l' uses withItems"):
        LocalRunner(loop, tmp_path / "c").run()
    bad_when = doc([{"name": "w", "template": "ok", "when": "{{workflow.parameters.x}} == 'a'"}], [ok], {"x": "a"})
    state = LocalRunner(bad_when, tmp_path / "d").run()
    assert state.tasks["w"].phase == "Error" and "bare word 'a'" in state.error
    unresolved = doc([{"name": "u", "template": "ok", "when": "'{{workflow.parameters.nope}}' == ''"}], [ok])
    state = LocalRunner(unresolved, tmp_path / "e").run()
    assert "cannot resolve {{workflow.parameters.nope}}" in state.error


def test_secret_env_mapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = {"valueFrom": {"secretKeyRef": {"name": "s3-secret", "key": "AWS_ACCESS_KEY_ID"}}}
    code = "import os; print(os.environ.get('AWS_ACCESS_KEY_ID', '-'), os.environ.get('HF_TOKEN', '-'))"
    t = py("env", code, container={"env": [{"name": "AWS_ACCESS_KEY_ID", **ref}]})
    d = doc([{"name": "e", "template": "env"}], [t])
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    state = LocalRunner(d, tmp_path / "a").run()
    assert state.tasks["e"].phase == "Error"
    assert "needs env AWS_ACCESS_KEY_ID from secret 's3-secret'" in state.tasks["e"].message
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEY")
    monkeypatch.setenv("HF_TOKEN", "hf_not_mapped_here")
    state = LocalRunner(d, tmp_path / "b").run()
    # mapped secret arrives (masked in logs and results); an unmapped local secret does not leak in
    assert state.tasks["e"].phase == "Succeeded" and state.tasks["e"].result == "AKIAEXAMPLEKEY -"
    assert "AKIAEXAMPLEKEY" not in (tmp_path / "b" / "logs" / "e.log").read_text()
    assert "AKIAEXAMPLEKEY" not in (tmp_path / "b" / "run.json").read_text()


def test_pipeline_parameter_rules_apply_to_pipeline_templates(tmp_path: Path) -> None:
    from workflows import params

    args = {p.name: params.to_text(p.default) if not p.required else "" for p in params.PARAMS}
    d = doc([{"name": "ok", "template": "ok"}], [py("ok", "print(1)")], args)
    bad = {"phase_01_dataset_man_data_uri": "/tmp/x.jsonl", "phase_01_dataset_man_data_split": "1.5"}
    with pytest.raises(StepError, match=r"phase_01_dataset_man_data_split: split=1.5: must be in \(0, 1\]"):
        LocalRunner(d, tmp_path / "a", overrides=bad).run()
    state = LocalRunner(d, tmp_path / "b", overrides={"phase_01_dataset_man_data_uri": "/tmp/x.jsonl"}).run()
    assert state.phase == "Succeeded"
    assert state.parameters["phase_03_eval_man_eval_tasks"] == args["phase_03_eval_man_eval_tasks"]


def test_parse_progress() -> None:
    line = json.dumps({"step": 7, "epoch": 0, "steps_per_epoch": 12, "loss": 1.23456, "lr": 1e-5})
    assert parse_progress(line) == "step 7/12 loss 1.2346"
    assert parse_progress("2026 [train] step 3/10 loss=0.5 lr 1e-5") == "step 3/10 loss 0.5000"
    assert parse_progress("loading weights") == ""


def test_template_yaml_round_trip(template: Path) -> None:
    # the runner consumes the YAML (not Hera objects): the test template really uses the runner wiring
    d = yaml.safe_load(template.read_text())
    script = next(t for t in d["spec"]["templates"] if t["name"] == "evaluate")["script"]
    assert script["args"][:3] == ["-m", "hera.workflows.runner", "-e"] and script["source"] == "{{inputs.parameters}}"


def test_only_secret_parameters_are_masked() -> None:
    from workflows.local.template import secret_param_names

    doc = {"spec": {"arguments": {"parameters": [
        {"name": "phase_02_train_man_train_tokens", "value": "1024"},
        {"name": "phase_01_dataset_opt_hf_token", "value": ""},
        {"name": "registry_api_key", "value": ""},
        {"name": "max_secretary_count", "value": "3"},
    ]}}}
    names = secret_param_names(doc)
    assert "phase_01_dataset_opt_hf_token" in names and "registry_api_key" in names
    assert "phase_02_train_man_train_tokens" not in names and "max_secretary_count" not in names
