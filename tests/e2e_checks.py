"""One end-to-end run, checked the same way in two places.

The local e2e test (tests/test_pipeline_e2e.py: the compiled WorkflowTemplate through the local engine) and the
cluster e2e test (tests/workflows/argo/test_cluster_e2e.py: the same template on a real Argo, `make e2e-kind`)
submit the parameter set of :func:`e2e_parameters` — exactly ``examples/laptop-params.yaml``, plus where the
data is and where the model is published (and, locally, a model on disk: the Hub is out of reach here) — and
hold the run to :func:`check_run`: every task's phase, the dataset's rows, the training summary and its
checkpoint, the eval comparison, the exit handler's outputs, no secret parameter in any output, and, with a
storage URI, the published model (every file's bytes against the manifest's size and sha256).

A run is seen through :class:`RunView`: from the local engine's ``run.json`` (:func:`local_view`) or from the
Workflow object the Argo Server returns (:func:`cluster_view`, tasks grouped the way Argo nests retried pods).
"""

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workflows.argo.nodes import output_parameters, task_nodes
from workflows.paramfile import LAPTOP, load_parameter_file

DATA = "phase_01_dataset_man_data_uri"
MODEL = "phase_02_train_man_train_model"
STORAGE = "phase_04_registry_opt_storage_uri"
HF_TOKEN_PARAM = "phase_01_dataset_opt_hf_token"
# A secret parameter planted in both runs: no output parameter or step result may echo it. No step uses it with
# s3:// or local data (the train step's Hub download reads the hf-token secret, not this parameter).
PLANTED_PARAM_TOKEN = "hf_plantedParamToken0007"
MANIFEST = "osft-manifest.json"
SERVING_FILES = {"config.json", "model.safetensors"}  # at least these are published


def e2e_parameters(data_uri: str, storage_uri: str = "", model: str = "") -> dict[str, str]:
    """The parameters both end-to-end runs submit: the laptop set, the data URI, the storage URI (if any), the
    planted secret parameter, and ``model`` only where the laptop set's Hub model cannot be downloaded."""
    params = load_parameter_file(LAPTOP)
    params[DATA] = data_uri
    if storage_uri:
        params[STORAGE] = storage_uri
    if model:
        params[MODEL] = model
    params[HF_TOKEN_PARAM] = PLANTED_PARAM_TOKEN
    return params


@dataclass
class RunView:
    """What both runs are checked on: the workflow's phase, each task's phase, output parameters and result
    (stdout: the step's return value as JSON), and the exit handler's tasks."""

    phase: str
    phases: dict[str, str]
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    results: dict[str, str] = field(default_factory=dict)
    exit_phases: dict[str, str] = field(default_factory=dict)
    exit_outputs: dict[str, dict[str, str]] = field(default_factory=dict)


def local_view(ws: Path) -> RunView:
    """A local run (``osft-pipeline run``) from its ``run.json``."""
    run = json.loads((ws / "run.json").read_text(encoding="utf-8"))
    view = RunView(phase=run["workflow"]["phase"], phases={})
    for name, t in run["tasks"].items():
        if name.startswith("exit-handler."):
            short = name.removeprefix("exit-handler.")
            view.exit_phases[short], view.exit_outputs[short] = t["phase"], dict(t.get("outputs") or {})
        else:
            view.phases[name], view.outputs[name] = t["phase"], dict(t.get("outputs") or {})
            view.results[name] = t.get("result") or ""
    return view


def cluster_view(workflow: Mapping[str, Any]) -> RunView:
    """A cluster run from its Workflow object (``argo get NAME -o json``)."""
    status = workflow.get("status") or {}
    view = RunView(phase=status.get("phase") or "Pending", phases={})
    for t in task_nodes(status.get("nodes") or {}):
        if t["exit_handler"]:
            view.exit_phases[t["name"]], view.exit_outputs[t["name"]] = t["phase"], output_parameters(t)
        else:
            view.phases[t["name"]], view.outputs[t["name"]] = t["phase"], output_parameters(t)
            view.results[t["name"]] = (t["outputs"] or {}).get("result") or ""
    return view


def _json(text: str, what: str) -> dict[str, Any]:
    """The last JSON object in ``text`` (a step's stdout may carry lines before its return value)."""
    for line in reversed(text.strip().splitlines() or [""]):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    try:
        value = json.loads(text)
    except ValueError:
        raise AssertionError(f"{what} is not JSON: {text[:300]!r}") from None
    assert isinstance(value, dict), f"{what} is not a JSON object: {text[:300]!r}"
    return value


@dataclass
class Published:
    """A published model as stored: the manifest and a reader of the files under its folder."""

    uri: str
    manifest: dict[str, Any]
    read: Callable[[str], bytes]


def s3_published(s3: Any, uri: str) -> Published:
    """The model published at ``s3://bucket/prefix`` (a boto3 S3 client of that endpoint)."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/") + "/"
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=prefix + MANIFEST)["Body"].read())
    return Published(uri, manifest, lambda rel: s3.get_object(Bucket=bucket, Key=prefix + rel)["Body"].read())


def check_run(view: RunView, params: Mapping[str, str], published: Callable[[str], Published] | None = None
              ) -> dict[str, Any]:
    """Assert what a successful run of ``params`` leaves, the same on the local engine and on a cluster; return the
    key numbers. ``published(uri)`` opens the model the run published (needed when ``params`` has a storage URI).
    """
    storage = params.get(STORAGE, "")
    registering = bool(params.get("phase_04_registry_man_address", ""))
    assert view.phase == "Succeeded", (view.phase, view.phases)
    expected = dict.fromkeys(("workspace-pvc", "workspace-bound", "preflight", "dataset", "train", "evaluate"),
                             "Succeeded")
    expected |= {"train-trainjob": "Skipped", "register": "Succeeded" if registering else "Skipped"}
    if "publish" in view.phases or storage:
        expected |= {"publish": "Succeeded" if storage.startswith("s3://") else "Skipped",
                     "publish-pvc": "Succeeded" if storage.startswith("pvc://") else "Skipped"}
    assert {k: view.phases.get(k) for k in expected} == expected, view.phases
    assert view.exit_phases.get("record-status") == "Succeeded", view.exit_phases
    assert view.exit_phases.get("delete-workspace") == "Succeeded", view.exit_phases

    # dataset: the laptop set's subset, split into train and eval
    rows = _json(view.results["dataset"], "the dataset step's result")
    subset = int(params["phase_01_dataset_opt_subset"])
    assert rows["train_rows"] + rows["eval_rows"] == subset, rows
    assert rows["train_rows"] > rows["eval_rows"] > 0, rows

    # train: a finished run of these hyper-parameters, and the checkpoint it left on the workspace
    train = _json(view.outputs["train"]["summary"], "train's summary output")
    hp = train["hyper_parameters"]
    assert (hp["learning_rate"], hp["max_seq_len"], hp["effective_batch_size"], hp["max_tokens_per_gpu"]) == (
        float(params["phase_02_train_opt_learning_rate"]), int(params["phase_02_train_opt_max_seq_len"]),
        int(params["phase_02_train_man_train_batch"]), int(params["phase_02_train_man_train_tokens"])), hp
    assert hp["device"] == "cpu" and hp["world_size"] == 1, hp
    assert train["steps"] >= 1 and 0 < train["samples"] <= rows["train_rows"] * hp["epochs"], train
    assert math.isfinite(train["final_loss"]) and math.isfinite(train["first_loss"]), train
    assert train["checkpoint"].startswith("train/") and "/hf_format/" in train["checkpoint"], train

    # evaluate: base vs tuned on every requested benchmark and the held-out split, and the gate's verdict
    ev = _json(view.outputs["evaluate"]["summary"], "evaluate's summary output")
    requested = json.loads(view.outputs["preflight"]["eval_tasks"])  # the preflight's plan of the benchmarks
    assert ev["gate"] in ("pass", "fail"), ev
    for task in [*requested, "held_out"]:
        assert any(t == task or t.startswith(task + "@") for t in ev["tasks"]), (task, ev["tasks"])
    compared = {row["task"].split("@")[0] for row in ev["base_vs_tuned"]
                if isinstance(row.get("base"), int | float) and isinstance(row.get("tuned"), int | float)}
    assert compared >= {*requested, "held_out"}, ev["base_vs_tuned"]

    # the exit handler's outputs are the run's key numbers
    out = view.exit_outputs["record-status"]
    assert float(out["final_loss"]) == train["final_loss"] and int(out["train_steps"]) == train["steps"], out
    assert out["eval_gate"] == ev["gate"], out
    assert out["registration_status"] == ("" if not registering else out["registration_status"]), out

    # no output parameter or step result echoes the secret parameter
    secret = params.get(HF_TOKEN_PARAM, "")
    if secret:
        texts = [*view.results.values(), *(v for o in view.outputs.values() for v in o.values()),
                 *(v for o in view.exit_outputs.values() for v in o.values())]
        assert not [t for t in texts if secret in t], "a step output echoes the secret parameter"

    numbers = {"train_rows": rows["train_rows"], "eval_rows": rows["eval_rows"], "steps": train["steps"],
               "final_loss": train["final_loss"], "gate": ev["gate"], "checkpoint": train["checkpoint"]}
    if storage:
        assert published is not None, "a storage URI was given: pass published= to read the model back"
        summary = _json(view.outputs["publish"]["summary"], "publish's summary output")
        assert summary["status"] in ("published", "already published"), summary
        assert summary["uri"].startswith(storage.rstrip("/") + "/"), (summary["uri"], storage)
        model = published(summary["uri"])
        files = {f["path"]: f for f in model.manifest["files"]}
        assert set(files) >= SERVING_FILES, sorted(files)
        for rel, f in files.items():  # every stored file is the one the manifest describes, byte for byte
            body = model.read(rel)
            assert (len(body), hashlib.sha256(body).hexdigest()) == (f["size"], f["sha256"]), rel
        numbers |= {"published": summary["uri"], "published_files": sorted(files)}
    return numbers
