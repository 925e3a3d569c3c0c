"""No dangling URI, ever (issue 15): the run's cleanup simulated on the template as written. The template before
issue 15 registered pvc://<workspace>/… and deleted that claim on success; today's keeps it exactly when the
model was registered from it. Each rule's mutation test puts a defect back into a copy and sees it caught."""

import copy
from pathlib import Path
from typing import Any

import pytest

from workflows.argo import compile as comp
from workflows.argo import goyaml, lint
from workflows.argo.retention import retention_errors, simulate

BEFORE = Path(__file__).parent / "data" / "osft-minimal-pipeline.before-issue-15.yaml"
REG = {"phase_04_registry_man_address": "model-registry.ml.svc"}


@pytest.fixture(scope="module")
def new() -> dict[str, Any]:
    return comp.load_docs(comp.TEMPLATES_DIR / "osft-minimal-pipeline.yaml")[0]


def _tmpl(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in doc["spec"]["templates"] if t["name"] == name)


def _task(doc: dict[str, Any], dag: str, name: str) -> dict[str, Any]:
    return next(t for t in _tmpl(doc, dag)["dag"]["tasks"] if t["name"] == name)


def test_the_template_before_issue_15_registered_a_uri_its_cleanup_deleted(new: dict[str, Any]) -> None:
    errors = retention_errors(comp.load_docs(BEFORE)[0])
    assert len(errors) == 1 and "storage_uri=''" in errors[0] and "deleted by task delete-workspace" in errors[0]
    assert retention_errors(new) == []


@pytest.mark.parametrize(("storage", "registers", "kept"), [
    ("", True, True),  # keep mode: the workspace copy is registered, the claim survives
    ("s3://models/osft", True, False),  # published: the workspace goes as before
    ("pvc://models/osft", True, False),
])
def test_each_way_a_successful_run_leaves_the_workspace(new: dict[str, Any], storage: str, registers: bool,
                                                        kept: bool) -> None:
    out = simulate(new, {**REG, "phase_04_registry_opt_storage_uri": storage})
    claim = "osft-run-abcde-workspace"
    assert out.registered is registers
    assert out.registered_claim == (claim if kept else None)
    assert (out.claims[claim].fate() == "kept") is kept
    assert ("keep-workspace" in out.ran) is kept and ("delete-workspace" in out.ran) is not kept
    publish = {"s3://models/osft": "publish", "pvc://models/osft": "publish-pvc"}.get(storage)
    assert [t for t in out.ran if t.startswith("publish")] == ([publish] if publish else [])


def test_a_failed_run_in_keep_mode_gives_the_claim_back_to_the_workflow(new: dict[str, Any]) -> None:
    values = {**REG, "phase_04_registry_opt_storage_uri": ""}
    out = simulate(new, values, "Failed", fail_at="register")  # keep-workspace ran, nothing registered
    assert "keep-workspace" in out.ran and "reown-workspace" in out.ran
    assert out.claims["osft-run-abcde-workspace"].fate() == "deleted with the workflow (ownerReference)"


def test_mutation_no_keep_workspace_task_is_caught(new: dict[str, Any]) -> None:
    bad = copy.deepcopy(new)
    tasks = _tmpl(bad, "pipeline")["dag"]["tasks"]
    tasks[:] = [t for t in tasks if t["name"] != "keep-workspace"]
    _task(bad, "pipeline", "register")["depends"] = "publish && publish-pvc"
    errors = retention_errors(bad)
    assert any("would dangle" in e and "deleted with the workflow (ownerReference)" in e for e in errors), errors


def test_mutation_delete_workspace_on_every_success_is_caught(new: dict[str, Any]) -> None:
    bad = copy.deepcopy(new)
    _task(bad, "exit-handler", "delete-workspace")["when"] = "'{{workflow.status}}' == 'Succeeded'"
    assert any("deleted by task delete-workspace" in e for e in retention_errors(bad))


def test_mutation_a_patch_that_does_not_remove_the_owner_is_caught(new: dict[str, Any]) -> None:
    bad = copy.deepcopy(new)
    res = _tmpl(bad, "keep-workspace")["resource"]
    res["manifest"] = res["manifest"].replace("ownerReferences: null", "ownerReference: null")  # a typo
    assert any("would dangle" in e for e in retention_errors(bad))


def test_mutation_no_reown_on_failure_is_caught_as_a_leak(new: dict[str, Any]) -> None:
    bad = copy.deepcopy(new)
    tasks = _tmpl(bad, "exit-handler")["dag"]["tasks"]
    tasks[:] = [t for t in tasks if t["name"] != "reown-workspace"]
    errors = retention_errors(bad)
    assert any("a run failing at task register" in e and "unowned and undeleted" in e for e in errors), errors


def test_mutation_patches_are_checked_as_the_object_they_leave(new: dict[str, Any]) -> None:
    bad = copy.deepcopy(new)
    _tmpl(bad, "keep-workspace")["resource"]["mergeStrategy"] = "strategic"
    objs, errors = lint.rendered_objects(bad, {})
    assert any("keep-workspace" in e and "only 'merge'" in e for e in errors)
    bad = copy.deepcopy(new)
    res = _tmpl(bad, "reown-workspace")["resource"]
    res["manifest"] = res["manifest"].replace("-workspace", "-workspaces")
    assert any("reown-workspace" in e and "no task of the workflow creates" in e
               for e in lint.rendered_objects(bad, {})[1])
    bad = copy.deepcopy(new)  # a patch leaving an invalid claim: kubernetes-validate sees the merged object
    doc = goyaml.load(_tmpl(bad, "keep-workspace")["resource"]["manifest"])
    doc["spec"] = {"accessModes": "ReadWriteMany"}
    _tmpl(bad, "keep-workspace")["resource"]["manifest"] = goyaml.dump(doc)
    assert any("PersistentVolumeClaim" in e and "accessModes" in e for e in lint.pod_errors(bad, [{}]))


def test_the_lint_report_carries_the_rule(new: dict[str, Any]) -> None:
    report = lint.lint_template(new)
    assert report["registered model outlives the run (cleanup simulated)"] == []
    assert retention_errors(comp.load_docs(BEFORE)[0]) == lint.policy_errors(comp.load_docs(BEFORE)[0])[-1:]
