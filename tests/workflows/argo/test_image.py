"""Defect 10, the image: a CUDA base with the pinned torch, flash-attn and liger-kernel from the lock, and one
setting (``compile --image`` or kustomize ``images:``) that reaches every step and the TrainJob."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from workflows.argo import compile as comp
from workflows.argo import goyaml
from workflows.image import DEFAULT_IMAGE

ROOT = Path(__file__).resolve().parents[3]
CONTAINERFILE = (ROOT / "Containerfile").read_text(encoding="utf-8")


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if "==" in line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def _args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S*)", CONTAINERFILE, re.M))


def test_containerfile_installs_the_pins_of_constraints_txt() -> None:
    pins, args = _pins(), _args()
    torch = pins["torch"]
    assert args["TORCH_VERSION"] == torch
    # the default base is the official PyTorch image of exactly the pinned torch, with CUDA (and its -devel twin)
    assert args["BASE_IMAGE"] == f"docker.io/pytorch/pytorch:{torch}-cuda12.6-cudnn9-runtime"
    assert args["BUILD_IMAGE"] == args["BASE_IMAGE"].replace("-runtime", "-devel")
    assert "python:3.11-slim" not in args["BASE_IMAGE"]
    # every package is installed under the lock; none carries a version of its own that could drift from it
    installs = re.findall(r"pip (?:install|wheel|download)[^\n&;]*", CONTAINERFILE)
    assert installs and all("==" not in i or "${TORCH_VERSION}" in i for i in installs), installs
    assert "pip install -c constraints.txt ." in CONTAINERFILE
    assert "pip install -c constraints.txt /tmp/wheels/*.whl liger-kernel" in CONTAINERFILE
    assert "-c /tmp/constraints.txt flash-attn" in CONTAINERFILE
    # the GPU-only packages mini-trainer's cuda extra needs are pinned in the lock
    assert pins["flash-attn"] and pins["liger-kernel"]
    # the build fails unless the base's torch is the pin, and unless flash-attn and liger-kernel import
    assert "constraints.txt pins ${TORCH_VERSION}" in CONTAINERFILE and "find_spec('flash_attn')" in CONTAINERFILE
    assert "USER 1001" in CONTAINERFILE  # the UID the templates' securityContext runs as


def test_compile_image_reaches_every_step_and_the_trainjob(tmp_path: Path) -> None:
    comp.write(tmp_path, image="registry.example/osft:9")
    wt = goyaml.load((tmp_path / "osft-minimal-pipeline.yaml").read_text())
    images = {t["script"]["image"] for t in wt["spec"]["templates"] if "script" in t}
    tasks = {t["name"]: t for t in next(t for t in wt["spec"]["templates"] if t["name"] == "pipeline")["dag"]["tasks"]}
    trainjob_args = {p["name"]: p["value"] for p in tasks["train-trainjob"]["arguments"]["parameters"]}
    trainjob_image = trainjob_args["image"]
    assert images == {"registry.example/osft:9"} and trainjob_image == "registry.example/osft:9"
    kust = goyaml.load((tmp_path / "kustomization.yaml").read_text())
    assert kust["images"] == [{"name": "registry.example/osft", "newName": "registry.example/osft", "newTag": "9"}]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with kustomize) is not installed")
def test_kustomize_images_override_reaches_every_step_and_the_trainjob(tmp_path: Path) -> None:
    base = tmp_path / "base"
    shutil.copytree(comp.TEMPLATES_DIR, base)
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    name = DEFAULT_IMAGE.rpartition(":")[0]
    (overlay / "kustomization.yaml").write_text(
        f"resources: [../base]\nimages:\n- name: {name}\n  newName: registry.example.com/team/osft\n  newTag: '2.0'\n")
    out = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    docs = goyaml.load_all(out.stdout)
    wt = next(d for d in docs if d["kind"] == "WorkflowTemplate")
    images = [t["script"]["image"] for t in wt["spec"]["templates"] if "script" in t]
    assert len(images) == 12 and set(images) == {"registry.example.com/team/osft:2.0"}
    tasks = next(t for t in wt["spec"]["templates"] if t["name"] == "pipeline")["dag"]["tasks"]
    args = {p["name"]: p["value"] for t in tasks if t["name"] == "train-trainjob" for p in t["arguments"]["parameters"]}
    assert args["image"] == "registry.example.com/team/osft:2.0"
    assert DEFAULT_IMAGE not in out.stdout
    assert args["workers"] == "{{workflow.parameters.phase_02_train_man_train_workers}}"  # other values untouched
