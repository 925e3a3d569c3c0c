"""One scrubber for every message and record: URI credentials never reach an error, a log line or a record."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from steps.common import secrets
from steps.common.errors import StepError
from steps.common.secrets import scrub
from steps.common.workspace import Workspace
from steps.dataset import prepare_dataset
from workflows import params
from workflows.argo.preflight import PreflightInputs

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "hunter2Pa55word"  # noqa: S105 - planted, asserted never to appear


def test_scrub_masks_credentials_inside_free_text() -> None:
    text = (f"bad https://bob:{PASSWORD}@/x.jsonl and oci://bob:{PASSWORD}@quay.io/o/m:1, "
            f"'file://bob:{PASSWORD}@host/x' then https://h/x?sig={PASSWORD}&a=1 but not org/name:cfg")
    out = scrub(text)
    assert PASSWORD not in out
    assert "https://***@/x.jsonl" in out and "oci://***@quay.io/o/m:1" in out and "sig=***&a=1" in out
    assert out.endswith("but not org/name:cfg")
    assert scrub("hf://org/name and s3://bucket/key@v2 and a=b") == "hf://org/name and s3://bucket/key@v2 and a=b"


def test_every_step_error_is_scrubbed() -> None:
    assert str(StepError(f"file://bob:{PASSWORD}@host/x: file:// URIs need an absolute path")) == \
        "file://***@host/x: file:// URIs need an absolute path"


def test_a_registered_parameter_secret_is_masked_from_then_on(workspace: Path) -> None:
    secrets.add_secret("param-secret-5150")
    try:
        Workspace.at(str(workspace)).log("x", "token param-secret-5150 used")
        assert "param-secret-5150" not in (workspace / "pipeline_log.txt").read_text()
        assert "param-secret-5150" not in str(StepError("echo param-secret-5150"))
    finally:
        secrets._REGISTERED.discard("param-secret-5150")


@pytest.mark.parametrize("uri", [f"https://bob:{PASSWORD}@/x.jsonl", f"file://bob:{PASSWORD}@host/x.jsonl"])
def test_malformed_data_uri_with_credentials(uri: str, workspace: Path, capfd: pytest.CaptureFixture) -> None:
    with pytest.raises(params.ParamError) as by_params:
        params.validate({"phase_01_dataset_man_data_uri": uri})
    with pytest.raises(StepError) as by_step:
        prepare_dataset(uri, str(workspace))
    log = (workspace / "pipeline_log.txt").read_text()
    for text in (str(by_params.value), str(by_step.value), log, capfd.readouterr().err):
        assert PASSWORD not in text and "bob:" not in text
    assert "***@" in str(by_params.value) and "error:" in log


def test_preflight_task_never_echoes_credentials(workspace: Path, tmp_path: Path) -> None:
    """The pod's own command (Hera's runner) with a malformed URI: stderr and pipeline_log.txt stay clean."""
    raw = {k: f.default for k, f in PreflightInputs.model_fields.items()}
    raw |= {"phase_01_dataset_man_data_uri": f"https://bob:{PASSWORD}@/x.jsonl", "workspace": str(workspace)}
    src = tmp_path / "inputs.json"
    src.write_text(json.dumps([{"name": k, "value": v} for k, v in raw.items()]))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "hera__outputs_directory": str(tmp_path / "out")}
    res = subprocess.run([sys.executable, "-m", "hera.workflows.runner", "-e", "workflows.argo.preflight:preflight",
                          str(src)], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode != 0 and "URL has no host" in res.stderr
    log = (workspace / "pipeline_log.txt").read_text()
    assert "phase_01_dataset_man_data_uri" in log
    for text in (res.stderr, res.stdout, log):
        assert PASSWORD not in text
