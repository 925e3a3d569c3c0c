"""What a real cluster accepts: the defects of the template before issue 12 (1-7), each caught on that template
(vendored in ``data/``) and absent from today's; and every lint rule's mutation test (the defect put back
into a copy of the compiled template is caught, with a message naming the field).

Defects 8 (TrainJob retry and node patch), 9 (KFP twin) and 10 (image) live outside this template: see
tests/steps/train/test_trainjob_retry.py, tests/workflows/kfp/test_pipeline.py and test_image.py."""

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from workflows.argo import compile as comp
from workflows.argo import crd, goyaml, lint

OLD = Path(__file__).parent / "data" / "osft-minimal-pipeline.before-issue-12.yaml"
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def old() -> dict[str, Any]:
    return comp.load_docs(OLD)[0]  # read as the API server reads YAML


@pytest.fixture(scope="module")
def new() -> dict[str, Any]:
    return comp.load_docs(comp.TEMPLATES_DIR / "osft-minimal-pipeline.yaml")[0]


def _tmpl(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in doc["spec"]["templates"] if t["name"] == name)


def _hits(errors: list[str], *fragments: str) -> list[str]:
    return [e for e in errors if all(f in e for f in fragments)]


# ------------------------------------------------------------------------------------------ the ten defects


@pytest.mark.parametrize("version", crd.ARGO_VERSIONS)
def test_defect_1_quantities_with_tags_are_refused_by_the_full_crd(old: dict, new: dict, version: str) -> None:
    quantity = _hits(crd.argo_errors(old, version), "is not a Kubernetes quantity")
    fields = sorted(e.split(": ")[0] for e in quantity)
    assert fields == [
        "spec.templates[2](train).script.resources.limits.nvidia.com/gpu",
        "spec.templates[2](train).script.resources.requests.nvidia.com/gpu",
        "spec.templates[4](evaluate).script.resources.limits.nvidia.com/gpu",
        "spec.templates[4](evaluate).script.resources.requests.nvidia.com/gpu",
        "spec.volumeClaimTemplates[0].spec.resources.requests.storage",
    ]
    assert crd.argo_errors(new, version) == []


def test_defect_2_a_closing_brace_pair_inside_an_expression_tag_is_caught(old: dict, new: dict) -> None:
    engine = lint.template_engine_errors(old)
    assert _hits(engine, "spec.templates[4](evaluate).podSpecPatch", "stray '}}'")
    assert _hits(engine, "spec.templates[4](evaluate).podSpecPatch", "expression tag")
    assert _hits(lint.pod_errors(old), "template evaluate podSpecPatch")  # it never renders, for any value
    assert lint.template_engine_errors(new) == [] and lint.pod_errors(new) == []


def test_defect_3_max_duration_is_caught(old: dict, new: dict) -> None:
    assert _hits(lint.retry_errors(old), "template train:", "retryStrategy.backoff.maxDuration")
    assert not _hits(lint.retry_errors(new), "maxDuration")
    assert all("maxDuration" not in json.dumps(t.get("retryStrategy", {})) for t in new["spec"]["templates"])


def test_defect_4_deadlines_leave_room_for_a_cold_pull_and_preflight_retries(old: dict, new: dict) -> None:
    errors = lint.retry_errors(old)
    for name in ("preflight", "record-status"):
        assert _hits(errors, f"template {name}: activeDeadlineSeconds=300", "cold pull")
    assert _hits(errors, "template preflight: no retryStrategy")
    assert lint.retry_errors(new) == []


def test_defect_5_pods_can_write_an_nfs_workspace(old: dict, new: dict) -> None:
    assert _hits(lint.security_errors(old), "template train: securityContext.fsGroup is missing")
    assert lint.security_errors(new) == []


def test_defect_6_every_parameter_value_is_a_string_to_go(old: dict, new: dict) -> None:
    assert old["spec"]["arguments"]["parameters"][15]["value"] == 5e-06  # a float, as Go reads it
    assert _hits(crd.argo_errors(old, "v4.0.10"), "value: 5e-06 is not of type 'string'")
    text = (comp.TEMPLATES_DIR / "osft-minimal-pipeline.yaml").read_text()
    assert "value: '5e-06'" in text and "default: '5e-06'" in text
    values = [p.get("value", p.get("default")) for t in [new["spec"]] + new["spec"]["templates"]
              for p in (t.get("arguments") or t.get("inputs") or {}).get("parameters") or []]
    assert values and all(isinstance(v, str) for v in values if v is not None)


def test_defect_7_output_parameters_are_bounded(old: dict, new: dict) -> None:
    assert _hits(lint.output_errors(old), "template train: outputs.parameters[metrics]", "train/metrics.json")
    assert lint.output_errors(new) == []
    train = {p["name"]: p for p in _tmpl(new, "train")["outputs"]["parameters"]}
    assert train["summary"]["valueFrom"]["path"] == "/workspace/train/summary.json"


def test_old_template_fails_the_lint_command_and_the_new_passes(tmp_path: Path) -> None:
    for name in comp.FILES:
        (tmp_path / name).write_text((comp.TEMPLATES_DIR / name).read_text())
    run = [sys.executable, "-m", "workflows.cli", "lint"]
    ok = subprocess.run([*run, str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "CRD v3.7.18 (as written): ok" in ok.stdout and "pods and resources" in ok.stdout
    (tmp_path / "osft-minimal-pipeline.yaml").write_text(OLD.read_text())
    bad = subprocess.run([*run, str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert bad.returncode == 1 and "nvidia.com/gpu: '{{workflow.parameters.phase_02_train_man_train_gpu}}'" \
        in bad.stdout


# ------------------------------------------------------------------------------------------ mutation tests


def _mutated(new: dict, fn: Any) -> dict:
    doc = copy.deepcopy(new)
    fn(doc)
    return doc


OLD_EVAL_PATCH = ("{{=asInt(workflow.parameters.phase_03_eval_opt_gpu) > 0 ? "
                  "'{\"nodeSelector\": {\"nvidia.com/gpu.present\": \"true\"}}' : '{}'}}")


@pytest.mark.parametrize(("mutation", "field", "message"), [
    (lambda d: _tmpl(d, "train")["script"]["resources"]["limits"].update(
        {"nvidia.com/gpu": "{{workflow.parameters.phase_02_train_man_train_gpu}}"}),
     "spec.templates[4](train).script.resources.limits.nvidia.com/gpu", "not a Kubernetes quantity"),
    (lambda d: _tmpl(d, "dataset")["script"].update(resourcez={}),
     "spec.templates[3](dataset).script", "('resourcez' was unexpected) (unknown field)"),
    (lambda d: _tmpl(d, "dataset")["retryStrategy"].update(limit=2.5),
     "spec.templates[3](dataset).retryStrategy.limit", "is not valid under any of the given schemas"),
    (lambda d: d["spec"]["arguments"]["parameters"][15].update(value=5e-06),
     "spec.arguments.parameters[15](phase_02_train_opt_learning_rate).value", "is not of type 'string'"),
])
@pytest.mark.parametrize("version", crd.ARGO_VERSIONS)
def test_crd_rule_catches(new: dict, mutation: Any, field: str, message: str, version: str) -> None:
    errors = crd.argo_errors(_mutated(new, mutation), version)
    assert _hits(errors, field, message), errors


@pytest.mark.skipif(not crd.cel_available(), reason="cel-python is not installed")
def test_crd_cel_rules_of_v4_are_evaluated(new: dict) -> None:
    doc = _mutated(new, lambda d: _tmpl(d, "pipeline").update(activeDeadlineSeconds=60))
    assert _hits(crd.argo_errors(doc, "v4.0.10"), "spec.templates", "activeDeadlineSeconds is only valid for leaf")
    assert not _hits(crd.argo_errors(doc, "v3.7.18"), "only valid for leaf")  # v3.7's CRD has no CEL rules


@pytest.mark.parametrize(("mutation", "field", "message"), [
    (lambda d: _tmpl(d, "evaluate").update(podSpecPatch=OLD_EVAL_PATCH),
     "spec.templates[6](evaluate).podSpecPatch", "stray '}}'"),
    (lambda d: _tmpl(d, "evaluate").update(podSpecPatch="{{=toJson({'a': 1})"),
     "spec.templates[6](evaluate).podSpecPatch", "has no '}}' after it"),
    (lambda d: _tmpl(d, "evaluate").update(podSpecPatch="{{=asInt(workflow.parameters.eval_gpu) > 0 ? '{}' : '{}'}}"),
     "spec.templates[6](evaluate).podSpecPatch", "variable 'workflow.parameters.eval_gpu': no workflow parameter"),
    (lambda d: _tmpl(d, "evaluate").update(podSpecPatch="{{=toYaml({})}}"),
     "spec.templates[6](evaluate).podSpecPatch", "unknown function toYaml()"),
    (lambda d: _tmpl(d, "workspace-pvc")["resource"].update(manifest="name: {{workflow.nam}}"),
     "spec.templates[0](workspace-pvc).resource.manifest", "{{workflow.nam}}: does not resolve"),
])
def test_template_engine_rule_catches(new: dict, mutation: Any, field: str, message: str) -> None:
    errors = lint.template_engine_errors(_mutated(new, mutation))
    assert _hits(errors, field, message), errors


@pytest.mark.parametrize(("patch", "message"), [
    ('{{=toJson({"containers": [{"name": "main", "resources": {"requests": {"nvidia.com/gpu": "2" } } }]})}}',
     "resources.requests.nvidia.com/gpu needs an equal limit"),
    ('{{=toJson({"containers": [{"name": "main", "resources": {"limits": {"nvidia.com/gpu": "0.5" }, '
     '"requests": {"nvidia.com/gpu": "0.5" } } }]})}}', "must be a whole number"),
    ('{{=toJson({"nodeSelectorr": {"a": "b" } })}}', "nodeSelectorr"),
    ("{{=toJson([1, 2])}}", "podSpecPatch must be a mapping"),
])
def test_pod_rule_renders_every_parameter_set_and_validates_the_merged_pod(new: dict, patch: str,
                                                                           message: str) -> None:
    pytest.importorskip("kubernetes_validate")
    errors = lint.pod_errors(_mutated(new, lambda d: _tmpl(d, "train").update(podSpecPatch=patch)))
    assert _hits(errors, "train", message), errors
    assert _hits(errors, message, "(with phase_02_train_man_train_gpu=")  # the parameter set is named


def test_pod_rule_uses_the_gpu_0_1_8_and_workers_1_4_matrix_and_the_laptop_set(new: dict) -> None:
    from workflows.paramfile import EXAMPLES_DIR, LAPTOP, load_parameter_file

    sets = lint.parameter_sets(new)
    assert len(sets) == 22 and {s["phase_02_train_man_train_gpu"] for s in sets[:18]} == {"0", "1", "8"}
    assert {s["phase_02_train_man_train_workers"] for s in sets[:18]} == {"1", "4"}
    assert sets[18] == load_parameter_file(LAPTOP)  # the documented laptop cluster set, every value of it
    assert sets[19] == load_parameter_file(EXAMPLES_DIR / "loop-params.yaml")  # make loop's set (pvc:// lineage)
    # then the pod-shaping sets, restricted to what the template declares (the minimal one: CPU, workers, procs)
    assert sets[20] == {"phase_02_train_opt_cpu": "500m"}


def test_pod_rule_validates_the_pvc_manifest(new: dict) -> None:
    pytest.importorskip("kubernetes_validate")
    manifest = _tmpl(new, "workspace-pvc")["resource"]["manifest"].replace("storageClassName", "storageClass")
    errors = lint.pod_errors(_mutated(new, lambda d: _tmpl(d, "workspace-pvc")["resource"].update(
        manifest=manifest)))
    assert _hits(errors, "PersistentVolumeClaim/osft-minimal-pipeline-abcde-workspace", "storageClass"), errors


def test_trainjob_rule_validates_against_the_trainer_crd(new: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import steps.train.trainjob as tj

    monkeypatch.setattr(tj, "GPU_TOLERATION", {**tj.GPU_TOLERATION, "tolerationSeconds": "soon"})
    errors = lint.trainjob_errors(new)
    assert _hits(errors, "TrainJob from template train-trainjob", "phase_02_train_man_train_workers=4",
                 "tolerations[0].tolerationSeconds"), errors


@pytest.mark.parametrize(("mutation", "message"), [
    (lambda d: _tmpl(d, "train")["retryStrategy"]["backoff"].update(maxDuration="10m"),
     "template train: retryStrategy.backoff.maxDuration counts from the first attempt"),
    (lambda d: _tmpl(d, "dataset")["retryStrategy"]["backoff"].update(cap="5m"),
     "template dataset: retryStrategy.backoff.cap does not exist in Argo 3.6"),
    (lambda d: _tmpl(d, "dataset")["retryStrategy"].update(limit=8),
     "template dataset: retryStrategy.backoff waits 7650 s in all"),
    (lambda d: _tmpl(d, "preflight").update(activeDeadlineSeconds=300),
     "template preflight: activeDeadlineSeconds=300 counts from the pod's start"),
    (lambda d: _tmpl(d, "record-status").pop("retryStrategy"), "template record-status: no retryStrategy"),
    (lambda d: d["spec"].update(activeDeadlineSeconds=3 * 24 * 3600),
     "spec.activeDeadlineSeconds=259200 is shorter than every attempt"),
])
def test_retry_rule_catches(new: dict, mutation: Any, message: str) -> None:
    errors = lint.retry_errors(_mutated(new, mutation))
    assert _hits(errors, message), errors


def test_output_rule_catches(new: dict) -> None:
    doc = _mutated(new, lambda d: _tmpl(d, "train")["outputs"]["parameters"][0]["valueFrom"].update(
        path="/workspace/train/metrics.json"))
    assert _hits(lint.output_errors(doc), "template train: outputs.parameters[summary].valueFrom.path",
                 "not a bounded summary")
    assert _hits(lint.output_errors(new, bounded={"train/summary.json": 60_000, "eval/summary.json": 60_000,
                                                  "registry/summary.json": 4096}), "more than the budget")


@pytest.mark.parametrize(("key", "message"), [
    ("fsGroup", "securityContext.fsGroup is missing"), ("runAsNonRoot", "securityContext.runAsNonRoot"),
])
def test_security_rule_catches(new: dict, key: str, message: str) -> None:
    doc = _mutated(new, lambda d: _tmpl(d, "evaluate")["securityContext"].pop(key))
    assert _hits(lint.security_errors(doc), "template evaluate:", message)


def test_every_rule_passes_on_the_committed_files() -> None:
    report = lint.lint_dir(comp.TEMPLATES_DIR)
    assert {k: v for k, v in report.items() if v} == {}
    assert "CRD v3.7.18 (as written)" in report and "CRD v4.0.10 (as written)" in report


def test_go_yaml_reader_and_writer() -> None:
    assert goyaml.load("a: 5e-06\nb: '5e-06'\nc: 1e3\nd: 0.9\ne: yes\nf: 50Gi\ng: 0755") == {
        "a": 5e-06, "b": "5e-06", "c": 1000.0, "d": 0.9, "e": True, "f": "50Gi", "g": 493}
    doc = {"v": ["5e-06", "1e3", "0.9", "yes", "50Gi", "true", "", "0755", "1.0.0", "{{x}}"]}
    assert goyaml.load(goyaml.dump(doc)) == doc  # every string stays a string for Go
    assert "'5e-06'" in goyaml.dump(doc) and "- 50Gi" in goyaml.dump(doc)
