"""Connect to a Kubeflow Model Registry with the pinned ``model-registry`` client.

API generation: ``model-registry==0.3.18`` speaks ``/api/model_registry/v1/`` (clients 0.3.12 and 0.3.15+).
Servers that serve only the older ``/api/model_registry/v1alpha3/`` (those the 0.3.0–0.3.11 clients were made
for) answer 404 at the client's first call; that is reported as a clear error naming both generations.

Address forms: ``http://host``, ``https://host``, ``host``, ``host:port``, each optionally with a port in the URL
(which wins over ``port``). A bare host means plain HTTP (the in-cluster Service), as in the reference pipeline.
TLS follows the scheme; ``https`` needs a token (the registry sits behind an auth proxy) and takes a custom CA.
"""

import contextlib
import logging
import os
import re
import ssl
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from steps.common.errors import StepError
from steps.common.secrets import SA_TOKEN_PATH, scrub

API_PREFIX = "/api/model_registry/v1"
OLD_API_PREFIX = "/api/model_registry/v1alpha3"
CLIENT_PIN = "model-registry==0.3.18"
SA_TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"  # noqa: S105
BACKOFF_BASE_S = 1.0  # waits 1 s, 2 s, 4 s, ... between connection attempts (tests shrink it)
T = TypeVar("T")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9\-]*[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*$|^[0-9a-fA-F:.]+$")  # DNS name, IPv4 or IPv6


@dataclass(frozen=True)
class Server:
    """A parsed registry address."""

    scheme: str
    host: str
    port: int

    @property
    def secure(self) -> bool:
        return self.scheme == "https"

    @property
    def base(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_address(address: str, port: int) -> Server:
    """``http(s)://host[:port]``, ``host`` or ``host:port`` → Server; port 0 means the scheme's default."""
    text = address.strip().rstrip("/")
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        url_port = parts.port
    except ValueError as exc:
        raise StepError(f"registry address {address!r} is not a valid host or URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise StepError(f"registry address {address!r}: scheme must be http:// or https://, not {parts.scheme}://")
    if parts.username or parts.password:
        raise StepError(f"registry address {scrub(address)!r} holds credentials: give the token with --token-env")
    if parts.path not in ("", "/") or parts.query:
        raise StepError(f"registry address {address!r} has a path; give only the host (and port) of the service")
    if not parts.hostname:
        raise StepError(f"registry address {address!r} has no host name")
    if not _HOSTNAME.match(parts.hostname):
        raise StepError(f"registry address {address!r} is not a valid host name: give e.g. model-registry.ns.svc, "
                        "host:port or https://host")
    chosen = url_port or port or (443 if parts.scheme == "https" else 80)
    if not 0 < chosen < 65536:
        raise StepError(f"registry port {chosen} is out of range 1-65535")
    return Server(parts.scheme, parts.hostname, chosen)


def find_token(token_env: str) -> tuple[str, str]:
    """(token, where it came from): $token_env, else the file $KF_PIPELINES_SA_TOKEN_PATH, else the pod's SA token."""
    if token_env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", token_env):
            raise StepError(f"--token-env {token_env!r} is not an environment variable name")
        value = os.environ.get(token_env, "").strip()
        if value:
            return value, f"env {token_env}"
    path_env = os.environ.get(SA_TOKEN_PATH_ENV, "")
    for path, label in ((path_env, f"file ${SA_TOKEN_PATH_ENV}"), (SA_TOKEN_PATH, "service-account token")):
        if path:
            with contextlib.suppress(OSError):
                value = Path(path).read_text(encoding="utf-8").strip()
                if value:
                    return value, label
    return "", "none"


@dataclass
class Connection:
    """A connected client plus what is needed to talk about it safely."""

    server: Server
    client: Any
    token: str = field(repr=False)

    def safe(self, text: str) -> str:
        return scrub(text, extra=(self.token,) if self.token else ())


def _ssl_context(ca_cert: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_cert or None)
    return ctx


def _probe_old_api(server: Server, token: str, ca_cert: str) -> int | None:
    """HTTP status of the v1alpha3 list endpoint (None when unreachable): tells an old server from no registry."""
    req = urllib.request.Request(f"{server.base}{OLD_API_PREFIX}/registered_models?pageSize=1")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        ctx = _ssl_context(ca_cert) if server.secure else None
        with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:  # noqa: S310 - http(s) only
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def _is_connection_error(exc: BaseException) -> bool:
    import aiohttp

    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientConnectorSSLError):
        return False
    return isinstance(exc, aiohttp.ClientConnectionError | TimeoutError | ConnectionError)


def with_retries(fn: Callable[[], T], what: str, server: Server, retries: int, log: Callable[[str], None]) -> T:
    """Call ``fn``; on a connection error wait (exponential backoff) and try again, ``retries`` more times."""
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as exc:
            if not _is_connection_error(exc):
                raise
            if attempt >= retries:
                raise StepError(
                    f"cannot reach the Model Registry at {server.base} to {what} after {attempt + 1} attempts "
                    f"({type(exc).__name__}: {exc}); check --address/--port and that the service is running"
                ) from None
            wait = BACKOFF_BASE_S * (2 ** attempt)
            attempt += 1
            log(f"registry unreachable ({type(exc).__name__}); retry {attempt}/{retries} in {wait:g}s")
            time.sleep(wait)


def connect(server: Server, author: str, token: str, ca_cert: str, retries: int,
            log: Callable[[str], None]) -> Connection:
    """Build the client (its constructor probes ``GET …/registered_models?pageSize=1``) and translate failures."""
    from model_registry import ModelRegistry
    from model_registry.exceptions import StoreError
    from mr_openapi import exceptions as mr_exc

    if server.secure and not token:
        raise StepError(f"{server.base} uses TLS, so the registry needs a bearer token: set the env var named by "
                        f"--token-env, or {SA_TOKEN_PATH_ENV}, or run in a pod with a service-account token")
    if ca_cert and not Path(ca_cert).is_file():
        raise StepError(f"--ca-cert {ca_cert} is not a readable file: mount the CA bundle (PEM) and pass its path")
    logging.getLogger("model-registry").setLevel(logging.ERROR)  # drop the harmless "port is not 80" hint

    def build() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ModelRegistry(f"{server.scheme}://{server.host}", server.port, author=author,
                                 is_secure=server.secure, user_token=token or None,
                                 custom_ca=ca_cert or None, log_level=logging.ERROR)

    conn_token = token
    try:
        client = with_retries(build, "probe it", server, retries, log)
    except mr_exc.NotFoundException:
        old = _probe_old_api(server, token, ca_cert)
        hint = ("it serves only the older v1alpha3 API at " + OLD_API_PREFIX + "/: upgrade the Model Registry "
                "server, or use a client that speaks v1alpha3 (model-registry<=0.3.11)") if old == 200 else (
                "it serves neither " + OLD_API_PREFIX + "/ nor " + API_PREFIX + "/: check that --address/--port "
                "point at the Model Registry REST service (not the UI or gRPC port)")
        raise StepError(f"the server at {server.base} answered 404 at {API_PREFIX}/registered_models: this step's "
                        f"client ({CLIENT_PIN}) speaks the v1 API ({API_PREFIX}/); {hint}") from None
    except (mr_exc.UnauthorizedException, mr_exc.ForbiddenException) as exc:
        raise StepError(f"the Model Registry at {server.base} refused the token (HTTP {exc.status}): give a token "
                        "with access via --token-env or the pod's service account") from None
    except mr_exc.ApiException as exc:
        raise StepError(f"the Model Registry at {server.base} failed the probe: HTTP {exc.status} {exc.reason}; "
                        "check the server's logs") from None
    except StoreError as exc:
        raise StepError(scrub(f"Model Registry client error for {server.base}: {exc}", extra=(conn_token,))) from None
    except StepError:
        raise
    except Exception as exc:
        import aiohttp

        if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientConnectorSSLError | ssl.SSLError):
            raise StepError(f"TLS to {server.base} failed ({type(exc).__name__}): pass --ca-cert with the CA "
                            "bundle that signed the registry's certificate") from None
        raise
    return Connection(server, client, token)
