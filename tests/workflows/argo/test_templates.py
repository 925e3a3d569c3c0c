"""The compiled Argo objects: golden files, Argo's JSON schema (strict), core objects, argo-lint-like references."""

import copy
import gzip
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from workflows.argo import compile as comp
from workflows.argo import lint
from workflows.argo.pipeline import SECRET_KEYS, build_cron, build_template
from workflows.params import PARAMS, to_text

ROOT = Path(__file__).resolve().parents[3]
README_SPEC = ROOT / "tests" / "data" / "spec" / "osft-minimal-pipeline-README.md"  # the seed's README
# sha256 of the Argo files as published (workflows/argo/schemas/SOURCE.txt names tags and paths)
SCHEMA_SHA256 = {
    "argo-v4.1.2.schema.json.gz": "3f84c5722c48a5aa815fe69119a9375fc3635114f8046da20ede55a8596529f5",
    "argo-v4.1.2.swagger.json.gz": "c75ea5e10cbca5a251019c0f5dafef98449551562403e9e903a53db985d5e6b8",
    "argo-v4.0.5.schema.json.gz": "98df6174460702d2c178cd54c6fb3f597985c9969bb5ae79ad7e55e2d47c0b39",
    "argo-v4.0.5.swagger.json.gz": "ca6192385b6bd3a6090a6735501d0d9436c46b979fdc61311477dbbdbf40ec99",
}


@pytest.fixture(scope="module")
def wt() -> dict[str, Any]:
    return build_template().to_dict()


@pytest.fixture(scope="module")
def cron() -> dict[str, Any]:
    return build_cron().to_dict()


def _tmpl(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in doc["spec"]["templates"] if t["name"] == name)


def _tasks(doc: dict[str, Any], dag: str = "pipeline") -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in _tmpl(doc, dag)["dag"]["tasks"]}


# ------------------------------------------------------------------------------------------------- golden


def test_committed_templates_equal_a_fresh_compile() -> None:
    fresh = comp.render()
    assert sorted(fresh) == sorted(comp.FILES)
    for name, text in fresh.items():
        committed = (comp.TEMPLATES_DIR / name).read_text(encoding="utf-8")
        assert committed == text, f"templates/{name} is stale: run `make compile`"


def test_compile_is_deterministic_and_image_is_one_setting(tmp_path: Path) -> None:
    assert comp.render() == comp.render()
    comp.write(tmp_path, image="registry.example/osft:9", namespace="team-b")
    assert "namespace: team-b" in (tmp_path / "rbac.yaml").read_text()
    images = set(re.findall(r"image: (\S+)", (tmp_path / "osft-minimal-pipeline.yaml").read_text()))
    images |= set(re.findall(r"value: (registry\S+)", (tmp_path / "osft-minimal-pipeline.yaml").read_text()))
    assert images == {"registry.example/osft:9"}


# ------------------------------------------------------------------------------------------------- schema


@pytest.mark.parametrize("version", lint.VERSIONS)
@pytest.mark.parametrize("artifacts", [False, True])
def test_objects_validate_strictly_against_argo_schema(version: str, artifacts: bool) -> None:
    for doc in (build_template(artifacts=artifacts).to_dict(), build_cron().to_dict()):
        assert lint.schema_errors(doc, version) == []


def test_strict_schema_catches_typos_and_v4_rules(wt: dict[str, Any], cron: dict[str, Any]) -> None:
    bad = copy.deepcopy(wt)
    _tasks(bad)["dataset"]["dependz"] = "preflight"
    assert any("'dependz' was unexpected" in e for e in lint.schema_errors(bad))
    bad = copy.deepcopy(wt)
    bad["spec"]["volumeClaimTemplates"][0]["spec"]["accessModes"] = "ReadWriteMany"
    assert any("accessModes" in e and "array" in e for e in lint.schema_errors(bad))
    old = copy.deepcopy(cron)
    old["spec"]["schedule"] = old["spec"].pop("schedules")[0]
    errs = lint.schema_errors(old)
    assert any("'schedules' is a required property" in e for e in errs)


def test_int_or_string_quirk_is_patched(wt: dict[str, Any]) -> None:
    """Hera emits integer retry limits; Argo's schema types IntOrString as string. Unpatched, that fails."""
    from jsonschema import Draft202012Validator

    assert _tmpl(wt, "dataset")["retryStrategy"]["limit"] == 2
    root = lint.load_schema()
    raw = Draft202012Validator({"definitions": root["definitions"],
                                "$ref": "#/definitions/io.argoproj.workflow.v1alpha1.WorkflowTemplate"})
    assert any("is not of type 'string'" in e.message for e in raw.iter_errors(wt))


def test_vendored_schemas_are_the_published_files() -> None:
    for vendored, digest in SCHEMA_SHA256.items():
        assert hashlib.sha256(gzip.decompress((lint.SCHEMA_DIR / vendored).read_bytes())).hexdigest() == digest


# ------------------------------------------------------------------------------------------------- core objects


def test_core_objects_validate_with_kubernetes_validate_strict(wt: dict[str, Any]) -> None:
    pytest.importorskip("kubernetes_validate")
    docs = [d for f in ("rbac.yaml", "secrets.example.yaml") for d in comp.load_docs(comp.TEMPLATES_DIR / f)]
    core = lint.core_objects(wt)
    assert {d["kind"] for d in core} == {"PersistentVolumeClaim", "Pod"} and len(core) == 8
    assert lint.k8s_errors(docs + core) == []
    bad = copy.deepcopy(core[0])
    bad["spec"]["storageClass"] = "nfs"
    assert "storageClass" in lint.k8s_errors([bad])[0]


# ------------------------------------------------------------------------------------------------- references


def test_reference_checks_pass_on_the_real_objects(wt: dict[str, Any], cron: dict[str, Any]) -> None:
    assert lint.template_reference_errors(wt, SECRET_KEYS) == []
    assert lint.cron_reference_errors(cron, wt) == []
    assert all(v == [] for v in lint.lint_dir(comp.TEMPLATES_DIR).values())


def _mutate(wt: dict[str, Any], fn: Any) -> list[str]:
    doc = copy.deepcopy(wt)
    fn(doc)
    return lint.template_reference_errors(doc, SECRET_KEYS)


@pytest.mark.parametrize("mutation, expected", [
    (lambda d: _tasks(d)["train"].update(template="trian"), "no template named 'trian'"),
    (lambda d: _tasks(d)["evaluate"].update(depends="train && trainjob"), "depends on unknown task 'trainjob'"),
    (lambda d: _tasks(d)["preflight"].update(depends="register"), "dependency cycle"),
    (lambda d: _tasks(d)["dataset"]["arguments"]["parameters"][0].update(
        value="{{workflow.parameters.data_uri}}"), "no workflow parameter 'data_uri'"),
    (lambda d: _tasks(d)["evaluate"]["arguments"]["parameters"][1].update(
        value="{{tasks.preflight.outputs.parameters.base}}"), "has no output 'base'"),
    (lambda d: _tasks(d)["dataset"]["arguments"]["parameters"][0].update(
        value="{{tasks.train.outputs.parameters.metrics}}"), "not an ancestor"),
    (lambda d: _tasks(d)["register"].update(when="{{workflow.parameters.phase_04_registry_man_address}} != ''"),
     "quote {{workflow.parameters.phase_04_registry_man_address}}"),
    (lambda d: _tasks(d)["dataset"]["arguments"]["parameters"].append({"name": "splitt", "value": "1"}),
     "'splitt' is not an input"),
    (lambda d: _tasks(d)["dataset"]["arguments"]["parameters"].pop(1), "input 'workspace' of template dataset"),
    (lambda d: _tmpl(d, "dataset")["script"]["env"][1]["valueFrom"]["secretKeyRef"].update(key="aws_key"),
     "has no key 'aws_key'"),
    (lambda d: _tmpl(d, "dataset")["script"]["env"][1]["valueFrom"]["secretKeyRef"].update(name="aws"),
     "secret 'aws' is not one of"),
    (lambda d: _tmpl(d, "dataset")["script"]["env"][1]["valueFrom"]["secretKeyRef"].pop("optional"),
     "must be optional"),
    (lambda d: d["spec"]["arguments"]["parameters"][17].update(value="True"), "is not in its enum"),
    (lambda d: d["spec"]["arguments"]["parameters"][1].pop("value"), "has no value"),
    (lambda d: _tmpl(d, "register")["script"].update(volumeMounts=[]), "template register: does not mount"),
    (lambda d: _tmpl(d, "register")["script"].update(args=["-m", "hera.workflows.runner", "-e", "steps.nope:f"]),
     "runner entry steps.nope:f"),
    (lambda d: _tmpl(d, "register")["script"].update(image="other:1"), "use one image setting"),
    (lambda d: _tasks(d)["dataset"]["arguments"]["parameters"][0].update(value="{{workflow.status}}"),
     "only set in the onExit handler"),
    (lambda d: d["spec"].update(onExit="exit"), "spec.onExit: no template named 'exit'"),
])
def test_reference_checks_catch_each_kind_of_mistake(wt: dict[str, Any], mutation: Any, expected: str) -> None:
    errors = _mutate(wt, mutation)
    assert any(expected in e for e in errors), errors


def test_cron_reference_checks(wt: dict[str, Any], cron: dict[str, Any]) -> None:
    bad = copy.deepcopy(cron)
    bad["spec"]["workflowSpec"]["suspend"] = True
    bad["spec"]["workflowSpec"]["arguments"]["parameters"].append({"name": "phase_04_registry_opt_force", "value": "1"})
    bad["spec"]["workflowSpec"]["workflowTemplateRef"]["name"] = "other"
    errors = " | ".join(lint.cron_reference_errors(bad, wt))
    assert "would suspend every run" in errors and "not in ['true', 'false']" in errors and "'other'" in errors


def test_secret_names_and_keys_match_the_original_readme() -> None:
    text = README_SPEC.read_text(encoding="utf-8")
    original = {n: k for n, k in SECRET_KEYS.items() if n != "model-registry-token"}  # the one secret we add
    assert set(original) == {"s3-secret", "hf-token", "oci-pull-secret-model-download", "kubernetes-credentials"}
    for name, keys in original.items():
        section = text[text.index(f"**`{name}`"):]
        section = section[: section.index("\n\n  - **`") if "\n\n  - **`" in section else len(section)]
        for key in keys:
            assert f"`{key}`" in section, (name, key)


# ------------------------------------------------------------------------------------------------- behaviour


def test_arguments_carry_values_from_params_with_bool_enums(wt: dict[str, Any]) -> None:
    args = {p["name"]: p for p in wt["spec"]["arguments"]["parameters"]}
    assert list(args) == [p.name for p in PARAMS]
    for p in PARAMS:
        assert args[p.name]["value"] == ("" if p.required else to_text(p.default))
        assert "default" not in args[p.name]
        assert (args[p.name].get("enum") == ["true", "false"]) is (p.type is bool)


def test_dag_order_conditions_and_outputs(wt: dict[str, Any]) -> None:
    tasks = _tasks(wt)
    assert list(tasks) == ["preflight", "dataset", "train", "train-trainjob", "evaluate", "register"]
    assert "depends" not in tasks["preflight"] and tasks["dataset"]["depends"] == "preflight"
    assert tasks["train"]["depends"] == tasks["train-trainjob"]["depends"] == "dataset"
    assert tasks["evaluate"]["depends"] == "train && train-trainjob" and tasks["register"]["depends"] == "evaluate"
    assert tasks["train"]["when"] == "'{{tasks.preflight.outputs.parameters.train_mode}}' == 'single'"
    assert tasks["train-trainjob"]["when"] == "'{{tasks.preflight.outputs.parameters.train_mode}}' == 'trainjob'"
    assert tasks["register"]["when"] == "'{{workflow.parameters.phase_04_registry_man_address}}' != ''"
    assert wt["spec"]["onExit"] == "exit-handler"
    exit_args = {p["name"]: p["value"] for p in _tasks(wt, "exit-handler")["record-status"]["arguments"]["parameters"]}
    assert exit_args["status"] == "{{workflow.status}}"
    outs = {p["name"] for p in _tmpl(wt, "record-status")["outputs"]["parameters"]}
    assert {"final_loss", "eval_gate", "registration_status"} <= outs


def test_each_parameter_reaches_the_step_argument_it_names(wt: dict[str, Any]) -> None:
    """The two seeds stay apart (split vs training), upstream's names feed eval batch, limit and format version."""
    def args(task: str) -> dict[str, str]:
        return {p["name"]: p["value"] for p in _tasks(wt)[task]["arguments"]["parameters"]}

    ref = "{{workflow.parameters.%s}}"  # noqa: UP031
    assert args("dataset")["seed"] == ref % "phase_01_dataset_opt_seed"
    assert args("train")["seed"] == args("train-trainjob")["seed"] == ref % "phase_02_train_opt_seed"
    assert args("evaluate")["batch_size"] == ref % "phase_03_eval_opt_batch"
    assert args("evaluate")["limit"] == ref % "phase_03_eval_opt_limit"
    assert args("register")["format_version"] == ref % "phase_04_registry_opt_format_version"
    assert args("train-trainjob")["runtime"] == ref % "phase_02_train_opt_runtime"


def test_runner_templates_call_the_step_functions(wt: dict[str, Any]) -> None:
    entries = {t["name"]: lint._runner_entry(t) for t in wt["spec"]["templates"] if "script" in t}
    assert entries == {
        "preflight": "workflows.argo.preflight:preflight", "dataset": "steps.dataset:prepare_dataset",
        "train": "steps.train:train_model", "train-trainjob": "steps.train.trainjob_launch:launch_trainjob",
        "evaluate": "steps.evaluate:evaluate_model", "register": "steps.register:register_model",
        "record-status": "steps.finish:record_status",
    }
    for t in wt["spec"]["templates"]:
        if "script" in t:
            assert t["script"]["source"] == "{{inputs.parameters}}" and t["script"]["command"] == ["python"]
            assert {"name": "workspace", "mountPath": "/workspace"} in t["script"]["volumeMounts"]
            assert t["script"]["resources"]["requests"]["cpu"] and t["script"]["resources"]["requests"]["memory"]


def test_gpus_secrets_retries_and_workspace(wt: dict[str, Any]) -> None:
    train, ev = _tmpl(wt, "train"), _tmpl(wt, "evaluate")
    gpu = "{{workflow.parameters.phase_02_train_man_train_gpu}}"
    assert train["script"]["resources"]["limits"]["nvidia.com/gpu"] == gpu
    assert train["script"]["resources"]["requests"]["nvidia.com/gpu"] == gpu
    assert ev["script"]["resources"]["limits"]["nvidia.com/gpu"] == "{{workflow.parameters.phase_03_eval_opt_gpu}}"
    # the GPU node selector applies exactly when the evaluate pod asks for GPUs (default 1)
    from workflows.argo.expr import eval_expression, render

    expr = ev["podSpecPatch"].removeprefix("{{=").removesuffix("}}")
    for gpus, patch in (("1", {"nodeSelector": {"nvidia.com/gpu.present": "true"}}), ("0", {})):
        value = eval_expression(expr, lambda path, g=gpus: g if path[-1] == "phase_03_eval_opt_gpu" else None)
        assert json.loads(render(value)) == patch
    assert ev["tolerations"][0]["key"] == "nvidia.com/gpu"

    def secrets(name: str) -> set[str]:
        env = _tmpl(wt, name)["script"].get("env") or []
        return {e["valueFrom"]["secretKeyRef"]["name"] for e in env if "valueFrom" in e}

    assert secrets("dataset") == {"s3-secret", "hf-token"}
    assert secrets("train") == {"hf-token", "oci-pull-secret-model-download"}
    assert secrets("evaluate") == {"hf-token"}
    assert secrets("train-trainjob") == {"kubernetes-credentials"}
    for name in ("dataset", "train", "evaluate", "register", "train-trainjob"):
        r = _tmpl(wt, name)["retryStrategy"]
        assert r["limit"] >= 2 and r["backoff"]["duration"] and r["backoff"]["factor"] == 2
    assert "retryStrategy" not in _tmpl(wt, "preflight")  # deterministic: fail fast
    pvc = wt["spec"]["volumeClaimTemplates"][0]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "{{workflow.parameters.phase_00_workspace_opt_size}}"
    assert pvc["spec"]["storageClassName"] == "{{workflow.parameters.phase_00_workspace_opt_storage_class}}"
    spec = wt["spec"]
    assert spec["volumeClaimGC"]["strategy"] and spec["podGC"]["strategy"] and spec["ttlStrategy"]
    assert spec["activeDeadlineSeconds"] > 0 and spec["serviceAccountName"] == "osft-pipeline"


def test_trainjob_task_is_owned_by_the_workflow_and_mounts_its_pvc(wt: dict[str, Any]) -> None:
    args = {p["name"]: p["value"] for p in _tasks(wt)["train-trainjob"]["arguments"]["parameters"]}
    assert args["pvc_claim"] == "{{workflow.name}}-workspace"  # Argo names volumeClaimTemplates PVCs so
    assert args["owner_uid"] == "{{workflow.uid}}" and args["namespace"] == "{{workflow.namespace}}"
    assert args["workers"] == "{{workflow.parameters.phase_02_train_man_train_workers}}"


def test_artifacts_variant_exports_optional_unarchived_artifacts() -> None:
    doc = build_template(artifacts=True).to_dict()
    arts = {a["name"]: a for t in doc["spec"]["templates"] for a in (t.get("outputs") or {}).get("artifacts") or []}
    assert set(arts) == {"train-metrics", "loss-plot", "eval-results", "eval-comparison", "eval-plot"}
    assert all(a["optional"] is True and a["archive"] == {"none": {}} for a in arts.values())
    assert "artifacts" not in yaml.safe_dump(build_template().to_dict())


def test_cron_workflow(cron: dict[str, Any]) -> None:
    spec = cron["spec"]
    assert cron["metadata"]["name"] == "osft-minimal-pipeline-retrain"
    assert spec["schedules"] and spec["timezone"] and spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] > 0 and spec["successfulJobsHistoryLimit"] and spec["failedJobsHistoryLimit"]
    assert spec["suspend"] is True and "suspend" not in spec["workflowSpec"]  # until a dataset is configured
    args = {p["name"]: p["value"] for p in spec["workflowSpec"]["arguments"]["parameters"]}
    assert args["phase_04_registry_man_reg_version"] == "auto"
    assert spec["workflowSpec"]["workflowTemplateRef"] == {"name": "osft-minimal-pipeline"}


def test_install_manifests() -> None:
    kust = comp.load_docs(comp.TEMPLATES_DIR / "kustomization.yaml")[0]
    assert kust["resources"] == ["rbac.yaml", "osft-minimal-pipeline.yaml", "osft-minimal-pipeline-retrain.yaml"]
    rbac = {d["kind"]: d for d in comp.load_docs(comp.TEMPLATES_DIR / "rbac.yaml")}
    rules = {r["resources"][0]: set(r["verbs"]) for r in rbac["Role"]["rules"]}
    assert {"create", "get", "delete"} <= rules["trainjobs"] and {"create", "patch"} <= rules["workflowtaskresults"]
    subject = rbac["RoleBinding"]["subjects"][0]
    assert subject["name"] == rbac["ServiceAccount"]["metadata"]["name"] and subject["namespace"] == kust["namespace"]
    secrets = {d["metadata"]["name"]: d for d in comp.load_docs(comp.TEMPLATES_DIR / "secrets.example.yaml")}
    assert {n: tuple(s["stringData"]) for n, s in secrets.items()} == SECRET_KEYS
    assert all(v.startswith(("<", "{", "https://api.<")) for s in secrets.values() for v in s["stringData"].values())
