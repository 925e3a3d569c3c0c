"""Pipeline-level task (not a step), preflight: check that the secrets and cluster access the chosen inputs
need are present, in seconds.

Runs first in the Argo DAG (after the parameter rules in ``workflows/params.py`` passed), so a run
that cannot succeed fails before any GPU pod starts. Secret *values* are never printed: only
whether each one is set.
"""

import json
import os
from pathlib import Path
from typing import Any

from steps.common.errors import StepError
from steps.common.secrets import SA_TOKEN_PATH
from steps.common.workspace import Workspace
from steps.dataset.sources import HfSource, S3Source, parse_source

STEP = "preflight"
# secret name -> keys, exactly as in the original pipeline's README
SECRETS: dict[str, tuple[str, ...]] = {
    "s3-secret": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    "hf-token": ("HF_TOKEN",),
    "oci-pull-secret-model-download": ("OCI_PULL_SECRET_MODEL_DOWNLOAD",),
    "kubernetes-credentials": ("KUBERNETES_SERVER_URL", "KUBERNETES_AUTH_TOKEN"),
}
_LOCAL_PREFIXES = ("/", "./", "../", "~", "file://", "pvc://")


def _set(name: str) -> bool:
    return bool(os.environ.get(name, "").strip())


def _is_hub_model(model: str) -> bool:
    m = model.strip()
    if m.startswith("hf://"):
        return True
    return not m.startswith(_LOCAL_PREFIXES) and "://" not in m and not Path(m).exists()


def check_environment(
    workspace: str,
    data_uri: str,
    model: str,
    workers: int = 1,
    hf_token: str = "",
    token_path: str = SA_TOKEN_PATH,
    storage_uri: str = "",
) -> dict[str, Any]:
    """Check the mounted secrets and cluster access against the chosen inputs.

    Args:
        workspace: workspace directory (the per-run volume in Argo); must be writable.
        data_uri: the dataset URI (s3:// needs the s3-secret keys; hf:// warns without a token).
        model: the base model (oci:// may need the pull secret; a Hub id warns without a token).
        workers: training pods; > 1 needs Kubernetes API access to create a TrainJob.
        hf_token: the token passed as a parameter (counts as a token; never printed).
        token_path: the service-account token file used when kubernetes-credentials is absent.
        storage_uri: where the model is published (s3:// needs the s3-secret keys).

    Returns:
        warnings (list of lines) and which secret env vars are set (names only, never values).
    """
    ws = Workspace.at(workspace)
    probe = ws.root / f".preflight-{os.getpid()}"
    try:
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        raise StepError(f"workspace {ws.root} is not writable ({exc.strerror}); check the workspace volume") from None
    warnings: list[str] = []
    src = parse_source(data_uri)
    have_hf = bool(hf_token.strip()) or _set("HF_TOKEN")

    if isinstance(src, S3Source):
        missing = [k for k in SECRETS["s3-secret"] if not _set(k)]
        if missing:
            raise StepError(
                f"data_uri is s3:// but {', '.join(missing)} is not set: create the secret s3-secret with keys "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the run's namespace"
            )
    if storage_uri.strip().startswith("s3://"):
        missing = [k for k in SECRETS["s3-secret"] if not _set(k)]
        if missing:
            raise StepError(
                f"storage_uri is s3:// but {', '.join(missing)} is not set: create the secret s3-secret with keys "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL for MinIO/Ceph) in the run's "
                "namespace"
            )
    if isinstance(src, HfSource) and not have_hf:
        warnings.append("no HF token (secret hf-token): only public, non-gated Hub datasets can be read")

    m = model.strip()
    if m.startswith("oci://"):
        if _set("OCI_PULL_SECRET_MODEL_DOWNLOAD"):
            try:
                auths = json.loads(os.environ["OCI_PULL_SECRET_MODEL_DOWNLOAD"]).get("auths")
            except (ValueError, AttributeError):
                auths = None
            if not isinstance(auths, dict):
                raise StepError(
                    "OCI_PULL_SECRET_MODEL_DOWNLOAD (secret oci-pull-secret-model-download) is not a Docker "
                    'config.json with an "auths" object; store the config.json contents as the value'
                )
        else:
            warnings.append("oci:// model without secret oci-pull-secret-model-download: private registries will "
                            "refuse the download")
    elif _is_hub_model(m) and not have_hf:
        warnings.append("no HF token (secret hf-token): only public, non-gated Hub models can be downloaded")

    kube = {k: _set(k) for k in SECRETS["kubernetes-credentials"]}
    if any(kube.values()) and not all(kube.values()):
        given = next(k for k, v in kube.items() if v)
        missing_k = next(k for k, v in kube.items() if not v)
        raise StepError(f"secret kubernetes-credentials sets {given} but not {missing_k}: set both or neither "
                        "(neither = use the workflow's service account)")
    if workers > 1 and not all(kube.values()) and not Path(token_path).is_file():
        raise StepError(
            f"workers={workers} runs a Kubeflow Trainer TrainJob, which needs Kubernetes API access: run under a "
            "service account allowed to create trainjobs (templates/rbac.yaml) or create the secret "
            "kubernetes-credentials (KUBERNETES_SERVER_URL, KUBERNETES_AUTH_TOKEN)"
        )

    present = {name: _set(name) for keys in SECRETS.values() for name in keys}
    for line in warnings:
        ws.log(STEP, f"warning: {line}")
    shown = ", ".join(k for k, v in present.items() if v) or "none"
    ws.log(STEP, f"ok: secrets set: {shown}")
    return {"warnings": warnings, "secrets_set": present}
