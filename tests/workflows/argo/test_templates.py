"""The compiled Argo objects: golden files, Argo's JSON schema (strict), core objects, argo-lint-like references."""

import copy
import gzip
import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from workflows.argo import compile as comp
from workflows.argo import lint, pipeline
from workflows.argo.pipeline import SECRET_KEYS, build_cron, build_template
from workflows.params import FULL, MINIMAL, PARAMS, TEMPLATES, params_for, to_text

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
    bad["spec"]["volumes"][0]["persistentVolumeClaim"]["readOnly"] = "yes"
    assert any("readOnly" in e and "boolean" in e for e in lint.schema_errors(bad))
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
    kinds = sorted(d["kind"] for d in core)
    # the workspace PVC (create, keep/reown patches, delete) + 12 pods (lineage and lineage-pvc among them)
    assert kinds == ["PersistentVolumeClaim"] * 4 + ["Pod"] * 12
    assert lint.k8s_errors(docs + core) == []
    bad = copy.deepcopy(next(d for d in core if d["kind"] == "PersistentVolumeClaim" and "spec" in d))
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
    (lambda d: _tasks(d)["dataset"]["arguments"]["parameters"].pop(0), "input 'workspace' of template dataset"),
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
    from steps.common.secrets import ADDED_KEYS

    for name, keys in original.items():
        section = text[text.index(f"**`{name}`"):]
        section = section[: section.index("\n\n  - **`") if "\n\n  - **`" in section else len(section)]
        for key in (k for k in keys if k not in ADDED_KEYS.get(name, ())):
            assert f"`{key}`" in section, (name, key)


# ------------------------------------------------------------------------------------------------- behaviour


@pytest.mark.parametrize("template", TEMPLATES)
def test_arguments_carry_values_from_params_with_bool_enums(template: str) -> None:
    doc = build_template(template=template).to_dict()
    assert doc["metadata"]["name"] == template
    args = {p["name"]: p for p in doc["spec"]["arguments"]["parameters"]}
    assert list(args) == [p.name for p in params_for(template)]
    for p in params_for(template):
        assert args[p.name]["value"] == ("" if p.required else to_text(p.default_for(template)))
        assert "default" not in args[p.name]
        assert (args[p.name].get("enum") == ["true", "false"]) is (p.type is bool)
    assert len(args) == {MINIMAL: 40, FULL: len(PARAMS)}[template]


def test_dag_order_conditions_and_outputs(wt: dict[str, Any]) -> None:
    tasks = _tasks(wt)
    assert list(tasks) == ["workspace-pvc", "workspace-bound", "preflight", "lineage", "lineage-pvc", "dataset",
                           "train", "train-trainjob", "evaluate", "publish", "publish-pvc", "keep-workspace",
                           "register"]
    assert "depends" not in tasks["workspace-pvc"] and tasks["workspace-bound"]["depends"] == "workspace-pvc"
    assert tasks["preflight"]["depends"] == "workspace-bound"  # no pod mounts the volume before it is bound
    assert tasks["lineage"]["depends"] == tasks["lineage-pvc"]["depends"] == "preflight"
    assert tasks["dataset"]["depends"] == "lineage && lineage-pvc"  # skipped (no continue_from) counts as done
    assert tasks["train"]["depends"] == tasks["train-trainjob"]["depends"] == "dataset"
    assert tasks["evaluate"]["depends"] == "train && train-trainjob"
    assert tasks["publish"]["depends"] == tasks["publish-pvc"]["depends"] == tasks["keep-workspace"]["depends"] == \
        "evaluate"
    assert tasks["register"]["depends"] == "publish && publish-pvc && keep-workspace"
    learn = "'{{tasks.dataset.outputs.parameters.data_status}}' != 'nothing-new'"  # since=last found nothing new
    continuing = "'{{workflow.parameters.phase_02_train_opt_continue_from}}' != ''"
    assert tasks["lineage"]["when"] == \
        f"{continuing} && '{{{{tasks.preflight.outputs.parameters.publish_mode}}}}' == 's3'"
    assert tasks["lineage-pvc"]["when"] == \
        f"{continuing} && '{{{{tasks.preflight.outputs.parameters.publish_mode}}}}' == 'pvc'"
    assert tasks["publish"]["when"] == \
        f"{learn} && '{{{{tasks.preflight.outputs.parameters.publish_mode}}}}' == 's3'"
    assert tasks["publish-pvc"]["when"] == \
        f"{learn} && '{{{{tasks.preflight.outputs.parameters.publish_mode}}}}' == 'pvc'"
    assert tasks["train"]["when"] == \
        f"{learn} && '{{{{tasks.preflight.outputs.parameters.train_mode}}}}' == 'single'"
    assert tasks["train-trainjob"]["when"] == \
        f"{learn} && '{{{{tasks.preflight.outputs.parameters.train_mode}}}}' == 'trainjob'"
    assert tasks["evaluate"]["when"] == learn
    assert tasks["register"]["when"] == \
        f"{learn} && '{{{{workflow.parameters.phase_04_registry_man_address}}}}' != ''"
    status = {p["name"]: p for p in _tmpl(wt, "dataset")["outputs"]["parameters"]}["data_status"]
    assert status["valueFrom"] == {"path": "/workspace/dataset/status.txt", "default": "new"}
    assert wt["spec"]["onExit"] == "exit-handler"
    exit_args = {p["name"]: p["value"] for p in _tasks(wt, "exit-handler")["record-status"]["arguments"]["parameters"]}
    assert exit_args["status"] == "{{workflow.status}}"
    outs = {p["name"] for p in _tmpl(wt, "record-status")["outputs"]["parameters"]}
    assert {"final_loss", "eval_gate", "registration_status"} <= outs
    delete = _tasks(wt, "exit-handler")["delete-workspace"]
    keep = ("'{{workflow.parameters.phase_04_registry_man_address}}' != '' && "
            "'{{workflow.parameters.phase_04_registry_opt_storage_uri}}' == ''")
    assert delete["depends"] == "record-status" and delete["when"] == f"'{{{{workflow.status}}}}' == 'Succeeded' && " \
        f"!({keep})"
    assert tasks["keep-workspace"]["when"] == f"{learn} && {keep}"
    reown = _tasks(wt, "exit-handler")["reown-workspace"]
    assert reown["dependencies"] == ["record-status"] and reown["continueOn"] == {"failed": True}


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
        "publish": "steps.publish:publish_model", "publish-pvc": "steps.publish:publish_model",
        "lineage": "steps.lineage:fetch_lineage", "lineage-pvc": "steps.lineage:fetch_lineage",
        "record-status": "steps.finish:record_status", "workspace-bound": "steps.volume:wait_for_workspace",
    }
    for t in wt["spec"]["templates"]:
        if "script" in t and t["name"] != "workspace-bound":  # it waits for the volume, so it cannot mount it
            assert t["script"]["source"] == "{{inputs.parameters}}" and t["script"]["command"] == ["python"]
            assert {"name": "workspace", "mountPath": "/workspace"} in t["script"]["volumeMounts"]
            assert t["script"]["resources"]["requests"]["cpu"] and t["script"]["resources"]["requests"]["memory"]


def _pod(wt: dict[str, Any], name: str, **values: str) -> dict[str, Any]:
    objs, errors = lint.rendered_objects(wt, values)
    assert errors == []
    return next(o for o in objs if o["kind"] == "Pod" and o["metadata"]["name"].endswith(f"-{name}"))


@pytest.mark.parametrize("gpus", ["0", "1", "8"])
def test_gpu_counts_reach_the_pods_through_pod_spec_patch(wt: dict[str, Any], gpus: str) -> None:
    """No tag in any quantity field (the API server refuses it); the rendered Pods carry the GPU count."""
    for t in wt["spec"]["templates"]:
        for res in ((t.get("script") or {}).get("resources") or {}).values():
            assert all("{{" not in str(v) for v in res.values()), t["name"]
    train = _pod(wt, "train", phase_02_train_man_train_gpu=gpus)
    ev = _pod(wt, "evaluate", phase_03_eval_opt_gpu=gpus)
    for pod in (train, ev):
        res = pod["spec"]["containers"][0]["resources"]
        assert res["limits"].get("nvidia.com/gpu") == (gpus if gpus != "0" else None)
        assert res["requests"].get("nvidia.com/gpu") == (gpus if gpus != "0" else None)
        assert res["requests"]["cpu"] and res["limits"]["memory"]  # the static resources survive the merge
    # the GPU node selector applies exactly when the evaluate pod asks for GPUs; train keeps a long grace period
    assert ev["spec"].get("nodeSelector") == ({"nvidia.com/gpu.present": "true"} if gpus != "0" else None)
    assert train["spec"]["terminationGracePeriodSeconds"] == pipeline.TRAIN_GRACE_S
    assert ev["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_secrets_retries_and_deadlines(wt: dict[str, Any]) -> None:
    def secrets(name: str) -> set[str]:
        env = _tmpl(wt, name)["script"].get("env") or []
        return {e["valueFrom"]["secretKeyRef"]["name"] for e in env if "valueFrom" in e}

    assert secrets("dataset") == {"s3-secret", "hf-token"}
    assert secrets("train") == {"hf-token", "oci-pull-secret-model-download"}
    assert secrets("evaluate") == {"hf-token"}
    assert secrets("train-trainjob") == {"kubernetes-credentials"}
    for t in wt["spec"]["templates"]:
        if "dag" in t:
            continue
        r = t["retryStrategy"]  # every pod retries: an eviction must not end a multi-day run
        assert r["limit"] >= 2 and r["backoff"]["factor"] == 2, t["name"]
        assert "maxDuration" not in r["backoff"] and "cap" not in r["backoff"], t["name"]  # cap: Argo >= 3.7 only
        assert t["activeDeadlineSeconds"] >= pipeline.PULL_ALLOWANCE_S, t["name"]
    for name in ("preflight", "record-status", "workspace-pvc"):
        assert _tmpl(wt, name)["retryStrategy"]["retryPolicy"] == "OnError"  # a bad parameter still fails fast
    assert wt["spec"]["activeDeadlineSeconds"] >= lint._longest_path_s(wt, "pipeline")


def test_workspace_pvc_is_created_by_a_resource_template_owned_by_the_workflow(wt: dict[str, Any]) -> None:
    spec = wt["spec"]
    assert "volumeClaimTemplates" not in spec and "volumeClaimGC" not in spec
    vol = next(v for v in spec["volumes"] if v["name"] == "workspace")
    assert vol["persistentVolumeClaim"]["claimName"] == "{{workflow.name}}-workspace"
    res = _tmpl(wt, "workspace-pvc")["resource"]
    assert res["action"] == "apply" and res["setOwnerReference"] is True
    objs, errors = lint.rendered_objects(wt, {"phase_00_workspace_opt_size": "2Ti",
                                              "phase_00_workspace_opt_storage_class": ""})
    pvc = next(o for o in objs if o["kind"] == "PersistentVolumeClaim" and "spec" in o)
    assert errors == [] and pvc["metadata"]["name"] == "osft-minimal-pipeline-abcde-workspace"
    assert pvc["spec"] == {"accessModes": ["ReadWriteMany"], "storageClassName": "",
                           "resources": {"requests": {"storage": "2Ti"}}}
    delete = _tmpl(wt, "delete-workspace")["resource"]
    assert delete["action"] == "delete" and "--ignore-not-found" in delete["flags"]
    assert spec["podGC"]["strategy"] and spec["ttlStrategy"]["secondsAfterFailure"] > 0
    assert spec["serviceAccountName"] == "osft-pipeline"


def test_pods_run_non_root_with_fs_group(wt: dict[str, Any]) -> None:
    for name in ("preflight", "dataset", "train", "evaluate", "register", "record-status", "train-trainjob"):
        sc = _pod(wt, name)["spec"]["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] == sc["fsGroup"] == pipeline.IMAGE_UID, name
        assert sc["fsGroupChangePolicy"] == "OnRootMismatch", name


def test_trainjob_task_is_owned_by_the_workflow_and_mounts_its_pvc(wt: dict[str, Any]) -> None:
    args = {p["name"]: p["value"] for p in _tasks(wt)["train-trainjob"]["arguments"]["parameters"]}
    assert args["pvc_claim"] == "{{workflow.name}}-workspace" == pipeline.WORKSPACE_CLAIM
    assert args["owner_uid"] == "{{workflow.uid}}" and args["namespace"] == "{{workflow.namespace}}"
    assert args["workers"] == "{{workflow.parameters.phase_02_train_man_train_workers}}"
    assert lint.trainjob_errors(wt) == []  # the TrainJob it creates validates against the Trainer CRD


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
    assert kust["resources"] == ["rbac.yaml", "osft-minimal-pipeline.yaml", "osft-minimal-pipeline-retrain.yaml",
                                 "osft-pipeline.yaml", "osft-pipeline-retrain.yaml"]
    assert kust["images"] == [{"name": "quay.io/osft-pipeline/osft-pipeline",
                               "newName": "quay.io/osft-pipeline/osft-pipeline", "newTag": "0.1.0"}]
    rbac = {d["kind"]: d for d in comp.load_docs(comp.TEMPLATES_DIR / "rbac.yaml")}
    rules = {r["resources"][0]: set(r["verbs"]) for r in rbac["Role"]["rules"]}
    assert {"create", "get", "delete"} <= rules["trainjobs"] and {"create", "patch"} <= rules["workflowtaskresults"]
    assert {"create", "get", "patch", "delete"} <= rules["persistentvolumeclaims"]  # kubectl apply / delete
    subject = rbac["RoleBinding"]["subjects"][0]
    assert subject["name"] == rbac["ServiceAccount"]["metadata"]["name"] and subject["namespace"] == kust["namespace"]
    secrets = {d["metadata"]["name"]: d for d in comp.load_docs(comp.TEMPLATES_DIR / "secrets.example.yaml")}
    assert {n: tuple(s["stringData"]) for n, s in secrets.items()} == SECRET_KEYS
    assert all(v.startswith(("<", "{", "https://api.<")) for s in secrets.values() for v in s["stringData"].values())
