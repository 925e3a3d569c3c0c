"""Fixtures of the publish tests: a moto S3 server on 127.0.0.1 and a workspace holding a trained checkpoint."""

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from steps.common.workspace import Workspace

BUCKET = "models"
KEY_ID, SECRET = "AKIAPUBLISHTEST01", "publish-secret-value-77"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


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
