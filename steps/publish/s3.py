"""Publishing to ``s3://`` (AWS S3 or an S3-compatible store: MinIO, Ceph RGW, ODF) with boto3's managed transfer.

Every file goes up through one ``s3transfer`` TransferManager: files and the parts of large files are sent
concurrently (``concurrency`` threads), files above ``part_size`` as multipart uploads of ``part_size`` parts.
Each object carries its sha256 as user metadata (``x-amz-meta-sha256``), which is how a retry tells a stored
file from a missing or different one without reading it back, and how the upload is verified (size and
sha256 of every object, by HEAD) before the manifest is written. Credentials and the endpoint come from the
``s3-secret`` env vars (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, optional ``AWS_ENDPOINT_URL``).
"""

import contextlib
import hashlib
import time
from collections.abc import Callable
from typing import Any

from steps.common import s3 as common_s3
from steps.common.errors import StepError
from steps.common.s3 import not_found
from steps.publish.files import MANIFEST_NAME, ModelFile
from steps.publish.store import Stored

SHA_KEY = "sha256"  # user metadata key (x-amz-meta-sha256)


def s3_client(concurrency: int = 8):  # noqa: ANN201 - botocore client types are generated at run time
    """The publishing client: a connection for each upload thread, and patience for large parts."""
    return common_s3.s3_client("publishing to s3://", read_timeout=120, max_pool_connections=max(10, concurrency + 2))


def s3_errors(what: str) -> contextlib.AbstractContextManager[None]:
    """Errors of writing, as one line with the fix (steps/common/s3.py)."""
    return common_s3.s3_errors(what, common_s3.WRITE_HINTS)


class S3Store:
    """One published folder ``s3://bucket/<key_prefix>``."""

    def __init__(self, bucket: str, key_prefix: str, part_size: int = 64 << 20, concurrency: int = 8,
                 client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = key_prefix.strip("/") + "/"
        self.part_size = part_size
        self.concurrency = concurrency
        self.client = client or s3_client(concurrency)
        self.uri = f"s3://{bucket}/{self.prefix.rstrip('/')}"
        self.manifest_uri = f"s3://{bucket}/{self.prefix}{MANIFEST_NAME}"

    def _key(self, rel: str) -> str:
        return self.prefix + rel

    def read_manifest(self) -> bytes | None:
        with s3_errors(f"reading {self.manifest_uri}"):
            try:
                return self.client.get_object(Bucket=self.bucket, Key=self._key(MANIFEST_NAME))["Body"].read()
            except Exception as exc:
                if not_found(exc):
                    return None
                raise

    def delete_manifest(self) -> None:
        with s3_errors(f"removing the old manifest {self.manifest_uri}"):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(MANIFEST_NAME))

    def write_manifest(self, data: bytes) -> None:
        with s3_errors(f"writing the manifest {self.manifest_uri}"):
            self.client.put_object(Bucket=self.bucket, Key=self._key(MANIFEST_NAME), Body=data,
                                   ContentType="application/json",
                                   Metadata={SHA_KEY: hashlib.sha256(data).hexdigest()})

    def _head(self, rel: str) -> Stored | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(rel))
        except Exception as exc:
            if not_found(exc):
                return None
            raise
        return Stored(int(head["ContentLength"]), (head.get("Metadata") or {}).get(SHA_KEY))

    def existing(self, files: list[ModelFile]) -> dict[str, Stored]:
        sizes = {f.rel: f.size for f in files}
        out: dict[str, Stored] = {}
        with s3_errors(f"listing {self.uri}/"):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
                for obj in page.get("Contents", []):
                    rel = obj["Key"][len(self.prefix):]
                    if rel == MANIFEST_NAME:
                        continue
                    stored = Stored(int(obj["Size"]), None)
                    if sizes.get(rel) == stored.size:  # a candidate to skip: its checksum decides
                        stored = self._head(rel) or stored
                    out[rel] = stored
        return out

    def put(self, files: list[ModelFile], log: Callable[[str], None]) -> None:
        from boto3.s3.transfer import TransferConfig, create_transfer_manager

        config = TransferConfig(multipart_threshold=self.part_size, multipart_chunksize=self.part_size,
                                max_concurrency=self.concurrency, use_threads=True)
        started = time.monotonic()
        with s3_errors(f"uploading to {self.uri}/"), create_transfer_manager(self.client, config) as tm:
            futures = [(f, tm.upload(str(f.path), self.bucket, self._key(f.rel),
                                     extra_args={"Metadata": {SHA_KEY: f.sha256}}))
                       for f in sorted(files, key=lambda f: -f.size)]
            for f, fut in futures:
                fut.result()
                log(f"stored {f.rel} ({f.size / 1e6:.1f} MB) after {time.monotonic() - started:.1f} s")
        with s3_errors(f"verifying {self.uri}/"):
            for f in files:
                got = self._head(f.rel)
                if got is None or got.size != f.size or got.sha256 != f.sha256:
                    raise StepError(f"{self.uri}/{f.rel} does not hold what was sent (size {f.size}, sha256 "
                                    f"{f.sha256[:12]}…; stored: {got}); run again")

    def delete(self, rels: list[str]) -> None:
        with s3_errors(f"removing stray objects under {self.uri}/"):
            for i in range(0, len(rels), 1000):
                self.client.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": self._key(r)} for r in rels[i:i + 1000]], "Quiet": True})

    def clean_partials(self) -> int:
        aborted = 0
        with s3_errors(f"listing incomplete uploads under {self.uri}/"):
            page = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=self.prefix)
            for up in page.get("Uploads", []):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"])
                aborted += 1
        return aborted
