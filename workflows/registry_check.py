"""Can an image be pulled? Asked the way a container runtime asks: the OCI distribution API (``/v2/``), anonymously.

``HEAD /v2/<repo>/manifests/<tag>``; on 401 the registry's ``WWW-Authenticate: Bearer realm=…`` names its
token service, which gives anonymous pull tokens for public repositories. 200 = it exists and is public;
404 = no such tag (or repository); 401/403 after the token = private (the cluster needs an image pull secret)
or missing (registries such as quay.io answer both alike to anonymous clients).
"""

import re
from dataclasses import dataclass

import requests

from workflows import connection

_ACCEPT = ", ".join((
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json"))


@dataclass(frozen=True)
class ImageRef:
    """An image reference split as container runtimes split it (docker.io and library/ filled in)."""

    registry: str
    repository: str
    reference: str  # tag or digest

    @property
    def api(self) -> str:
        host = "registry-1.docker.io" if self.registry == "docker.io" else self.registry
        local = host.split(":")[0] in ("localhost", "127.0.0.1", "::1")
        return f"{'http' if local else 'https'}://{host}/v2/{self.repository}"


def parse_image(ref: str) -> ImageRef:
    """``quay.io/org/img:tag`` -> (quay.io, org/img, tag); ``python:3.11`` -> (docker.io, library/python, 3.11)."""
    name, _, digest = ref.partition("@")
    tag = "latest"
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, repo = first, rest
    else:
        registry, repo = "docker.io", name if sep else f"library/{name}"
    return ImageRef(registry, repo, digest or tag)


def _token(challenge: str, repo: str, timeout: float) -> str:
    fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    if not fields.get("realm"):
        return ""
    params = {"scope": f"repository:{repo}:pull"}
    if fields.get("service"):
        params["service"] = fields["service"]
    r = requests.get(fields["realm"], params=params, timeout=timeout)
    if r.status_code != 200:
        return ""
    body = r.json()
    return str(body.get("token") or body.get("access_token") or "")


def check_image(ref: str, timeout: float = 10.0) -> tuple[str, str]:
    """("ok" | "missing" | "private" | "unknown", one-line detail) for pulling ``ref`` anonymously."""
    img = parse_image(ref)
    url = f"{img.api}/manifests/{img.reference}"
    headers = {"Accept": _ACCEPT}
    try:
        r = requests.head(url, headers=headers, timeout=timeout, allow_redirects=True)
        challenge = r.headers.get("WWW-Authenticate", "")
        if r.status_code == 401 and challenge.lower().startswith("bearer"):
            token = _token(challenge, img.repository, timeout)
            if token:
                r = requests.head(url, headers={**headers, "Authorization": f"Bearer {token}"}, timeout=timeout,
                                  allow_redirects=True)
    except requests.RequestException as exc:
        return "unknown", f"registry {img.registry} not reachable from here: {connection.describe(exc, img.api)}"
    if r.status_code == 200:
        return "ok", f"{ref} exists in {img.registry}"
    if r.status_code == 404:
        return "missing", f"{ref}: no such image in {img.registry}"
    if r.status_code in (401, 403):
        return "private", f"{ref} cannot be pulled anonymously from {img.registry} (private, or it does not exist)"
    return "unknown", f"{ref}: {img.registry} answered {r.status_code}"
