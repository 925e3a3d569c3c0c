"""Why a connection failed, in one phrase: DNS, refused, TLS, timeout (for the Argo Server and Kubernetes API)."""

import socket
import ssl
from urllib.parse import urlsplit


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and everything it wraps (causes, contexts, urllib3's ``reason``, OSError args)."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [x for x in (e.__cause__, e.__context__, getattr(e, "reason", None)) if isinstance(x, BaseException)]
        todo += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
    return seen


def describe(exc: BaseException, url: str, hint: str = "") -> str:
    """A one-line cause of a failed connection to ``url``, with what to do about it."""
    parts = urlsplit(url if "://" in url else f"https://{url}")
    host, port = parts.hostname or url, parts.port or (443 if parts.scheme == "https" else 80)
    chain = _chain(exc)
    text = " ".join(str(e) for e in chain)
    if any(isinstance(e, socket.gaierror) for e in chain) or "NameResolutionError" in text or \
            "Name or service not known" in text or "nodename nor servname" in text:
        return f"cannot resolve host {host!r} (DNS): check the address, or the VPN/proxy that makes it resolvable"
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in chain) or "CERTIFICATE_VERIFY_FAILED" in text:
        return (f"TLS: the certificate of {host}:{port} is not trusted ({_short(text)}): trust its CA, or skip the "
                "check with --insecure-skip-verify / -k")
    if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text or "record layer failure" in text:
        return f"TLS: {host}:{port} does not speak TLS: use http://{host}:{port} (or ARGO_SECURE=false)"
    if any(isinstance(e, ssl.SSLError) for e in chain) or "SSLError" in text:
        return f"TLS handshake with {host}:{port} failed ({_short(text)})"
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "Connection refused" in text:
        return f"connection refused by {host}:{port}: nothing listens there{hint}"
    if any(isinstance(e, TimeoutError | socket.timeout) for e in chain) or "timed out" in text.lower():
        return f"no answer from {host}:{port} (timed out): a firewall, a proxy, or the wrong address{hint}"
    return f"cannot connect to {host}:{port}: {_short(text)}{hint}"


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text[:160] + ("…" if len(text) > 160 else "")
