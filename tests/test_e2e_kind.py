"""`make e2e-kind` and its CI workflow, checked where no cluster can run: the tool checks (one line per missing
tool, exit 2), shellcheck on the script, actionlint and GitHub's workflow schema on the workflow, the pins
(the same kind in both, Argo one of the vendored CRD versions, images by digest), the on_cluster test's
variables set by the script, and the on_cluster test collected and skipped without a cluster."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "e2e-kind.sh"
WORKFLOW = ROOT / ".github" / "workflows" / "e2e-kind.yml"
CLUSTER_TEST = ROOT / "tests" / "workflows" / "argo" / "test_cluster_e2e.py"
BIN = Path(sys.executable).parent
TEXT = SCRIPT.read_text(encoding="utf-8")
BASICS = ("bash", "dirname", "awk", "make", "env")  # what the script and make need before the tool checks


def _pin(name: str, text: str = TEXT) -> str:
    found = re.search(rf'^{name}="([^"]+)"', text, re.M)
    assert found, f"{name} is not pinned in {SCRIPT.name}"
    return found.group(1)


def _fake(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/bash\n{body}\n", encoding="utf-8")
    path.chmod(0o755)


def _path_with(tmp_path: Path, tools: dict[str, str]) -> str:
    """A PATH holding only the basics (linked from this machine) and the given fake tools."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in BASICS:
        real = shutil.which(name)
        assert real, f"{name} is needed to run the script"
        if not (bin_dir / name).exists():
            (bin_dir / name).symlink_to(real)
    for name, body in tools.items():
        _fake(bin_dir, name, body)
    return str(bin_dir)


WORKING = {
    "docker": 'exit 0',  # `docker info` succeeds: a running daemon
    "kind": 'echo "kind v0.31.0 go1.25 linux/amd64"',
    "kubectl": 'exit 0',
    "python3": 'exit 0',
}


def _run(path: str, *args: str, via_make: bool = False) -> subprocess.CompletedProcess[str]:
    cmd = [shutil.which("make") or "make", "-s", "e2e-kind", *(["ARGS=" + " ".join(args)] if args else [])] \
        if via_make else [shutil.which("bash") or "bash", str(SCRIPT), *args]
    env = {"PATH": path, "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("missing, says", [
    ("docker", "error: no container engine: install docker"),
    ("kind", "error: kind not found: install kind v0.31.0"),
    ("kubectl", "error: kubectl not found: install kubectl"),
    ("python3", "error: python3 not found: install Python 3.11 or 3.12"),
])
def test_each_missing_tool_is_one_line_and_exit_2(tmp_path: Path, missing: str, says: str) -> None:
    tools = {k: v for k, v in WORKING.items() if k != missing}
    proc = _run(_path_with(tmp_path, tools), via_make=True)
    assert proc.returncode != 0 and proc.stdout == ""
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(says), proc.stderr
    assert "setup" not in proc.stderr  # nothing ran after the checks


def test_a_daemon_that_is_not_running_is_named(tmp_path: Path) -> None:
    proc = _run(_path_with(tmp_path, {**WORKING, "docker": 'echo "Cannot connect to the Docker daemon" >&2; exit 1'}))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: docker is installed but its daemon is not running: start it (sudo systemctl start docker; podman: "
        "podman machine start, or systemctl --user start podman.socket) and run make e2e-kind again"]


def test_podman_is_used_when_dockers_daemon_is_down(tmp_path: Path) -> None:
    path = _path_with(tmp_path, {**WORKING, "docker": "exit 1", "podman": "exit 0"})
    proc = _run(path, "--check")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok: podman (running), kind v0.31.0")


def test_everything_missing_is_one_line_each(tmp_path: Path) -> None:
    proc = _run(_path_with(tmp_path, {}))
    assert proc.returncode == 2
    assert [ln.split(":")[1].strip() for ln in proc.stderr.splitlines()] == [
        "no container engine", "kind not found", "kubectl not found", "python3 not found"]


def test_another_kind_is_a_warning_not_an_error(tmp_path: Path) -> None:
    proc = _run(_path_with(tmp_path, {**WORKING, "kind": 'echo "kind v0.29.0 go1.24 linux/amd64"'}), "--check")
    assert proc.returncode == 0
    assert proc.stderr.startswith("warning: kind v0.29.0 found; the pinned node image is made for kind v0.31.0")


def test_this_machine_says_what_is_missing() -> None:
    """The real PATH, checks only: whatever this machine lacks is named, one line each (nothing is started)."""
    proc = subprocess.run(["bash", str(SCRIPT), "--check"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    lacks = [t for t in ("kind", "kubectl", "python3") if not shutil.which(t)]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    for tool in lacks:
        assert any(f"{tool} not found" in ln for ln in errors), proc.stderr
    if errors:
        assert proc.returncode == 2 and len(errors) <= 4
    else:
        assert proc.returncode == 0 and proc.stdout.startswith("ok: ")


def test_the_script_passes_shellcheck() -> None:
    proc = subprocess.run([str(BIN / "shellcheck"), "--severity=style", str(SCRIPT), str(ROOT / ".ci" / "run")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_shellcheck_would_catch_a_defect(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sh"
    bad.write_text(TEXT.replace('kind load docker-image "$IMAGE"', "kind load docker-image $IMAGE"), encoding="utf-8")
    proc = subprocess.run([str(BIN / "shellcheck"), str(bad)], capture_output=True, text=True)
    assert proc.returncode == 1 and "SC2086" in proc.stdout


def test_the_workflow_passes_actionlint_with_shellcheck() -> None:
    proc = subprocess.run([str(BIN / "actionlint"), "-shellcheck", str(BIN / "shellcheck"), "-pyflakes", "",
                           str(WORKFLOW)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_would_catch_a_defect(tmp_path: Path) -> None:
    bad = tmp_path / ".github" / "workflows" / "e2e-kind.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(WORKFLOW.read_text().replace("if: always()", "if: always() && steps.e2e.outputs.ok")
                   .replace('echo "$bin" >> "$GITHUB_PATH"', 'echo $bin >> $GITHUB_PATH'), encoding="utf-8")
    proc = subprocess.run([str(BIN / "actionlint"), "-shellcheck", str(BIN / "shellcheck"), "-pyflakes", "",
                           str(bad)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 1
    assert 'property "e2e" is not defined' in proc.stdout and "SC2086" in proc.stdout


def test_the_workflow_matches_githubs_schema(tmp_path: Path) -> None:
    check = [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows"]
    proc = subprocess.run([*check, str(WORKFLOW)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bad = tmp_path / "e2e-kind.yml"
    bad.write_text(WORKFLOW.read_text().replace("runs-on: ubuntu-latest", "runs_on: ubuntu-latest"))
    proc = subprocess.run([*check, str(bad)], capture_output=True, text=True)
    assert proc.returncode == 1 and "runs_on" in proc.stdout + proc.stderr


def test_the_workflow_runs_make_e2e_kind_with_pinned_tools_and_actions() -> None:
    doc = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    job = doc["jobs"]["e2e-kind"]
    assert job["runs-on"] == "ubuntu-latest"
    steps = job["steps"]
    assert any(s.get("run") == "make e2e-kind" for s in steps)
    for s in steps:  # every action by commit, the tag in a comment
        if "uses" in s:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", s["uses"]), s["uses"]
    env = job["env"]
    assert env["KIND_VERSION"] == _pin("KIND_VERSION")  # the kind the node image is made for
    assert re.fullmatch(r"[0-9a-f]{64}", env["KIND_SHA256"]) and re.fullmatch(r"[0-9a-f]{64}", env["KUBECTL_SHA256"])
    install = next(s["run"] for s in steps if "kind-linux-amd64" in s.get("run", ""))
    assert install.count("sha256sum --check") == 2
    # kubectl within one minor version of the node's Kubernetes
    node_minor = int(re.search(r"kindest/node:v1\.(\d+)\.", _pin("KIND_NODE_IMAGE")).group(1))
    assert abs(int(env["KUBECTL_VERSION"].split(".")[1]) - node_minor) <= 1


def test_the_script_pins_what_it_installs() -> None:
    assert re.fullmatch(r"kindest/node:v1\.\d+\.\d+@sha256:[0-9a-f]{64}", _pin("KIND_NODE_IMAGE"))
    assert re.fullmatch(r"quay\.io/minio/minio:RELEASE\.[0-9TZ-]+@sha256:[0-9a-f]{64}", _pin("MINIO_IMAGE"))
    argo = _pin("ARGO_VERSION")
    crds = ROOT / "workflows" / "argo" / "schemas" / "crds"
    vendored = {p.name.split("-")[1] for p in crds.glob("argo-v*-workflowtemplates.yaml.gz")}
    assert argo in vendored, (argo, vendored)  # the templates are checked against this version's full CRDs
    assert _pin("ARGO_INSTALL_URL") == \
        "https://github.com/argoproj/argo-workflows/releases/download/${ARGO_VERSION}/install.yaml"
    assert "kubectl apply --server-side" in TEXT  # v4's full CRDs exceed client-side apply's annotation limit
    assert 'make image IMAGE="$IMAGE" GPU=no ENGINE="$ENGINE"' in TEXT  # the CPU build of the one Containerfile


def test_the_script_sets_what_the_cluster_test_reads() -> None:
    reads = set(re.findall(r'os\.environ(?:\.get)?[\[(]"((?:OSFT_E2E|ARGO)_\w+)"', CLUSTER_TEST.read_text()))
    given = set(re.findall(r"\b((?:OSFT_E2E|ARGO)_\w+)=", TEXT))
    optional = {"OSFT_E2E_DATA", "OSFT_E2E_STORAGE_URI", "OSFT_E2E_BUCKET"}  # for a cluster without MinIO
    assert reads - optional <= given, reads - optional - given
    assert "-m on_cluster tests/workflows/argo/test_cluster_e2e.py" in TEXT


def test_the_cluster_test_is_collected_and_skipped_without_a_cluster() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARGO_", "OSFT_E2E_"))}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "on_cluster", str(CLUSTER_TEST), "-rs", "-q",
                           "-p", "no:cacheprovider"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "1 skipped" in proc.stdout and "no cluster: set ARGO_SERVER" in proc.stdout
    plain = subprocess.run([sys.executable, "-m", "pytest", str(CLUSTER_TEST), "-q", "-p", "no:cacheprovider"],
                           capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert "1 deselected" in plain.stdout  # the default run (addopts) leaves it out


def _fake_tools(tmp_path: Path, **env: str) -> tuple[dict[str, str], Path]:
    """PATH with docker, kind and kubectl stand-ins first (tests/e2e_kind_fakes.py), and the env they read."""
    from tests.tls_certs import self_signed

    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    for tool in ("docker", "kind", "kubectl"):
        (bin_dir / tool).write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(ROOT)!r})\n"
                                    f"from tests.e2e_kind_fakes import main\nsys.exit(main({tool!r}))\n",
                                    encoding="utf-8")
        (bin_dir / tool).chmod(0o755)
    cert, key = self_signed(tmp_path, ip="127.0.0.1", common_name="argo-server")
    log = tmp_path / "calls.jsonl"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ARGO_", "OSFT_E2E_", "AWS_", "KUBECONFIG"))}
    return {**base, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(log), "FAKE_TLS_CERT": cert,
            "FAKE_TLS_KEY": key, "E2E_WORK": str(tmp_path / "work"), **env}, log


def _calls(log: Path) -> list[tuple[str, list[str], str]]:
    return [(c["tool"], c["args"], c["stdin"]) for c in map(json.loads, log.read_text().splitlines())]


def test_a_failed_install_is_diagnosed_and_the_cluster_deleted(tmp_path: Path) -> None:
    env, log = _fake_tools(tmp_path, FAKE_FAIL="kubectl -n argo rollout status deployment/workflow-controller",
                           FAKE_TOKEN="t", FAKE_ARGO_PORT="1", FAKE_S3_PORT="1")
    proc = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode != 0
    calls = _calls(log)
    assert ("kind", ["create", "cluster", "--name", "osft-e2e", "--image", _pin("KIND_NODE_IMAGE"), "--kubeconfig",
                     str(tmp_path / "work" / "kubeconfig"), "--wait", "180s"], "") in calls
    assert "diagnosis: pods, volumes and recent events in osft-e2e" in proc.stdout
    assert calls[-1][:2] == ("kind", ["delete", "cluster", "--name", "osft-e2e", "--kubeconfig",
                                      str(tmp_path / "work" / "kubeconfig")])
    assert not any(c[0] == "docker" and c[1][:1] == ["build"] for c in calls)  # stopped at the failure
    keep = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, capture_output=True, text=True,
                          env={**env, "KEEP": "1"}, timeout=600)
    assert keep.returncode != 0 and "KEEP=1: cluster osft-e2e kept" in keep.stdout
    assert _calls(log)[-1][1][:2] != ["delete", "cluster"]


@pytest.mark.slow
def test_the_script_runs_end_to_end_against_stand_ins(tmp_path: Path, tiny_model: Path) -> None:
    """`.ci/e2e-kind.sh` from start to end: docker, kind and kubectl are stand-ins (tests/e2e_kind_fakes.py),
    `kubectl port-forward` reaches an Argo Server stand-in that runs what is submitted with the local engine
    (tests/local_argo.py) and moto as MinIO; make, compile, the on_cluster test and the checks are real. The calls
    are the ones a real cluster would get, in order; the on_cluster test's own code (upload, submit, wait, read the
    Workflow, the report, the checks) works end to end on exactly the shared parameter set; the script tears
    everything down. Only the Hub model is replaced by a tiny one on disk."""
    from tests.e2e_checks import MODEL, e2e_parameters
    from tests.local_argo import LocalArgo
    from tests.moto_s3 import moto_server
    from workflows.argo.submit import checked_overrides

    keys = {"AWS_ACCESS_KEY_ID": "rehearsal-access-0002", "AWS_SECRET_ACCESS_KEY": "rehearsal-secret-0002"}
    with moto_server(reset=True) as endpoint:
        argo = LocalArgo(tmp_path / "runs", substitute={MODEL: str(tiny_model)},
                         env={**keys, "AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": "us-east-1"})
        env, log = _fake_tools(tmp_path, FAKE_TOKEN=argo.token, FAKE_ARGO_PORT=argo.url.rsplit(":", 1)[1],
                               FAKE_S3_PORT=endpoint.rsplit(":", 1)[1], E2E_TIMEOUT="1200")
        try:
            proc = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, env=env,
                                  timeout=1500)
        finally:
            argo.close()
    (tmp_path / "stdout.txt").write_text(proc.stdout)  # what a user sees, kept for a look
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    assert not argo.invalid
    # exactly the shared parameter set went to the Argo Server (as submit writes values: 1e-4 -> 0.0001): the
    # laptop file, the data, the storage URI (a prefix of its own per run)
    (submitted,) = [r["params"] for r in argo.runs.values()]
    storage = submitted.get("phase_04_registry_opt_storage_uri", "")
    assert re.fullmatch(r"s3://osft-e2e/models/run-[0-9a-f]{8}", storage), storage
    assert submitted == checked_overrides(e2e_parameters("s3://osft-e2e/data/chat.jsonl", storage))
    out = tmp_path / "work" / "out"
    tasks = (out / "tasks.txt").read_text()
    for task in ("workspace-pvc", "dataset", "train", "evaluate", "publish", "record-status"):
        assert any(ln.split()[:2] == [task, "Succeeded"] for ln in tasks.splitlines()), tasks
    numbers = json.loads((out / "numbers.json").read_text())
    assert numbers["published"] == f"{storage}/osft-model/1.0.0"
    assert "model.safetensors" in numbers["published_files"]
    first = (out / "report" / "report.md").read_text().splitlines()[2]
    assert first.startswith(("**PASSED", "**GATE FAILED")) and f"model: `{numbers['published']}`" in first
    calls = _calls(log)
    line = [" ".join([tool, *args]) for tool, args, _ in calls]

    def at(prefix: str) -> int:
        return next(i for i, c in enumerate(line) if c.startswith(prefix))

    order = [at("docker info"), at("kind create cluster"),
             at(f"kubectl apply --server-side --force-conflicts -n argo -f {_pin('ARGO_INSTALL_URL')}"
                .replace("${ARGO_VERSION}", _pin("ARGO_VERSION"))),
             at("docker build -t localhost/osft-pipeline:e2e-cpu -f Containerfile --build-arg GPU=no "
                "--build-arg BASE_IMAGE=docker.io/library/python:3.11-slim"),
             at("kind load docker-image localhost/osft-pipeline:e2e-cpu --name osft-e2e"),
             at("kubectl apply -k "), at("kubectl -n osft-e2e create secret generic s3-secret"),
             at("kubectl -n osft-e2e apply -f -"), at("kubectl -n argo port-forward svc/argo-server"),
             at("kind delete cluster --name osft-e2e")]
    assert order == sorted(order), line
    secret = line[at("kubectl -n osft-e2e create secret generic s3-secret")]
    assert "--from-literal=AWS_ENDPOINT_URL=http://minio.osft-e2e.svc.cluster.local:9000" in secret
    minio = next(stdin for tool, args, stdin in calls if args[:4] == ["-n", "osft-e2e", "apply", "-f"])
    assert f"image: {_pin('MINIO_IMAGE')}" in minio
    install = Path(line[at("kubectl apply -k ")].split()[-1])
    kustomization = yaml.safe_load((install / "kustomization.yaml").read_text())
    assert kustomization["namespace"] == "osft-e2e"
    assert kustomization["images"] == [{"name": "localhost/osft-pipeline", "newName": "localhost/osft-pipeline",
                                        "newTag": "e2e-cpu"}]
    # what it printed: each task's phase and the report, then the teardown
    assert "== tasks of workflow osft-minimal-pipeline-00000" in proc.stdout
    assert re.search(r"^  publish +Succeeded", proc.stdout, re.M) and "**PASSED the eval gate" in proc.stdout or \
        "**GATE FAILED" in proc.stdout
    assert "e2e-kind passed" in proc.stdout and "deleting kind cluster osft-e2e" in proc.stdout
    assert "no Model Registry: no public image of it is pinned here, so register is skipped" in proc.stdout
    forwards = [ln for ln in line if " port-forward " in ln]
    assert len(forwards) == 2  # neither dropped; both stopped by the script (nothing listens any more)
    for fwd in forwards:
        port = int(fwd.split()[-1].split(":")[0])
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
