"""Small step functions and a Hera-built WorkflowTemplate for the local runner's tests.

The template mirrors the pipeline's wiring on tiny work: the real dataset step first, then a fake
"train" that logs mini-trainer-style metrics and writes train/metrics.json + loss.png, an "evaluate"
whose output parameter feeds a `when`, a "register" that only runs when an address is given, and an
onExit handler that records the workflow status. No `from __future__ import annotations` (Hera's
runner reads real annotations).
"""

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

from hera.workflows import Parameter

from steps.common.errors import StepError
from steps.common.workspace import Workspace


def fake_train(workspace: str, train_path: str, steps: int = 3, fail: bool = False, slow: float = 0.0) -> dict:
    """Log a metrics line per step, write train/metrics.json and train/loss.png."""
    ws = Workspace.at(workspace)
    if fail:
        raise StepError("training diverged: loss is NaN; lower the learning rate")
    rows = Path(train_path).read_text(encoding="utf-8").count("\n")
    losses = [round(2.0 / (i + 1), 4) for i in range(steps)]
    ws.train_dir.mkdir(parents=True, exist_ok=True)
    for i, loss in enumerate(losses, 1):
        if not slow:
            print(json.dumps({"step": i, "total_steps": steps, "loss": loss}), file=sys.stderr, flush=True)
        else:  # like mini-trainer: one JSON line per step in train/training_metrics_0.jsonl, not on stderr
            with open(ws.train_dir / "training_metrics_0.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"step": i, "steps_per_epoch": steps, "loss": loss}) + "\n")
            time.sleep(slow)
    metrics = {"final_loss": losses[-1], "steps": steps, "train_rows": rows, "hf_token_set": bool(os.environ.get(
        "HF_TOKEN"))}
    (ws.train_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot(range(1, steps + 1), losses)
    fig.savefig(ws.train_dir / "loss.png", dpi=50)
    ws.log("train", f"done: {steps} steps, final loss {losses[-1]}")
    return {"final_loss": losses[-1], "steps": steps}


def fake_evaluate(workspace: str, max_regression: float = 0.02) -> Annotated[str, Parameter(name="gate")]:
    """Write eval/comparison.json; the gate is the output parameter."""
    ws = Workspace.at(workspace)
    ws.eval_dir.mkdir(parents=True, exist_ok=True)
    rows = [{"task": "arc_easy", "metric": "acc", "base": 0.50, "tuned": 0.52, "delta": 0.02, "stderr": 0.01,
             "verdict": "improved"},
            {"task": "held_out", "metric": "loss", "base": 2.0, "tuned": 1.5, "delta": -0.5, "verdict": "improved",
             "extra_key": "kept"}]
    gate = "pass" if max_regression >= 0 else "fail"
    comp = {"gate": gate, "max_regression": max_regression, "rows": rows}
    (ws.eval_dir / "comparison.json").write_text(json.dumps(comp), encoding="utf-8")
    return gate


def fake_register(workspace: str, address: str, name: str, gate: str, token_echo: str = "") -> dict:
    """Write registry/registration.json (never the token)."""
    ws = Workspace.at(workspace)
    ws.registry_dir.mkdir(parents=True, exist_ok=True)
    record = {"status": "registered", "address": address, "name": name, "gate": gate, "token_set": bool(token_echo)}
    (ws.registry_dir / "registration.json").write_text(json.dumps(record), encoding="utf-8")
    return record


def record_exit(workspace: str = "/workspace", status: str = "{{workflow.status}}",
                failures: str = "{{workflow.failures}}") -> None:
    """onExit: append the final status to the pipeline log (defaults are Argo globals, resolved per run)."""
    names = [f.get("displayName") for f in json.loads(failures or "[]")]
    Workspace.at(workspace).log("exit", f"workflow {status}; failed: {','.join(names) or 'none'}")


def build_template(name: str = "local-test") -> str:
    """The test WorkflowTemplate as YAML (compiled with Hera, like templates/)."""
    from hera.workflows import DAG, Env, Script, SecretEnv, Volume, WorkflowTemplate
    from hera.workflows import models as m

    from steps.dataset import prepare_dataset

    vm = [m.VolumeMount(name="workspace", mount_path="/workspace")]
    hf = SecretEnv(name="HF_TOKEN", secret_name="hf-token", secret_key="token", optional=True)

    def step(fn, tname, **kw):  # noqa: ANN001, ANN202
        return Script(name=tname, source=fn, constructor="runner", image="osft:local", volume_mounts=vm, **kw)

    args = [Parameter(name="data_uri", value=""), Parameter(name="split", value="0.8"),
            Parameter(name="train_steps", value="3"), Parameter(name="train_fail", value="false"),
            Parameter(name="registry_address", value=""), Parameter(name="model_name", value="osft-model"),
            Parameter(name="hf_token", value="")]
    with WorkflowTemplate(name=name, entrypoint="pipeline", on_exit="exit-handler", arguments=args,
                          volumes=[Volume(name="workspace", size="1Gi", mount_path="/workspace")]) as wt:
        t_data = step(prepare_dataset, "dataset", env=[hf])
        t_train = step(fake_train, "train", env=[hf, Env(name="TRAIN_MARK", value="{{workflow.name}}")],
                       resources=None)
        t_eval = step(fake_evaluate, "evaluate")
        t_reg = step(fake_register, "register")
        step(record_exit, "exit-handler")
        with DAG(name="pipeline"):
            d = t_data(name="dataset", arguments={"data_uri": "{{workflow.parameters.data_uri}}",
                                                  "workspace": "/workspace", "split": "{{workflow.parameters.split}}",
                                                  "hf_token": "{{workflow.parameters.hf_token}}"})
            t = t_train(name="train", arguments={"workspace": "/workspace",
                                                 "train_path": "/workspace/dataset/train.jsonl",
                                                 "steps": "{{workflow.parameters.train_steps}}",
                                                 "fail": "{{workflow.parameters.train_fail}}"})
            e = t_eval(name="evaluate", arguments={"workspace": "/workspace"})
            r = t_reg(name="register", arguments={"workspace": "/workspace",
                                                  "address": "{{workflow.parameters.registry_address}}",
                                                  "name": "{{=workflow.parameters.model_name + '-' + "
                                                          "tasks.evaluate.outputs.parameters.gate}}",
                                                  "gate": e.get_parameter("gate"),
                                                  "token_echo": "{{workflow.parameters.hf_token}}"},
                      when="'{{workflow.parameters.registry_address}}' != '' && "
                           "'{{tasks.evaluate.outputs.parameters.gate}}' == 'pass'")
            d >> t >> e >> r
    return wt.to_yaml()
