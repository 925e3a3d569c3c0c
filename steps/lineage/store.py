"""The lineage store: next to the published models, what each accepted version learned, and which is the latest.

Layout under the storage URI (``s3://bucket/prefix`` or ``pvc://claim/path``), for model name ``<name>``::

    <prefix>/<name>/<version>/                 the published model (steps/publish: files, manifest last)
    <prefix>/<name>/lineage/<version>/ledger.json    parent, data watermark, per-held-out-set scores
    <prefix>/<name>/lineage/<version>/heldout.jsonl  that version's held-out split
    <prefix>/<name>/lineage/latest.json        the pointer: the newest accepted version

The pointer moves only by a *conditional* write: on S3 a PUT with ``If-Match`` (the ETag read when the run chose
its parent) or ``If-None-Match: *`` (there was no pointer yet); on a folder an exclusive lock file, a compare of
the pointer's sha256 and an atomic rename. So two runs that continued from the same parent can never both be
accepted as its child: the second write is refused (:class:`LineageConflict`).
"""

import contextlib
import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steps.common.errors import StepError
from steps.publish.files import json_object as _doc

POINTER = "latest.json"
LEDGER = "ledger.json"
HELDOUT = "heldout.jsonl"
LEDGER_FORMAT = "osft-pipeline/lineage-ledger/v1"
POINTER_FORMAT = "osft-pipeline/lineage-pointer/v1"
_LOCK_STALE_S = 600


class LineageConflict(StepError):
    """The latest pointer changed since this run read it: another run was accepted first."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Pointer:
    """The latest pointer as read: its document (None when there is none yet) and its tag for the compare."""

    doc: dict[str, Any] | None
    tag: str | None  # S3 ETag or the folder file's sha256; None = no pointer

    @property
    def version(self) -> str:
        return str((self.doc or {}).get("version") or "")


class FolderLineage:
    """The lineage of one model name on a mounted folder (a pvc:// claim, or a local folder in local runs)."""

    def __init__(self, models_root: Path, uri: str) -> None:
        self.root = models_root  # <mount>/<prefix>/<name>
        self.dir = models_root / "lineage"
        self.uri = uri  # <storage uri>/<name>

    def read(self, rel: str) -> bytes | None:
        try:
            return (self.dir / rel).read_bytes()
        except FileNotFoundError:
            return None

    def pointer(self) -> Pointer:
        data = self.read(POINTER)
        return Pointer(_doc(data), sha256_bytes(data) if data is not None else None)

    def write(self, rel: str, data: bytes) -> None:
        path = self.dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def delete(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.dir / rel).unlink()

    def move_pointer(self, data: bytes, expect: str | None) -> None:
        """Write the pointer only if it is still what this run read (``expect``: its sha256, None = absent)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        lock = self.dir / ".latest.lock"
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if time.time() - lock.stat().st_mtime < _LOCK_STALE_S:
                raise LineageConflict(f"{self.uri}/lineage/{POINTER} is being moved by another run right now: "
                                      "this run is not accepted; run again to continue from the new latest") from None
            lock.unlink(missing_ok=True)  # a crashed writer's lock
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        try:
            os.write(fd, str(os.getpid()).encode())
            now = self.pointer()
            if now.tag != expect:
                raise _conflict(self.uri, now)
            self.write(POINTER, data)
        finally:
            os.close(fd)
            lock.unlink(missing_ok=True)

    def fetch_model(self, version: str, dest: Path) -> dict[str, Any]:
        src = self.root / version
        manifest = _manifest(_read_file(src / "osft-manifest.json"), f"{self.uri}/{version}")

        def get(rel: str, tmp: Path) -> None:
            shutil.copyfile(src / rel, tmp)

        return _fetch_files(manifest, dest, get)


class S3Lineage:
    """The lineage of one model name under ``s3://bucket/<prefix>/<name>``."""

    def __init__(self, bucket: str, base_key: str, client: Any = None) -> None:
        from steps.common.s3 import s3_client

        self.bucket = bucket
        self.base = base_key.strip("/")
        self.client = client or s3_client("the lineage store on s3://")
        self.uri = f"s3://{bucket}/{self.base}"

    def _key(self, rel: str) -> str:
        return f"{self.base}/lineage/{rel}"

    def _get(self, key: str) -> tuple[bytes | None, str | None]:
        from steps.common.s3 import WRITE_HINTS, not_found, s3_errors

        with s3_errors(f"reading s3://{self.bucket}/{key}", WRITE_HINTS):
            try:
                obj = self.client.get_object(Bucket=self.bucket, Key=key)
            except Exception as exc:
                if not_found(exc):
                    return None, None
                raise
            return obj["Body"].read(), obj.get("ETag")

    def read(self, rel: str) -> bytes | None:
        return self._get(self._key(rel))[0]

    def pointer(self) -> Pointer:
        data, etag = self._get(self._key(POINTER))
        return Pointer(_doc(data), etag if data is not None else None)

    def write(self, rel: str, data: bytes) -> None:
        from steps.common.s3 import WRITE_HINTS, s3_errors

        with s3_errors(f"writing {self.uri}/lineage/{rel}", WRITE_HINTS):
            self.client.put_object(Bucket=self.bucket, Key=self._key(rel), Body=data)

    def delete(self, rel: str) -> None:
        from steps.common.s3 import WRITE_HINTS, s3_errors

        with s3_errors(f"removing {self.uri}/lineage/{rel}", WRITE_HINTS):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(rel))

    def move_pointer(self, data: bytes, expect: str | None) -> None:
        """A conditional PUT: ``If-Match`` the ETag this run read, or ``If-None-Match: *`` when there was none."""
        from botocore.exceptions import ClientError

        from steps.common.s3 import WRITE_HINTS, s3_errors

        cond = {"IfMatch": expect} if expect else {"IfNoneMatch": "*"}
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(POINTER), Body=data,
                                   ContentType="application/json", **cond)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if err.get("Code") in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                raise _conflict(self.uri, self.pointer()) from None
            with s3_errors(f"moving {self.uri}/lineage/{POINTER}", WRITE_HINTS):
                raise

    def fetch_model(self, version: str, dest: Path) -> dict[str, Any]:
        from steps.common.s3 import WRITE_HINTS, s3_errors

        prefix = f"{self.base}/{version}"
        data, _ = self._get(f"{prefix}/osft-manifest.json")
        manifest = _manifest(data, f"{self.uri}/{version}")

        def get(rel: str, tmp: Path) -> None:
            with s3_errors(f"downloading s3://{self.bucket}/{prefix}/{rel}", WRITE_HINTS):
                body = self.client.get_object(Bucket=self.bucket, Key=f"{prefix}/{rel}")["Body"]
                with open(tmp, "wb") as fh:
                    shutil.copyfileobj(body, fh, 8 << 20)

        return _fetch_files(manifest, dest, get)


Lineage = FolderLineage | S3Lineage


def open_lineage(storage_uri: str, name: str, models_mount: str = "/models", client: Any = None) -> Lineage:
    """The lineage store of model ``name`` under ``storage_uri`` (s3://bucket/prefix, or pvc://claim/path with the
    claim mounted at ``models_mount``)."""
    from steps.publish import name_segment, parse_storage_uri

    target = parse_storage_uri(storage_uri)
    base = "/".join(p for p in (target.prefix, name_segment(name)) if p)
    if target.scheme == "s3":
        return S3Lineage(target.root, base, client)
    mount = Path(models_mount)
    if not mount.is_dir():
        raise StepError(f"the models volume (claim {target.root}) is not mounted at {mount}: the lineage of a "
                        "pvc:// storage URI is read where that claim is mounted (the lineage-pvc task)")
    return FolderLineage(mount / base, f"{storage_uri.strip().rstrip('/')}/{name_segment(name)}")


def _read_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _conflict(uri: str, now: Pointer) -> LineageConflict:
    return LineageConflict(
        f"{uri}/lineage/{POINTER} moved to version {now.version or '(none)'} while this run trained: another run "
        "was accepted first, so this one is not accepted as a child of the same parent (the latest pointer is "
        "unchanged by it); run again to continue from the new latest version")


def _manifest(data: bytes | None, where: str) -> dict[str, Any]:
    doc = _doc(data)
    if not doc or not isinstance(doc.get("files"), list):
        raise StepError(f"{where} has no publish manifest (osft-manifest.json): the version is incomplete or was "
                        "never published; choose another version (phase_02_train_opt_continue_from)")
    return doc


def _fetch_files(manifest: dict[str, Any], dest: Path, get: Any) -> dict[str, Any]:
    """Bring ``dest`` to the manifest's files (verified by sha256); files already there with the same sha256 are
    not fetched again. Returns what was fetched and skipped."""
    from steps.publish.files import sha256_of

    dest.mkdir(parents=True, exist_ok=True)
    fetched, skipped, nbytes = [], [], 0
    for entry in manifest["files"]:
        rel, size, sha = str(entry["path"]), int(entry["size"]), str(entry["sha256"])
        if "/" in rel or rel.startswith("."):
            raise StepError(f"manifest lists an unexpected path {rel!r}")
        path = dest / rel
        if path.is_file() and path.stat().st_size == size and sha256_of(path) == sha:
            skipped.append(rel)
            continue
        tmp = dest / f".{rel}.partial-{os.getpid()}"
        get(rel, tmp)
        got = sha256_of(tmp)
        if got != sha or tmp.stat().st_size != size:
            tmp.unlink(missing_ok=True)
            raise StepError(f"{rel}: fetched file does not match the manifest (sha256 {got[:12]}… != {sha[:12]}…); "
                            "run again")
        os.replace(tmp, path)
        fetched.append(rel)
        nbytes += size
    return {"fetched": fetched, "skipped": skipped, "bytes": nbytes}
