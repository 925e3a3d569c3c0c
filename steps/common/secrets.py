"""Keep secrets out of logs, reports, error messages and metadata: the one scrubber every step and record uses.

:func:`scrub` is for free text (messages, log lines, record values): it masks the secret values in the
environment (and any given ones), the ``user:password@`` part of every URI it contains and sensitive query
values. :func:`redact_uri` does the same for one URI. :class:`~steps.common.errors.StepError` and
:meth:`~steps.common.workspace.Workspace.log` apply :func:`scrub`, so no message or log line needs to.
"""

import os
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Environment variables that carry secrets (mounted from Kubernetes secrets in Argo).
SECRET_ENV_VARS = (
    "HF_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "OCI_PULL_SECRET_MODEL_DOWNLOAD",
    "KUBERNETES_AUTH_TOKEN",
    "MODEL_REGISTRY_TOKEN",
)
# Kubernetes secret name -> its keys, each mounted as the env var of the same name. The first four and their
# keys are the original pipeline's README (plus s3-secret's optional AWS_ENDPOINT_URL for MinIO/Ceph/ODF, see
# ADDED_KEYS); model-registry-token is added by this port (a bearer token
# for a Model Registry behind an auth proxy; without it the pod's service-account token is used).
K8S_SECRETS: dict[str, tuple[str, ...]] = {
    "s3-secret": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"),
    "hf-token": ("HF_TOKEN",),
    "oci-pull-secret-model-download": ("OCI_PULL_SECRET_MODEL_DOWNLOAD",),
    "kubernetes-credentials": ("KUBERNETES_SERVER_URL", "KUBERNETES_AUTH_TOKEN"),
    "model-registry-token": ("MODEL_REGISTRY_TOKEN",),
}
ADDED_KEYS: dict[str, tuple[str, ...]] = {"s3-secret": ("AWS_ENDPOINT_URL",)}  # keys this port adds
MASK = "***"
# The pod's service-account files (the token is a fallback credential for the Kubernetes API and the registry).
SA_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105 - a path, not a secret
SA_NAMESPACE_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
_SENSITIVE_QUERY = re.compile(r"(sig|signature|token|key|secret|credential|password|auth)", re.I)
# scheme://userinfo@ inside free text (userinfo: no '/', '@' or whitespace), and key=value query pairs after ?/&
_URI_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@\s'\"<>]+)@")
_QUERY_PAIR = re.compile(r"(?P<lead>[?&](?P<key>[A-Za-z0-9_.\-]+)=)(?P<value>[^&#\s'\"<>]+)")


def redact_uri(uri: str) -> str:
    """Drop user:password and sensitive query values from a URI; other strings pass unchanged."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if not parts.scheme or not parts.netloc:
        return uri
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if _SENSITIVE_QUERY.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


_REGISTERED: set[str] = set()


def add_secret(value: str) -> None:
    """Mask ``value`` in everything this process scrubs from now on (a secret that came as a parameter)."""
    if value and len(value.strip()) >= 4:
        _REGISTERED.add(value.strip())


def secret_values(extra: tuple[str, ...] = ()) -> list[str]:
    """The secret values in the environment, those added with :func:`add_secret`, and ``extra``; longest first."""
    values = [os.environ.get(name, "") for name in SECRET_ENV_VARS] + list(_REGISTERED) + list(extra)
    return sorted({v.strip() for v in values if v and len(v.strip()) >= 4}, key=len, reverse=True)


def _mask_query(m: re.Match[str]) -> str:
    return m.group("lead") + MASK if _SENSITIVE_QUERY.search(m.group("key")) else m.group(0)


def scrub(text: str, extra: tuple[str, ...] = ()) -> str:
    """``text`` with every known secret value, URI credential (``user:pass@``) and sensitive query value masked."""
    for value in secret_values(extra):
        text = text.replace(value, MASK)
    if "@" in text:
        text = _URI_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    if "=" in text and ("?" in text or "&" in text):
        text = _QUERY_PAIR.sub(_mask_query, text)
    return text
