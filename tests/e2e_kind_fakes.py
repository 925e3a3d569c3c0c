"""Stand-ins for docker, kind and kubectl, to run `.ci/e2e-kind.sh` from start to end where no cluster can run.

Each is this file, linked under the tool's name into a folder put first on PATH; every call is appended to
``$FAKE_LOG`` (one JSON line: tool, args, stdin). They answer as the real tools do where the script reads the
answer (kind's version, Argo's images, a token), and ``kubectl port-forward`` really forwards: the Argo Server to
``$FAKE_ARGO_PORT`` behind TLS with a self-signed certificate (as the real argo-server serves), MinIO to
``$FAKE_S3_PORT``, until it is stopped. ``$FAKE_FAIL`` names a call (e.g. ``kubectl rollout``) that fails.
"""

import contextlib
import json
import os
import select
import socket
import ssl
import sys
import threading
from pathlib import Path

ARGO_IMAGES = "quay.io/argoproj/workflow-controller:v4.0.10 quay.io/argoproj/argocli:v4.0.10"


def _log(tool: str, args: list[str], stdin: str = "") -> None:
    with open(os.environ["FAKE_LOG"], "a", encoding="utf-8") as f:
        f.write(json.dumps({"tool": tool, "args": args, "stdin": stdin}) + "\n")


def _pipe(a: socket.socket, b: socket.socket) -> None:
    try:
        while True:
            ready, _, _ = select.select([a, b], [], [], 60)
            for s in ready:
                data = s.recv(65536)
                if not data:
                    return
                (b if s is a else a).sendall(data)
    except OSError:
        return
    finally:
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.close()


def _forward(local: int, target: int, tls: bool) -> None:
    """Accept on 127.0.0.1:local and relay each connection to 127.0.0.1:target (TLS ended here when ``tls``)."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", local))
    server.listen(16)
    ctx = None
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.environ["FAKE_TLS_CERT"], os.environ["FAKE_TLS_KEY"])
    while True:
        conn, _ = server.accept()
        try:
            if ctx is not None:
                conn = ctx.wrap_socket(conn, server_side=True)
            upstream = socket.create_connection(("127.0.0.1", target))
        except (OSError, ssl.SSLError):
            conn.close()
            continue
        threading.Thread(target=_pipe, args=(conn, upstream), daemon=True).start()


def kind(args: list[str]) -> int:
    if args[:1] == ["version"]:
        print("kind v0.31.0 go1.25.5 linux/amd64")
    elif args[:2] == ["get", "clusters"]:
        print("No kind clusters found.", file=sys.stderr)
    elif args[:2] == ["create", "cluster"]:
        Path(args[args.index("--kubeconfig") + 1]).write_text("apiVersion: v1\nkind: Config\n", encoding="utf-8")
    return 0


def kubectl(args: list[str]) -> int:
    if "--dry-run=client" in args:
        print(f"apiVersion: v1\nkind: Fake\nmetadata:\n  name: {args[2] if len(args) > 2 else 'x'}")
    elif args[:2] == ["get", "deployment"] or "get" in args[:3] and "deployment" in args:
        print(ARGO_IMAGES)
    elif "token" in args and "create" in args:
        print(os.environ["FAKE_TOKEN"])
    elif "port-forward" in args:
        service = next(a for a in args if a.startswith("svc/"))
        local, _, remote = next(a for a in args if ":" in a and a[0].isdigit()).partition(":")
        target = int(os.environ["FAKE_ARGO_PORT"] if service == "svc/argo-server" else os.environ["FAKE_S3_PORT"])
        _forward(int(local), target, tls=service == "svc/argo-server")
    return 0


def main(tool: str = "") -> int:
    tool, args = tool or Path(sys.argv[0]).name, sys.argv[1:]
    stdin = sys.stdin.read() if "-" in args and tool == "kubectl" else ""
    _log(tool, args, stdin)
    fail = os.environ.get("FAKE_FAIL", "")
    if fail and " ".join([tool, *args]).startswith(fail):
        print(f"{tool}: failing as asked ({fail})", file=sys.stderr)
        return 1
    if tool == "kind":
        return kind(args)
    if tool == "kubectl":
        return kubectl(args)
    return 0  # docker: info, build


if __name__ == "__main__":
    sys.exit(main())
