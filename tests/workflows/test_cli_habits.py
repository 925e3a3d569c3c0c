"""The command line keeps the argo CLI's habits and checks everything offline first (issue 16's friction list).

Each test here failed on the CLI before issue 16: `--from`, `--watch`, `-f`, `--serviceaccount`, `--dry-run -o`,
every error at once, cron checked offline, connection causes, `compile --out` guarding templates/, `lint` of files
and missing paths, `--version`, namespaces as DNS labels, one spelling of `-p`, `run` without `--local`.
"""

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import yaml
from typer.main import get_command
from typer.testing import CliRunner, Result

from tests.argo_nodes import NodeBuilder
from tests.argo_stub import ArgoStub
from workflows.argo import compile as comp
from workflows.argo.pipeline import NAME
from workflows.cli import app

DATA = "phase_01_dataset_man_data_uri"
ROOT = Path(__file__).resolve().parents[2]


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env={"ARGO_SERVER": "", "ARGO_TOKEN": "", "ARGO_NAMESPACE": "",
                                                    **(env or {})})


@pytest.fixture()
def stub() -> Iterator[ArgoStub]:
    s = ArgoStub()
    yield s
    s.close()


def _errors(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.startswith("error: ")]


# ------------------------------------------------------------------------------ every error, offline, at once


def test_submit_lists_every_problem_before_looking_for_a_server() -> None:
    res = invoke("submit", "-n", "Bad_NS", "-p", "phase_01_dataset_man_data_split=1.5",
                 "-p", "phase_02_train_opt_memory=32GB", "-p", "phase_02_train_opt_cpu=4 cores", "-p", "nosuch=1")
    assert res.exit_code == 2
    errors = _errors(res.output)
    assert len(errors) == 6, res.output  # namespace, unknown name, required dataset, memory, cpu, split
    joined = "\n".join(errors)
    for needle in ("namespace 'Bad_NS' is not a Kubernetes namespace name", "unknown parameter 'nosuch'",
                   f"{DATA} is required", "'32GB'", "(did you mean 32Gi?)", "'4 cores'", "split=1.5"):
        assert needle in joined
    assert "no Argo Server" not in res.output  # parameters come first; the host is not even looked for


def test_cron_schedule_and_timezone_are_checked_offline_with_the_parameters() -> None:
    res = invoke("cron", "install", "--schedule", "0 25 * * *", "--timezone", "Mars/Base")
    assert res.exit_code == 2
    errors = _errors(res.output)
    assert len(errors) == 3, res.output
    assert "hour: end of range (25) above maximum (23)" in errors[0]
    assert "timezone 'Mars/Base' is not an IANA time zone name" in errors[1] and f"{DATA} is required" in errors[2]


@pytest.mark.parametrize(("schedule", "ok"), [
    ("0 3 * * 0", True), ("@daily", True), ("*/15 9-17 * * MON-FRI", True), ("@every 1h30m", True),
    ("CRON_TZ=Europe/Berlin 0 3 * * *", True), ("0 3 ? * *", True), ("5/10 * * * *", True),
    ("0 3 * * 7", False),  # robfig's day of week is 0-6
    ("0 3 * *", False), ("60 * * * *", False), ("@fortnightly", False), ("0 3 * * 0 2026", False),
    ("*/0 * * * *", False),
])
def test_schedules_follow_robfig_parse_standard(schedule: str, ok: bool) -> None:
    from workflows.argo.cron import CronError, check_schedule

    if ok:
        check_schedule(schedule)
    else:
        with pytest.raises(CronError):
            check_schedule(schedule)


# ------------------------------------------------------------------------------------------ argo's flags


def test_dry_run_prints_the_exact_submit_request_from_a_parameter_file(tmp_path: Path) -> None:
    pfile = tmp_path / "p.yaml"
    pfile.write_text(f"{DATA}: s3://bucket/chat.jsonl\nphase_02_train_opt_use_liger: false\n"
                     "phase_02_train_opt_learning_rate: 1e-4\nphase_03_eval_man_eval_tasks: [arc_easy, mmlu]\n")
    res = invoke("submit", "--from", f"workflowtemplate/{NAME}", "-f", str(pfile), "-p",
                 "phase_02_train_opt_use_liger=true", "--serviceaccount", "runner", "-n", "ml", "--dry-run", "-o",
                 "json")
    assert res.exit_code == 0, res.output
    body = json.loads(res.output)
    assert body == {"namespace": "ml", "resourceKind": "WorkflowTemplate", "resourceName": NAME, "submitOptions": {
        "generateName": f"{NAME}-", "serviceAccount": "runner", "parameters": [
            f"{DATA}=s3://bucket/chat.jsonl", "phase_02_train_opt_use_liger=true",  # -p wins over the file
            "phase_02_train_opt_learning_rate=0.0001", 'phase_03_eval_man_eval_tasks=["arc_easy", "mmlu"]']}}
    from workflows.argo.lint import request_errors

    assert request_errors(body, "io.argoproj.workflow.v1alpha1.WorkflowSubmitRequest") == []


def test_dry_run_from_a_cluster_template_and_with_install_yaml() -> None:
    res = invoke("submit", "--from", "clusterworkflowtemplate/osft-shared", "-p", f"{DATA}=hf://o/d", "--dry-run")
    assert res.exit_code == 0, res.output
    body = yaml.safe_load(res.output)
    assert body["resourceKind"] == "ClusterWorkflowTemplate" and body["resourceName"] == "osft-shared"
    res = invoke("submit", "--install", "--image", "reg.example/osft:2", "-p", f"{DATA}=hf://o/d", "-n", "team",
                 "--dry-run", "-o", "yaml")
    docs = list(yaml.safe_load_all(res.output))
    assert [d.get("kind", "submit") for d in docs] == ["ServiceAccount", "Role", "RoleBinding", "WorkflowTemplate",
                                                       "submit"]
    assert docs[2]["subjects"][0]["namespace"] == "team" and docs[3]["metadata"]["namespace"] == "team"
    assert {t["script"]["image"] for t in docs[3]["spec"]["templates"] if "script" in t} == {"reg.example/osft:2"}


def test_dry_run_install_of_the_full_template_with_its_parameters() -> None:
    res = invoke("submit", "--install", "--from", "workflowtemplate/osft-pipeline", "-p", f"{DATA}=hf://o/d", "-p",
                 "phase_02_train_opt_lr_warmup=20", "-n", "team", "--dry-run", "-o", "yaml")
    assert res.exit_code == 0, res.output
    docs = list(yaml.safe_load_all(res.output))
    assert docs[3]["kind"] == "WorkflowTemplate" and docs[3]["metadata"]["name"] == "osft-pipeline"
    assert len(docs[3]["spec"]["arguments"]["parameters"]) == 59
    assert docs[4]["resourceName"] == "osft-pipeline"
    assert "phase_02_train_opt_lr_warmup=20" in docs[4]["submitOptions"]["parameters"]
    res = invoke("submit", "--install", "--from", "workflowtemplate/osft-other", "-p", f"{DATA}=hf://o/d",
                 "--dry-run")
    assert res.exit_code == 2 and "--install installs workflowtemplate/osft-minimal-pipeline or" in res.output


def test_dry_run_never_prints_a_secret_parameter() -> None:
    res = invoke("submit", "-p", f"{DATA}=hf://o/d", "-p", "phase_01_dataset_opt_hf_token=hf_secretvalue123",
                 "--dry-run")
    assert res.exit_code == 0 and "hf_secretvalue123" not in res.output
    assert "phase_01_dataset_opt_hf_token=***" in res.output


def test_bad_from_is_one_line() -> None:
    res = invoke("submit", "--from", "workflow/x", "-p", f"{DATA}=hf://o/d", "--dry-run")
    assert res.exit_code == 2 and _errors(res.output) == [
        "error: --from 'workflow/x': write workflowtemplate/NAME or clusterworkflowtemplate/NAME (e.g. "
        f"workflowtemplate/{NAME})"]


def _watch(final_phase: str, nodes: dict) -> Result:
    """`submit --watch` against an Argo Server stub whose workflow ends in ``final_phase`` with ``nodes``."""
    stub = ArgoStub(final_phase=final_phase, final_nodes=nodes)
    try:
        stub.templates[("ml", NAME)] = {"metadata": {"name": NAME}, "spec": {"arguments": {"parameters": [
            {"name": DATA}]}}}
        return invoke("submit", "-p", f"{DATA}=hf://o/d", "--watch", "--poll-seconds", "0.01", "--host", stub.url,
                      "--token", stub.token, "-n", "ml")
    finally:
        stub.close()


def test_watch_prints_each_step_and_the_failed_steps_message(monkeypatch: pytest.MonkeyPatch) -> None:
    nodes = {
        "n1": {"id": "n1", "name": "wf.train", "displayName": "train", "type": "Pod", "phase": "Succeeded",
               "templateName": "train"},
        "n2": {"id": "n2", "name": "wf.evaluate", "displayName": "evaluate", "type": "Pod", "phase": "Failed",
               "templateName": "evaluate", "message": "Error (exit code 2): error: task arc_easy has no data"},
    }
    res = _watch("Failed", nodes)
    assert res.exit_code == 1
    assert "  train: Succeeded" in res.output and "  evaluate: Failed: Error (exit code 2)" in res.output
    assert "error: workflow osft-minimal-pipeline-00000 Failed: evaluate: Error (exit code 2): error: task arc_easy " \
           "has no data" in res.output


def test_watch_shows_a_retried_task_once_with_its_final_state() -> None:
    """Argo runs each attempt as a pod ``train(0)``, ``train(1)`` under a Retry node ``train``: --watch shows the
    task, and a failed first attempt of a run that succeeded is no failure."""
    b = NodeBuilder("osft-minimal-pipeline-00000")
    root = b.boundary("osft-minimal-pipeline-00000")
    b.task(root, "train", "train", "Succeeded", [{"phase": "Failed", "message": "OOMKilled (exit code 137)"},
                                                  {"phase": "Succeeded"}])
    b.task(root, "register", "register", "Skipped", message="when '' != '' evaluated false")
    res = _watch("Succeeded", b.nodes)
    assert res.exit_code == 0, res.output
    assert "  train: Succeeded" in res.output and "  register: Skipped" in res.output
    assert "train(0)" not in res.output and "train(1)" not in res.output


def test_one_spelling_of_each_option_everywhere() -> None:
    """`-p` is `--parameter` in every command, `-n` is `--namespace`, `-f` is `--parameter-file`."""
    root = get_command(app)

    def commands(cmd: click.Command, path: str = "") -> Iterator[tuple[str, click.Command]]:
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from commands(sub, f"{path} {name}".strip())

    spellings: dict[str, set[str]] = {}
    for path, cmd in commands(root):
        for p in cmd.params:
            for short in [o for o in p.opts if not o.startswith("--")]:
                spellings.setdefault(short, set()).update(o for o in p.opts if o.startswith("--"))
            assert "--param" not in p.opts and "--from-template" not in p.opts, path
    assert spellings["-p"] == {"--parameter"} and spellings["-n"] == {"--namespace"}
    assert spellings["-f"] == {"--parameter-file"}


def test_version() -> None:
    from importlib.metadata import version

    res = invoke("--version")
    assert res.exit_code == 0 and res.output.strip() == f"osft-pipeline {version('osft-pipeline')}"


def test_run_needs_no_local_flag(tmp_path: Path) -> None:
    """`run` is this machine's run: no `--local` needed (bad input here, so it stops before running anything)."""
    res = invoke("run", "-p", "phase_02_train_man_train_epochs=0", "--workspace", str(tmp_path / "ws"))
    assert res.exit_code == 2
    assert "only --local is supported" not in res.output
    assert _errors(res.output) == [
        f"error: {DATA} is required: pass -p {DATA}=<value> ([REQUIRED] Dataset location (hf://dataset, "
        "s3://bucket/path, https://url, pvc://path))",
        "error: phase_02_train_man_train_epochs: epochs=0: must be an integer >= 1 (train step)"]


# ------------------------------------------------------------------------------------------- connections


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_failures_name_their_cause(stub: ArgoStub) -> None:
    port = _closed_port()
    cases = {
        f"http://127.0.0.1:{port}": f"connection refused by 127.0.0.1:{port}: nothing listens there",
        stub.url.replace("http://", "https://"): "does not speak TLS: use http://127.0.0.1:",
        "https://argo-server.invalid:2746": "cannot resolve host 'argo-server.invalid' (DNS)",
    }
    for host, cause in cases.items():
        res = invoke("submit", "-p", f"{DATA}=hf://o/d", "--host", host, "--token", "t", "-n", "ml")
        assert res.exit_code == 2
        assert len(_errors(res.output)) == 1 and cause in res.output, res.output


def test_an_untrusted_certificate_says_tls_and_how_to_skip(tmp_path: Path) -> None:
    import ssl
    import threading
    from http.server import HTTPServer

    from tests.json_http import JsonHandler
    from tests.tls_certs import self_signed

    cert, key = self_signed(tmp_path, ip="127.0.0.1")
    server = HTTPServer(("127.0.0.1", 0), JsonHandler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        res = invoke("submit", "-p", f"{DATA}=hf://o/d", "--host", f"https://127.0.0.1:{server.server_address[1]}",
                     "--token", "t", "-n", "ml")
    finally:
        server.shutdown()
    assert res.exit_code == 2 and "TLS: the certificate of 127.0.0.1:" in res.output
    assert "--insecure-skip-verify / -k" in res.output


# ------------------------------------------------------------------------------------------ compile, lint


def test_compile_writes_a_new_folder_and_never_the_goldens_unless_forced(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    before = {p.name: p.read_bytes() for p in comp.TEMPLATES_DIR.iterdir()}
    res = invoke("compile", "--out", str(comp.TEMPLATES_DIR), "--image", "reg.example/osft:9")
    assert res.exit_code == 2 and "pass --force to regenerate them" in res.output
    monkeypatch.chdir(tmp_path)
    res = invoke("compile", "--image", "reg.example/osft:9", "-n", "team-b")
    assert res.exit_code == 0, res.output
    assert {p.name for p in (tmp_path / "manifests").iterdir()} == set(comp.FILES)  # the default: a new folder
    assert "reg.example/osft:9" in (tmp_path / "manifests" / "osft-minimal-pipeline.yaml").read_text()
    assert {p.name: p.read_bytes() for p in comp.TEMPLATES_DIR.iterdir()} == before
    (tmp_path / "notes.txt").write_text("mine")
    res = invoke("compile", "--out", str(tmp_path))
    assert res.exit_code == 2 and "holds other files (manifests, notes.txt)" in res.output
    assert invoke("compile", "-n", "Bad_NS").exit_code == 2


def test_lint_takes_files_and_folders_and_fails_in_one_line(tmp_path: Path) -> None:
    res = invoke("lint", "/no/such/dir")
    assert res.exit_code == 2 and res.output == "error: /no/such/dir: no such file or directory\n"
    res = invoke("lint", str(comp.TEMPLATES_DIR / "osft-minimal-pipeline.yaml"))
    assert res.exit_code == 0 and "pods and resources (podSpecPatch x parameter sets): ok" in res.output
    bad = tmp_path / "cron.yaml"
    cron = yaml.safe_load((comp.TEMPLATES_DIR / "osft-minimal-pipeline-retrain.yaml").read_text())
    cron["spec"]["schedules"] = ["0 25 * * *"]
    bad.write_text(yaml.safe_dump(cron))
    res = invoke("lint", str(bad))
    assert res.exit_code == 1 and "hour: end of range (25)" in res.output
    assert res.output.splitlines()[-1].startswith("error: 1 problem(s) in")
    (tmp_path / "notyaml.yaml").write_text("a: [\n")
    res = invoke("lint", str(tmp_path / "notyaml.yaml"))
    assert res.exit_code == 2 and len(res.output.splitlines()) == 1 and "not valid YAML (line 2)" in res.output
