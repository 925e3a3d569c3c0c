"""End to end on a real cluster (kind/k3d + Argo + the CPU image): skipped unless ARGO_SERVER points at one.

Setup (see docs/cluster.md): `kubectl apply -k templates/ -n <ns>`, an RWX storage class,
the image loaded into the cluster, then ARGO_SERVER / ARGO_TOKEN / ARGO_NAMESPACE exported.
"""

import os

import pytest

from workflows.argo.submit import ArgoTarget, submit_from_template

pytestmark = pytest.mark.on_cluster


@pytest.mark.skipif(not os.environ.get("ARGO_SERVER"), reason="no Argo Server (set ARGO_SERVER)")
def test_pipeline_runs_on_a_cluster() -> None:
    target = ArgoTarget.resolve()
    run = submit_from_template(target, {
        "phase_01_dataset_man_data_uri": os.environ.get("OSFT_E2E_DATA", "hf://LipengCS/Table-GPT:All"),
        "phase_01_dataset_opt_subset": "64",
        "phase_02_train_man_train_model": os.environ.get("OSFT_E2E_MODEL", "HuggingFaceTB/SmolLM2-135M-Instruct"),
        "phase_02_train_man_train_gpu": "0",
        "phase_03_eval_opt_limit": "8",
        "phase_00_workspace_opt_size": "5Gi",
        "phase_00_workspace_opt_storage_class": os.environ.get("OSFT_E2E_STORAGE_CLASS", "nfs-csi"),
    }, install=True, wait=True, poll_seconds=15, timeout_seconds=3 * 3600,
        image=os.environ.get("OSFT_E2E_IMAGE", "quay.io/osft-pipeline/osft-pipeline:0.1.0-cpu"))
    assert run["phase"] == "Succeeded", run
