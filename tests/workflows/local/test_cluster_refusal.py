"""The local runner refuses what Argo refuses: the cluster lint before the first task, Argo's template-engine
semantics (a tag ends at the first ``}}``), Pods validated with the run's values, and the workspace PVC's
resource template handled (validated; creating it means the local workspace folder)."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from steps.common.errors import StepError
from workflows.argo import compile as comp
from workflows.argo import goyaml
from workflows.local.engine import LocalRunner

ROOT = Path(__file__).resolve().parents[3]
OLD = ROOT / "tests" / "workflows" / "argo" / "data" / "osft-minimal-pipeline.before-issue-12.yaml"
PVC_MANIFEST = """apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: '{{workflow.name}}-workspace'
spec:
  accessModes: [ReadWriteMany]
  storageClassName: '{{workflow.parameters.storage_class}}'
  resources:
    requests:
      storage: '{{workflow.parameters.size}}'
"""


def doc(tasks: list[dict[str, Any]], templates: list[dict[str, Any]], args: dict[str, str] | None = None,
        exit_tasks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "entrypoint": "main",
        "arguments": {"parameters": [{"name": k, "value": v} for k, v in (args or {}).items()]},
        "volumes": [{"name": "workspace", "persistentVolumeClaim": {"claimName": "{{workflow.name}}-workspace"}}],
        "templates": [{"name": "main", "dag": {"tasks": tasks}}, *templates],
    }
    if exit_tasks:
        spec["onExit"] = "bye"
        spec["templates"].append({"name": "bye", "dag": {"tasks": exit_tasks}})
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTemplate", "metadata": {"name": "t"}, "spec": spec}


def py(name: str, code: str, inputs: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    return {"name": name, "inputs": {"parameters": [{"name": i} for i in inputs]},
            "container": {"image": "x", "command": ["python", "-c", code],
                          "volumeMounts": [{"name": "workspace", "mountPath": "/data"}],
                          **extra.pop("container", {})}, **extra}


def pvc(action: str = "apply", manifest: str = PVC_MANIFEST) -> dict[str, Any]:
    return {"name": f"pvc-{action}", "resource": {"action": action, "manifest": manifest, "setOwnerReference": True}}


def test_the_template_before_issue_12_is_refused_before_anything_runs(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    cmd = [sys.executable, "-m", "workflows.cli", "run", "--local", "--template", str(OLD), "--workspace", str(ws),
           "-p", f"phase_01_dataset_man_data_uri={tmp_path / 'chat.jsonl'}"]
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: a cluster would refuse this template: WorkflowTemplate: spec.arguments.")
    assert "5e-06 is not of type 'string'" in line and "`osft-pipeline lint` lists them" in line
    assert not ws.exists()  # nothing ran, nothing was written


def test_the_committed_template_passes_the_pre_run_check(tmp_path: Path) -> None:
    from workflows.argo.lint import cluster_errors

    wt = comp.load_docs(comp.TEMPLATES_DIR / "osft-minimal-pipeline.yaml")[0]
    assert cluster_errors(wt, values={"phase_02_train_man_train_gpu": "0", "phase_03_eval_opt_gpu": "0"}) == []


def test_a_tag_cut_at_the_first_closing_braces_fails_locally_as_on_the_cluster(tmp_path: Path) -> None:
    cut = "{{=workflow.parameters.x == 'a' ? '{\"k\": {\"v\": 1}}' : '{}'}}"
    echo = py("echo", "import sys; print(sys.argv[1])", ("msg",), container={"args": ["{{inputs.parameters.msg}}"]})
    d = doc([{"name": "e", "template": "echo", "arguments": {"parameters": [{"name": "msg", "value": cut}]}}],
            [echo], {"x": "a"})
    refused = "a cluster would refuse this template: .*expression tag .*cannot read .*cut at a '}}'"
    with pytest.raises(StepError, match=refused):
        LocalRunner(d, tmp_path / "a").run()
    state = LocalRunner(d, tmp_path / "b", check_cluster=False).run()  # the engine itself cuts the tag the same way
    assert state.tasks["e"].phase == "Error" and "cannot read" in state.tasks["e"].message
    fixed = cut.replace("}}'", "} }'")
    d["spec"]["templates"][0]["dag"]["tasks"][0]["arguments"]["parameters"][0]["value"] = fixed
    state = LocalRunner(d, tmp_path / "c").run()
    assert state.phase == "Succeeded" and state.tasks["e"].result == '{"k": {"v": 1} }'


def test_pod_spec_patch_is_rendered_and_validated_with_the_runs_values(tmp_path: Path) -> None:
    patch = ('{{=asInt(workflow.parameters.gpus) > 0 ? toJson({"containers": [{"name": "main", "resources": '
             '{"requests": {"nvidia.com/gpu": workflow.parameters.gpus } } }]}) : "{}"}}')
    ok = py("ok", "print(1)", podSpecPatch=patch)
    d = doc([{"name": "o", "template": "ok"}], [ok], {"gpus": "0"})
    assert LocalRunner(d, tmp_path / "a").run().phase == "Succeeded"  # gpus=0: an empty patch
    with pytest.raises(StepError, match=r"resources.requests.nvidia.com/gpu needs an equal limit \(with gpus=2\)"):
        LocalRunner(d, tmp_path / "b", overrides={"gpus": "2"}).run()
    state = LocalRunner(d, tmp_path / "c", overrides={"gpus": "2"}, check_cluster=False).run()
    assert state.tasks["o"].phase == "Error" and "the cluster would refuse its pod" in state.tasks["o"].message


def test_workspace_pvc_resource_template_is_the_local_workspace_folder(tmp_path: Path) -> None:
    write = py("write", "open('/data/hello.txt', 'w').write('hi')")
    d = doc([{"name": "pvc", "template": "pvc-apply"}, {"name": "w", "template": "write", "depends": "pvc"}],
            [pvc(), pvc("delete"), write], {"size": "10Gi", "storage_class": ""},
            exit_tasks=[{"name": "gone", "template": "pvc-delete"}])
    ws = tmp_path / "ws"
    state = LocalRunner(d, ws).run()
    assert state.phase == "Succeeded" and state.tasks["pvc"].phase == "Succeeded"
    assert (ws / "hello.txt").read_text() == "hi"  # the step wrote into the folder the PVC stands for
    log = (ws / "logs" / "pvc.log").read_text()
    assert log.startswith("# apply PersistentVolumeClaim/t-local-") and "storage: 10Gi" in log
    assert state.exit_handler is not None and state.exit_handler.phase == "Succeeded"
    assert (ws / "hello.txt").is_file()  # deleting the PVC keeps the local folder (the run's record)
    assert any("not deleted locally" in n for n in state.notes)


@pytest.mark.parametrize(("manifest", "message"), [
    (PVC_MANIFEST.replace("storageClassName", "storageClass"), "the cluster would refuse the workspace PVC"),
    (PVC_MANIFEST.replace("{{workflow.name}}-workspace", "other-claim"), "but the workspace volume mounts"),
])
def test_a_bad_workspace_pvc_manifest_fails_like_kubectl(tmp_path: Path, manifest: str, message: str) -> None:
    pytest.importorskip("kubernetes_validate")
    d = doc([{"name": "pvc", "template": "pvc-apply"}], [pvc(manifest=manifest)], {"size": "1Gi", "storage_class": ""})
    state = LocalRunner(d, tmp_path / "ws", check_cluster=False).run()
    assert state.tasks["pvc"].phase == "Error" and message in state.tasks["pvc"].message
    if "storageClass:" in manifest:
        with pytest.raises(StepError, match="storageClass"):
            LocalRunner(d, tmp_path / "ws2").run()  # and the pre-run check catches it first


def test_unquoted_float_in_a_template_file_is_refused_as_the_api_server_does(tmp_path: Path) -> None:
    ok = py("ok", "print(1)")
    d = doc([{"name": "o", "template": "ok"}], [ok], {"lr": "5e-06"})
    path = tmp_path / "t.yaml"
    path.write_text(goyaml.dump(d).replace("'5e-06'", "5e-06"))
    cmd = [sys.executable, "-m", "workflows.cli", "run", "--local", "--template", str(path), "--workspace",
           str(tmp_path / "ws")]
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and "spec.arguments.parameters[0](lr).value: 5e-06 is not of type 'string'" \
        in proc.stderr


def test_the_pipelines_template_also_gets_the_lints_policy_rules(tmp_path: Path) -> None:
    wt = comp.load_docs(comp.TEMPLATES_DIR / "osft-minimal-pipeline.yaml")[0]
    next(t for t in wt["spec"]["templates"] if t["name"] == "train")["retryStrategy"]["backoff"]["maxDuration"] = "5m"
    with pytest.raises(StepError, match="template train: retryStrategy.backoff.maxDuration counts from the first"):
        LocalRunner(wt, tmp_path / "ws", overrides={"phase_01_dataset_man_data_uri": str(tmp_path / "x.jsonl")}).run()
    assert not (tmp_path / "ws").exists()
