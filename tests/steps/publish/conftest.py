"""Fixtures of the publish tests: a moto S3 server on 127.0.0.1 and a workspace holding a trained checkpoint."""

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from steps.common.workspace import Workspace
from tests.moto_s3 import moto_server

BUCKET = "models"
KEY_ID, SECRET = "AKIAPUBLISHTEST01", "publish-secret-value-77"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture()
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """A boto3 client on moto with an empty bucket ``models``; the step's env points at the same endpoint."""
    import boto3

    for k, v in (("AWS_ACCESS_KEY_ID", KEY_ID), ("AWS_SECRET_ACCESS_KEY", SECRET),
                 ("AWS_ENDPOINT_URL", moto_endpoint), ("AWS_MAX_ATTEMPTS", "1")):
        monkeypatch.setenv(k, v)
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    existing = [b["Name"] for b in client.list_buckets()["Buckets"]]
    if BUCKET in existing:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for obj in page.get("Contents", []):
                client.delete_object(Bucket=BUCKET, Key=obj["Key"])
        for up in client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []):
            client.abort_multipart_upload(Bucket=BUCKET, Key=up["Key"], UploadId=up["UploadId"])
    else:
        client.create_bucket(Bucket=BUCKET)
    return client


def make_checkpoint(ws_root: Path, weights_mb: float = 1.0, gate: str = "pass", seed: int = 0) -> Path:
    """A workspace whose train/model points at a checkpoint with serving files plus trainer files that must not
    be published, and an eval/comparison.json with ``gate``."""
    ws = Workspace.at(ws_root)
    ckpt = ws.train_dir / "run-abc" / "hf_format" / "samples_64.0"
    ckpt.mkdir(parents=True)
    rng = __import__("random").Random(seed)
    (ckpt / "config.json").write_text(json.dumps({"model_type": "qwen2", "seed": seed}))
    (ckpt / "model.safetensors").write_bytes(rng.randbytes(int(weights_mb * (1 << 20))))
    (ckpt / "tokenizer.json").write_text(json.dumps({"version": "1.0", "seed": seed}))
    (ckpt / "tokenizer_config.json").write_text("{}")
    (ckpt / "generation_config.json").write_text('{"do_sample": false}')
    (ckpt / "optimizer.pt").write_bytes(b"optimizer state: never published")
    (ckpt / "training_args.bin").write_bytes(b"trainer args")
    ws.point_model_at(ckpt)
    ws.eval_dir.mkdir(parents=True, exist_ok=True)
    (ws.eval_dir / "comparison.json").write_text(json.dumps({"gate": gate, "rows": []}))
    return ckpt


def objects(client, prefix: str = "") -> dict[str, int]:  # noqa: ANN001
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        out.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    return out


os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


class FailingProxy:
    """An HTTP proxy in front of moto that answers ``503 SlowDown`` (without forwarding) to every request for
    which ``fail(method, path_and_query)`` is true, and logs every request it forwards: a store that breaks
    after N parts or files, observed from the server's side."""

    def __init__(self, upstream: str, fail: Callable[[str, str], bool]) -> None:
        import http.client
        import http.server
        import threading
        from urllib.parse import urlsplit

        self.fail = fail
        self.forwarded: list[tuple[str, str]] = []
        self.refused: list[tuple[str, str]] = []
        up = urlsplit(upstream)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy.fail(self.command, self.path):
                    proxy.refused.append((self.command, self.path))
                    msg = b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>"
                    self.send_response(503)
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                proxy.forwarded.append((self.command, self.path))
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                head = self.command == "HEAD"
                for k, v in resp.getheaders():
                    skip = ("connection", "transfer-encoding", "server", "date") + (() if head else ("content-length",))
                    if k.lower() not in skip:
                        self.send_header(k, v)
                if not head:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if not head:
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any  # noqa: N815

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def puts(self) -> list[str]:
        """Object keys the store received a PUT for (whole objects and parts), in order."""
        return [p.split("?")[0] for m, p in self.forwarded if m == "PUT"]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
