"""The docs lead: README is short and starts with the two commands and the cluster path, the rest is in docs/, and
every command, option, parameter name, make target and path they show is real (tests/docs_check.py)."""

import re
from pathlib import Path

import pytest

from tests import docs_check

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_command_parameter_target_and_path_in_the_docs_is_real() -> None:
    assert docs_check.check_all() == []


@pytest.mark.parametrize(("doc", "problem"), [
    ("```bash\nosft-pipeline submit --from-template -p phase_01_dataset_man_data_uri=x\n```",
     "`osft-pipeline submit`: no option --from-template"),
    ("```bash\nosft-pipeline run --param phase_01_dataset_man_data_uri=x\n```",
     "`osft-pipeline run`: no option --param"),
    ("```bash\nosft-pipeline sumbit -p a=b\n```", "`osft-pipeline sumbit`: no such command"),
    ("```bash\nargo submit --from workflowtemplate/x -p phase_02_train_opt_memroy=4Gi\n```",
     "-p phase_02_train_opt_memroy: no such parameter"),
    ("Set `phase_02_train_opt_gpus` to 0.", "phase_02_train_opt_gpus: no such parameter"),
    ("```bash\nmake e2e-k3d\n```", "make e2e-k3d: no such target"),
    ("see `.ci/e2e-k3d.sh`", ".ci/e2e-k3d.sh: no such file"),
    ("See [the page](docs/nosuch.md).", "docs/nosuch.md: no such file"),
    ("See [install](docs/cluster.md#no-such-heading).", "no heading #no-such-heading in docs/cluster.md"),
    ("```bash\nosft-pipeline submit -f examples/desktop-params.yaml\n```",
     "examples/desktop-params.yaml: no such file"),
    ("```bash\nosft-pipeline step train --use-liger/--no-liger\n```", "no option --no-liger"),
    ("```bash\nosft-pipeline run -p phase_02_train_opt_lr_warmup=10\n```",
     "-p phase_02_train_opt_lr_warmup: not a parameter of osft-minimal-pipeline"),
    ("```bash\nargo submit --from workflowtemplate/osft-minimal-pipeline -p phase_02_train_opt_unmask=true\n```",
     "-p phase_02_train_opt_unmask: not a parameter of osft-minimal-pipeline"),
])
def test_the_check_catches(doc: str, problem: str) -> None:
    problems = docs_check.check_text(doc, "README.md", ROOT)
    assert any(problem in p for p in problems), problems


def test_readme_leads_with_the_three_commands_and_the_cluster_path() -> None:
    lines = README.splitlines()
    assert len(lines) <= 70  # it was a 580-line file; the rest lives in docs/
    first_block = next(docs_check.code_blocks(README))[1].splitlines()
    assert [ln.split()[:2] for ln in first_block] == [["make", "run"], ["make", "test"], ["make", "loop"]]
    headings = [ln for ln in lines if ln.startswith("## ")]
    assert headings[0] == "## On your cluster"  # the cluster path comes before anything else
    quick = README.split("## On your cluster", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    assert len(quick.splitlines()) <= 10
    steps = ["make image", "compile", "kubectl apply -k", "create secret", "doctor", "submit", "report --from-argo",
             "delete"]
    positions = [quick.find(s) for s in steps]
    assert -1 not in positions and positions == sorted(positions), positions  # image → … → clean up


def test_each_topic_has_its_page_and_the_readme_links_them() -> None:
    pages = {"cluster", "parameters", "templates", "steps", "step-dataset", "step-train", "step-evaluate",
             "step-register", "local-runs", "kfp", "troubleshooting", "design"}
    assert {p.stem for p in (ROOT / "docs").glob("*.md")} >= pages
    linked = set(re.findall(r"\(docs/([\w-]+)\.md", README))
    assert linked >= pages
    cluster = (ROOT / "docs" / "cluster.md").read_text(encoding="utf-8")
    for heading in ("## Prerequisites", "## The image", "## Install", "### OpenShift", "## Secrets", "## Submit a run",
                    "## See the results", "## Where the model is", "## Clean up"):
        assert heading in cluster


def test_build_push_and_image_setting_are_in_one_place() -> None:
    """The image section shows the build, the push and how to point the templates at the image, together (the
    build commands used to live only in Containerfile comments)."""
    cluster = (ROOT / "docs" / "cluster.md").read_text(encoding="utf-8")
    section = cluster.split("## The image", 1)[1].split("\n## ", 1)[0]
    for needle in ("make image IMAGE=", "GPU=no", "podman push", "--image", "kustomize edit set image"):
        assert needle in section, needle
