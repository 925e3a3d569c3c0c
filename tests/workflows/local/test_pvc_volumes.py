"""The local engine maps a template's own PersistentVolumeClaim volume (its claimName rendered from inputs) to the
folder given with ``--pvc CLAIM=DIR``, refuses a claim it was not given (a cluster would leave the pod Pending),
and applies merge patches of the workspace claim as kubectl does, recording what a cluster would do with it."""

from pathlib import Path
from typing import Any

import pytest

from workflows.local.engine import LocalRunner
from workflows.local.state import claim_fate

WRITE = "import pathlib, sys; pathlib.Path(sys.argv[1]).write_text('model bytes')"


def _doc(claim_expr: str = "{{inputs.parameters.claim}}") -> dict[str, Any]:
    pvc = ("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: '{{workflow.name}}-workspace'\n"
           "spec:\n  accessModes: [ReadWriteMany]\n  resources:\n    requests:\n      storage: 1Gi\n")
    release = ("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: '{{workflow.name}}-workspace'\n"
               "  ownerReferences: null\n")
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTemplate", "metadata": {"name": "pvc-test"},
        "spec": {
            "entrypoint": "main",
            "arguments": {"parameters": [{"name": "claim", "value": "models-pvc"}]},
            "volumes": [{"name": "workspace", "persistentVolumeClaim": {"claimName": "{{workflow.name}}-workspace"}}],
            "templates": [
                {"name": "main", "dag": {"tasks": [
                    {"name": "ws", "template": "ws"},
                    {"name": "copy", "template": "copy", "depends": "ws", "arguments": {"parameters": [
                        {"name": "claim", "value": "{{workflow.parameters.claim}}"}]}},
                    {"name": "release", "template": "release", "depends": "copy"}]}},
                {"name": "ws", "resource": {"action": "apply", "setOwnerReference": True, "manifest": pvc}},
                {"name": "release", "resource": {"action": "patch", "mergeStrategy": "merge", "manifest": release}},
                {"name": "copy", "inputs": {"parameters": [{"name": "claim"}]},
                 "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": claim_expr}}],
                 "container": {"image": "python:3.11", "command": ["python", "-c", WRITE, "/models/out/model.bin"],
                               "volumeMounts": [{"name": "workspace", "mountPath": "/workspace"},
                                                {"name": "models", "mountPath": "/models"}]}},
            ],
        },
    }


def test_a_claim_volume_is_the_folder_given_with_pvc(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "out").mkdir(parents=True)
    state = LocalRunner(_doc(), tmp_path / "ws", pvcs={"models-pvc": str(models)}).run()
    assert state.phase == "Succeeded", state.error
    assert (models / "out" / "model.bin").read_text() == "model bytes"
    claim = f"{state.name}-workspace"
    fate = claim_fate(state.claims[claim])
    assert fate["owned"] is False and fate["kept_after_cleanup"] is True  # released by the merge patch
    assert "ownerReferences" not in fate["manifest"]["metadata"]


def test_a_claim_not_given_fails_like_a_pending_pod(tmp_path: Path) -> None:
    state = LocalRunner(_doc(), tmp_path / "ws", pvcs={}).run()
    assert state.phase == "Failed" and state.failed_task == "copy"
    assert "PersistentVolumeClaim 'models-pvc', which does not exist locally: pass --pvc models-pvc=DIR" in \
        state.tasks["copy"].message


def test_without_the_release_the_claim_goes_with_the_workflow(tmp_path: Path) -> None:
    doc = _doc()
    doc["spec"]["templates"][0]["dag"]["tasks"].pop()  # no release patch
    models = tmp_path / "models"
    (models / "out").mkdir(parents=True)
    state = LocalRunner(doc, tmp_path / "ws", pvcs={"models-pvc": str(models)}).run()
    fate = claim_fate(state.claims[f"{state.name}-workspace"])
    assert fate["owned"] is True and fate["kept_after_cleanup"] is False
    assert fate["fate"].startswith("deleted with the workflow")


def test_pvc_option_needs_an_existing_folder(tmp_path: Path) -> None:
    from steps.common.errors import StepError
    from workflows.local.cli import parse_pvcs

    assert parse_pvcs([f"models={tmp_path}"]) == {"models": str(tmp_path)}
    with pytest.raises(StepError, match="CLAIM=DIR"):
        parse_pvcs(["models"])
    with pytest.raises(StepError, match="is not a folder"):
        parse_pvcs([f"models={tmp_path / 'nope'}"])
