"""End to end on a real cluster: the installed WorkflowTemplate, submitted through the Argo Server with the same
parameter set the local e2e test runs (tests/e2e_checks.py), held to the same checks.

`make e2e-kind` stands the cluster up (kind, Argo Workflows, the CPU image, MinIO) and runs this test with:
ARGO_SERVER / ARGO_TOKEN / ARGO_NAMESPACE / ARGO_INSECURE_SKIP_VERIFY (the argo CLI's variables), and
OSFT_E2E_S3_ENDPOINT / OSFT_E2E_S3_ACCESS_KEY / OSFT_E2E_S3_SECRET_KEY (the in-cluster S3 server, reached from
here; the pods reach it through the s3-secret): the demo data is uploaded there and the model is published there.
On your own cluster without an S3 server, set OSFT_E2E_DATA to a data URI the pods can read instead (nothing is
published then). OSFT_E2E_OUT: a folder for the Workflow, its tasks and its report; OSFT_E2E_TIMEOUT: seconds.
Skipped unless ARGO_SERVER is set; deselected by default (`-m on_cluster` selects it). docs/e2e-kind.md
"""

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e_checks import check_run, cluster_view, e2e_parameters, s3_published
from workflows.argo.nodes import task_nodes

TIMEOUT_S = int(os.environ.get("OSFT_E2E_TIMEOUT", "3600"))
BUCKET = os.environ.get("OSFT_E2E_BUCKET", "osft-e2e")

pytestmark = [pytest.mark.on_cluster,
              pytest.mark.skipif(not os.environ.get("ARGO_SERVER"),
                                 reason="no cluster: set ARGO_SERVER (make e2e-kind does; docs/e2e-kind.md)")]


def _s3() -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=os.environ["OSFT_E2E_S3_ENDPOINT"], region_name="us-east-1",
                        aws_access_key_id=os.environ["OSFT_E2E_S3_ACCESS_KEY"],
                        aws_secret_access_key=os.environ["OSFT_E2E_S3_SECRET_KEY"],
                        config=Config(s3={"addressing_style": "path"}))


def _inputs(out: Path) -> tuple[str, str, Any]:
    """(data URI, storage URI, S3 client or None): the demo data uploaded to the in-cluster S3 server, or
    OSFT_E2E_DATA as given."""
    if os.environ.get("OSFT_E2E_DATA"):
        return os.environ["OSFT_E2E_DATA"], os.environ.get("OSFT_E2E_STORAGE_URI", ""), None
    if not os.environ.get("OSFT_E2E_S3_ENDPOINT"):
        pytest.fail("set OSFT_E2E_DATA (a data URI the cluster's pods can read) or OSFT_E2E_S3_ENDPOINT and its keys")
    from steps.dataset.demo_data import write_demo_dataset

    s3 = _s3()
    if BUCKET not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=BUCKET)
    data = write_demo_dataset(str(out / "chat.jsonl"))["path"]
    s3.upload_file(data, BUCKET, "data/chat.jsonl")
    # a prefix of its own per run: a published version is never overwritten, and a kept cluster (KEEP=1) keeps
    # the earlier runs' models
    return f"s3://{BUCKET}/data/chat.jsonl", f"s3://{BUCKET}/models/run-{uuid.uuid4().hex[:8]}", s3


def _record(out: Path, target: Any, name: str) -> dict[str, Any]:
    """Write the Workflow, its tasks (one line each) and its report into ``out``; return the Workflow."""
    from workflows.argo.submit import get_workflow
    from workflows.local.argo_run import report_from_argo

    wf = get_workflow(target, name)
    (out / "workflow-name").write_text(name + "\n", encoding="utf-8")
    (out / "workflow.json").write_text(json.dumps(wf, indent=1), encoding="utf-8")
    lines = [f"  {t['name']:<30} {t['phase']:<10} {t['attempts']} attempt(s)  {t['message'][:120]}".rstrip()
             for t in task_nodes((wf.get("status") or {}).get("nodes") or {})]
    (out / "tasks.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    report_from_argo(target, name, out / "report")
    return wf


@pytest.mark.timeout(TIMEOUT_S + 900)
def test_the_laptop_set_runs_end_to_end_on_a_cluster(tmp_path: Path) -> None:
    from workflows.argo.submit import ArgoTarget, submit_from_template, wait_for

    out = Path(os.environ.get("OSFT_E2E_OUT") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    data_uri, storage_uri, s3 = _inputs(out)
    params = e2e_parameters(data_uri, storage_uri)
    target = ArgoTarget.resolve()
    run = submit_from_template(target, params)  # the template `make e2e-kind` installed
    try:
        wait_for(target, run["name"], poll_seconds=15, timeout_seconds=TIMEOUT_S)
    finally:
        wf = _record(out, target, run["name"])
    numbers = check_run(cluster_view(wf), params, published=(lambda uri: s3_published(s3, uri)) if s3 else None)
    (out / "numbers.json").write_text(json.dumps(numbers, indent=1), encoding="utf-8")
