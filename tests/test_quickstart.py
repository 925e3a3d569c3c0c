"""Walk README's cluster quickstart, command by command: what runs offline is run (compile, lint of its output,
kustomize, the secret as kubectl would make it, make's recipe); what needs a cluster runs against stand-ins that
check the real APIs' shapes (doctor against the Kubernetes API stub, report against the Argo Server stub) or
with --dry-run (submit). A command this walk does not know fails it, so the README cannot drift."""

import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests import docs_check
from tests.argo_stub import ArgoStub
from tests.k8s_stub import KubeStub
from workflows.cli import app

ROOT = Path(__file__).resolve().parents[1]


def quickstart() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## On your cluster", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line) for line in docs_check.command_lines(block)]


@pytest.fixture()
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[KubeStub, ArgoStub]]:
    kube, argo = KubeStub(), ArgoStub()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig(tmp_path / "kubeconfig")))
    monkeypatch.setenv("ARGO_SERVER", argo.url)
    monkeypatch.setenv("ARGO_TOKEN", argo.token)
    monkeypatch.delenv("ARGO_NAMESPACE", raising=False)
    monkeypatch.setattr("workflows.registry_check.check_image", lambda ref, timeout=10.0: ("ok", ref))
    yield kube, argo
    kube.close()
    argo.close()
    assert kube.invalid == [] and argo.invalid == []


def _cli(args: list[str]) -> str:
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, (args, res.output)
    return res.output


def test_the_readme_quickstart_walks(cluster: tuple[KubeStub, ArgoStub], tmp_path: Path) -> None:
    from tests.workflows.local.test_argo_report import NAME, workflow

    kube, argo = cluster
    kubectl = shutil.which("kubectl")
    walked = []
    for cmd in quickstart():
        head = cmd[:2]
        if cmd[0] == "make":  # make's recipe, not run: a container engine is not needed to check it
            out = subprocess.run(["make", "-n", "-C", str(ROOT), *cmd[1:]], capture_output=True, text=True)
            assert out.returncode == 0 and "Containerfile" in out.stdout, out.stderr
        elif cmd[0] in ("podman", "docker"):
            assert cmd[1] == "push" and cmd[2] == cmd_image(quickstart())
        elif head == ["osft-pipeline", "compile"]:
            _cli(cmd[1:])
            out_dir = Path(cmd[cmd.index("--out") + 1])
            assert _cli(["lint", str(out_dir)]).count(": ok") >= 10
            image = cmd[cmd.index("--image") + 1]
            assert image in (out_dir / "osft-minimal-pipeline.yaml").read_text()
        elif head == ["kubectl", "create"] and cmd[2] == "namespace":
            kube.namespaces.add(cmd[3])
        elif head == ["kubectl", "apply"] or head == ["kubectl", "delete"]:
            folder = cmd[cmd.index("-k") + 1]
            if kubectl:
                out = subprocess.run([kubectl, "kustomize", folder], capture_output=True, text=True, timeout=120)
                assert out.returncode == 0 and "kind: WorkflowTemplate" in out.stdout, out.stderr
            if head[1] == "apply":  # what the apply leaves in the cluster
                ns = Path(folder, "kustomization.yaml").read_text().split("namespace: ")[1].split()[0]
                kube.install_pipeline(ns=ns)
        elif head == ["kubectl", "create"] and cmd[2] == "secret":
            if kubectl:
                out = subprocess.run([kubectl, *cmd[1:], "--dry-run=client", "-o", "yaml"], capture_output=True,
                                     text=True, timeout=60)
                assert out.returncode == 0 and "kind: Secret" in out.stdout, out.stderr
        elif head == ["osft-pipeline", "doctor"]:
            out = _cli(cmd[1:])
            assert "error:" not in out and "ok: storage class 'nfs-csi'" in out
        elif head == ["osft-pipeline", "submit"]:
            args = [a for a in cmd[1:] if a not in ("--watch", "--wait", "-w")] + ["--dry-run", "-o", "json"]
            out = _cli(args)
            assert '"resourceName": "osft-minimal-pipeline"' in out and argo.requests == []  # nothing sent
        elif head == ["osft-pipeline", "report"]:
            argo.workflows[("ml", NAME)] = workflow()
            argo.polls_to_finish = 0
            name = cmd[cmd.index("--from-argo") + 1]
            assert name == NAME
            _cli(cmd[1:])
            first = (tmp_path / f"{NAME}-report" / "report.md").read_text().splitlines()[2]
            assert first.startswith("**PASSED the eval gate")
        elif head == ["argo", "delete"]:
            assert "-n" in cmd  # a cluster-only command with its namespace
        else:
            pytest.fail(f"the quickstart walk does not know `{shlex.join(cmd)}`: teach it, or fix the README")
        walked.append(shlex.join(cmd[:2]))
    assert len(walked) >= 9


def cmd_image(cmds: list[list[str]]) -> str:
    make = next(c for c in cmds if c[0] == "make")
    return next(a.split("=", 1)[1] for a in make if a.startswith("IMAGE="))


def test_make_image_without_a_container_engine_says_what_to_install(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "bash", "make", "basename"):  # a PATH with make and a shell, no podman/docker/buildah
        if found := shutil.which(tool):
            (bin_dir / tool).symlink_to(found)
    out = subprocess.run(["make", "-s", "-C", str(ROOT), "image"], capture_output=True, text=True,
                         env={"PATH": str(bin_dir), "HOME": str(tmp_path)}, timeout=60)
    assert out.returncode != 0 and out.stdout == ""
    assert out.stderr.splitlines()[0] == ("error: no container engine found: install podman (apt-get install podman, "
                                          "dnf install podman, brew install podman), docker or buildah, then run "
                                          "make image again")


def test_make_image_builds_with_the_engine_found_and_the_cpu_build_args(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "bash", "make", "basename"):
        if found := shutil.which(tool):
            (bin_dir / tool).symlink_to(found)
    log = tmp_path / "calls"
    (bin_dir / "podman").write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    (bin_dir / "podman").chmod(0o755)
    out = subprocess.run(["make", "-s", "-C", str(ROOT), "image", "IMAGE=reg.example/t/osft:1", "GPU=no"],
                         capture_output=True, text=True, env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
                         timeout=60)
    assert out.returncode == 0, out.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "info"  # the engine works
    assert calls[1] == ("build -t reg.example/t/osft:1 -f Containerfile --build-arg GPU=no --build-arg "
                        "BASE_IMAGE=docker.io/library/python:3.11-slim --build-arg "
                        "BUILD_IMAGE=docker.io/library/python:3.11-slim .")
    assert "push it (podman push reg.example/t/osft:1)" in out.stdout
