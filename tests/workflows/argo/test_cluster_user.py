"""Issue 16 on the template: pod resources as parameters (through podSpecPatch, as the full CRD requires), the
workspace's access mode, and a volume that does not bind failing the run instead of leaving it Pending; each rule
with a mutation test (the defect put back is caught), and the laptop parameter set rendered and validated."""

import copy
from pathlib import Path
from typing import Any

import pytest

from workflows.argo import compile as comp
from workflows.argo import crd, lint, podspec
from workflows.argo.pipeline import BIND_TIMEOUT_S, MOUNT_TIMEOUT, PULL_ALLOWANCE_S, rbac_manifests
from workflows.paramfile import LAPTOP, load_parameter_file
from workflows.params import BY_NAME, ParamError

BEFORE = Path(__file__).parent / "data" / "osft-minimal-pipeline.before-issue-16.yaml"


@pytest.fixture(scope="module")
def wt() -> dict[str, Any]:
    return comp.load_docs(comp.TEMPLATES_DIR / "osft-minimal-pipeline.yaml")[0]


def _tmpl(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in doc["spec"]["templates"] if t["name"] == name)


def _tasks(doc: dict[str, Any], dag: str = "pipeline") -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in _tmpl(doc, dag)["dag"]["tasks"]}


def _mutated(doc: dict[str, Any], change: Any) -> dict[str, Any]:
    copy_ = copy.deepcopy(doc)
    change(copy_)
    return copy_


def _pods(doc: dict[str, Any], values: dict[str, str]) -> dict[str, dict[str, Any]]:
    objs, errors = lint.rendered_objects(doc, values)
    assert errors == []
    return {o["metadata"]["name"].rsplit("-", 1)[-1] if "workspace" not in o["metadata"]["name"] else
            o["metadata"]["name"]: o for o in objs if o["kind"] == "Pod"}


def _main(pod: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in pod["spec"]["containers"] if c["name"] == "main")["resources"]


# --------------------------------------------------------------------------------------------- resources


@pytest.mark.parametrize(("name", "default"), [("phase_02_train_opt_cpu", "4"), ("phase_02_train_opt_memory", "32Gi"),
                                               ("phase_03_eval_opt_cpu", "4"), ("phase_03_eval_opt_memory", "32Gi")])
def test_resource_parameters_exist_with_todays_requests_as_defaults(wt: dict[str, Any], name: str,
                                                                    default: str) -> None:
    assert BY_NAME[name].default == default
    args = {p["name"]: p["value"] for p in wt["spec"]["arguments"]["parameters"]}
    assert args[name] == default


@pytest.mark.parametrize(("name", "value", "message"), [
    ("phase_02_train_opt_cpu", "4 cores", "must be a CPU quantity: cores (4, 0.5) or millicores (500m) (did you "
                                          "mean 4?)"),
    ("phase_02_train_opt_cpu", "4Gi", "must be a CPU quantity"),
    ("phase_02_train_opt_cpu", "0", "must be at least 10m"),
    ("phase_02_train_opt_memory", "32GB", "there is no 'GB') (did you mean 32Gi?)"),
    ("phase_03_eval_opt_memory", "512m", "'m' means thousandths (millibytes); write Mi for mebibytes, e.g. 512Mi"),
    ("phase_03_eval_opt_memory", "32", "is 32 bytes; a step's pod needs at least 64Mi"),
    ("phase_00_workspace_opt_size", "50 GB", "(did you mean 50Gi?)"),
    ("phase_00_workspace_opt_access_mode", "RWX", "must be one of ReadWriteMany, ReadWriteOnce"),
])
def test_resource_values_are_checked_with_the_fix(name: str, value: str, message: str) -> None:
    with pytest.raises(ParamError) as err:
        BY_NAME[name].coerce(value)
    assert message in str(err.value)


@pytest.mark.parametrize("value", ["4", "0.5", "500m", "1.5", "2000m"])
def test_cpu_values_kubernetes_accepts(value: str) -> None:
    assert BY_NAME["phase_02_train_opt_cpu"].coerce(value) == value


def test_the_pods_get_the_parameters_cpu_request_and_memory_request_equal_to_limit(wt: dict[str, Any]) -> None:
    pods = _pods(wt, {"phase_02_train_opt_cpu": "12", "phase_02_train_opt_memory": "96Gi",
                      "phase_03_eval_opt_cpu": "500m", "phase_03_eval_opt_memory": "6Gi",
                      "phase_02_train_man_train_gpu": "2", "phase_03_eval_opt_gpu": "0"})
    assert _main(pods["train"]) == {"requests": {"cpu": "12", "memory": "96Gi", "nvidia.com/gpu": "2"},
                                    "limits": {"memory": "96Gi", "nvidia.com/gpu": "2"}}
    assert _main(pods["evaluate"]) == {"requests": {"cpu": "500m", "memory": "6Gi"}, "limits": {"memory": "6Gi"}}
    assert "nodeSelector" not in pods["evaluate"]["spec"]  # 0 GPUs: no GPU node selector
    defaults = _pods(wt, {})
    assert _main(defaults["train"])["requests"]["cpu"] == "4" and _main(defaults["train"])["limits"] == {
        "memory": "32Gi", "nvidia.com/gpu": "1"}


def test_the_laptop_set_renders_small_cpu_only_pods_and_a_read_write_once_volume(wt: dict[str, Any]) -> None:
    laptop = load_parameter_file(LAPTOP)
    objs, errors = lint.rendered_objects(wt, laptop)
    assert errors == [] and lint.pod_errors(wt, [laptop]) == []
    pods = _pods(wt, laptop)
    assert _main(pods["train"]) == {"requests": {"cpu": "2", "memory": "6Gi"}, "limits": {"memory": "6Gi"}}
    assert _main(pods["evaluate"]) == {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "4Gi"}}
    assert all("nvidia.com/gpu" not in str(p["spec"]) or p["spec"].get("tolerations") for p in pods.values())
    pvc = next(o for o in objs if o["kind"] == "PersistentVolumeClaim" and "spec" in o)
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"] and pvc["spec"]["storageClassName"] == "standard"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"


@pytest.mark.parametrize("version", crd.ARGO_VERSIONS)
def test_a_resource_tag_in_a_quantity_field_is_still_refused(wt: dict[str, Any], version: str) -> None:
    bad = _mutated(wt, lambda d: _tmpl(d, "train")["script"]["resources"]["requests"].update(
        memory="{{workflow.parameters.phase_02_train_opt_memory}}"))
    errors = crd.argo_errors(bad, version)
    assert any("resources.requests.memory" in e and "quantity" in e for e in errors), errors


@pytest.mark.parametrize(("patch_values", "message"), [
    ({"phase_02_train_opt_memory": "32GB"}, "resources.requests.memory='32GB' is not a quantity"),
    ({"phase_02_train_opt_cpu": "4 cores"}, "resources.requests.cpu='4 cores' is not a quantity"),
])
def test_the_pod_rule_catches_a_value_the_api_server_would_refuse(wt: dict[str, Any], patch_values: dict[str, str],
                                                                  message: str) -> None:
    errors = lint.pod_errors(wt, [patch_values])
    assert any(message in e and "Pod/osft-minimal-pipeline-abcde-train" in e for e in errors), errors


def test_the_pod_rule_catches_a_request_above_its_limit(wt: dict[str, Any]) -> None:
    bad = _mutated(wt, lambda d: _tmpl(d, "dataset")["script"]["resources"]["requests"].update(memory="32Gi"))
    errors = lint.pod_errors(bad, [{}])
    assert any("dataset: container main: resources.requests.memory='32Gi' must be less than or equal to the limit "
               "'16Gi'" in e for e in errors), errors
    pvc = podspec.quantity_errors({"kind": "PersistentVolumeClaim", "metadata": {"name": "w"},
                                   "spec": {"resources": {"requests": {"storage": "50GB"}}}})
    assert pvc == ["PersistentVolumeClaim/w: spec.resources.requests.storage='50GB' is not a quantity (e.g. 50Gi)"]


def test_every_documented_parameter_file_is_one_of_the_lints_sets(wt: dict[str, Any]) -> None:
    sets = lint.parameter_sets(wt)
    for path in sorted(LAPTOP.parent.glob("*-params.yaml")):
        assert load_parameter_file(path) in sets, path


# ------------------------------------------------------------------------------ the workspace volume binds


def test_workspace_bound_waits_before_any_pod_mounts_the_volume(wt: dict[str, Any]) -> None:
    tasks = _tasks(wt)
    assert tasks["workspace-bound"]["depends"] == "workspace-pvc"
    assert tasks["preflight"]["depends"] == "workspace-bound"
    args = {p["name"]: p["value"] for p in tasks["workspace-bound"]["arguments"]["parameters"]}
    assert args == {"claim": "{{workflow.name}}-workspace", "namespace": "{{workflow.namespace}}",
                    "timeout_seconds": str(BIND_TIMEOUT_S)}
    bound = _tmpl(wt, "workspace-bound")
    assert not bound["script"].get("volumeMounts")
    assert bound["activeDeadlineSeconds"] >= PULL_ALLOWANCE_S + BIND_TIMEOUT_S
    assert bound["metadata"]["annotations"]["osft-pipeline.io/local-run"].startswith("skipped: ")
    for name in ("preflight", "record-status"):
        assert lint._duration_s(_tmpl(wt, name)["timeout"]) == lint._duration_s(MOUNT_TIMEOUT) >= PULL_ALLOWANCE_S
    role = next(d for d in rbac_manifests() if d["kind"] == "Role")
    assert {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]} in role["rules"]
    assert lint.volume_errors(wt) == []


@pytest.mark.parametrize(("mutation", "message"), [
    (lambda d: _tmpl(d, "preflight").pop("timeout"), "template preflight: may be the first pod to mount the "
                                                     "workspace volume: give it a `timeout`"),
    (lambda d: _tmpl(d, "record-status").pop("timeout"), "template record-status: may be the first pod"),
    (lambda d: _tmpl(d, "workspace-bound")["script"].update(volumeMounts=[{"name": "workspace",
                                                                           "mountPath": "/workspace"}]),
     "template workspace-bound: waits for the workspace volume to bind, so it must not mount it"),
    (lambda d: _tasks(d)["preflight"].update(depends="workspace-pvc"),
     "task preflight: mounts the workspace volume with no task before it that waits for the volume to bind"),
])
def test_volume_rule_catches(wt: dict[str, Any], mutation: Any, message: str) -> None:
    errors = lint.volume_errors(_mutated(wt, mutation))
    assert any(message in e for e in errors), errors


def test_the_template_before_issue_16_hangs_on_an_unbound_volume_and_fixes_resources() -> None:
    """The template as it was before issue 16 (vendored): no task waited for the volume and no pod had a timeout,
    so a class that never binds left the run Pending until its 9-day deadline; train and evaluate always asked
    for 4 CPUs and 32Gi, and the volume was always ReadWriteMany."""
    before = comp.load_docs(BEFORE)[0]
    errors = lint.volume_errors(before)
    assert any("template preflight: may be the first pod to mount the workspace volume" in e for e in errors)
    assert any("task preflight: mounts the workspace volume with no task before it that waits" in e for e in errors)
    declared = {p["name"] for p in before["spec"]["arguments"]["parameters"]}
    assert not {"phase_02_train_opt_cpu", "phase_02_train_opt_memory", "phase_00_workspace_opt_access_mode"} & declared
    pods = _pods(before, load_parameter_file(LAPTOP) | {})  # the laptop values cannot lower anything there
    assert _main(pods["train"])["requests"]["memory"] == "32Gi" and _main(pods["train"])["requests"]["cpu"] == "4"
