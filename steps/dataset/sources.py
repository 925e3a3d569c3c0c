"""Dataset sources: parse a URI into a typed source (no I/O), then fetch it to local files.

Schemes: ``hf://org/name[:config]`` (and bare ``org/name``), ``s3://bucket/key-or-prefix``,
``http(s)://``, ``pvc://relative/path`` (inside the workspace or a mounted data volume),
``file:///abs/path`` and absolute paths.
"""

import os
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from steps.common.errors import StepError
from steps.common.secrets import redact_uri

DATA_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet", ".csv", ".csv.gz", ".ndjson")
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?$")
_BARE_HF = re.compile(r"^[A-Za-z0-9][\w.\-]*/[A-Za-z0-9][\w.\-]*(:[^\s]+)?$")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
DATA_DIR_ENV = "OSFT_DATA_DIR"  # a mounted data volume that pvc:// paths may also point into


@dataclass(frozen=True)
class HfSource:
    """A Hugging Face Hub dataset, optionally with a config name."""

    repo: str
    config: str | None = None

    def __post_init__(self) -> None:
        if not _HF_ID.match(self.repo):
            raise StepError(f"hf://{self.repo}: not a dataset id; write hf://org/name or hf://org/name:config")


@dataclass(frozen=True)
class S3Source:
    """An object or a prefix of objects in an S3-compatible bucket."""

    bucket: str
    key: str

    def __post_init__(self) -> None:
        if not self.bucket:
            raise StepError("s3:// URI has no bucket: write s3://bucket/path/to/file.jsonl or s3://bucket/prefix/")


@dataclass(frozen=True)
class HttpSource:
    """A file served over http or https."""

    url: str

    def __post_init__(self) -> None:
        if not urlsplit(self.url).hostname:
            raise StepError(f"{redact_uri(self.url)}: URL has no host; write https://host/path/file.jsonl")


@dataclass(frozen=True)
class PvcSource:
    """A path relative to the workspace volume (or a mounted data volume); it can never escape it."""

    rel_path: str

    def __post_init__(self) -> None:
        if not self.rel_path or self.rel_path.startswith("/"):
            raise StepError(
                f"pvc://{self.rel_path}: pvc:// paths are relative to the workspace volume; write pvc://dir/file.jsonl"
            )
        norm = posixpath.normpath(self.rel_path)
        if norm == ".." or norm.startswith("../"):
            raise StepError(f"pvc://{self.rel_path}: path escapes the volume with '..'; use a path inside it")


@dataclass(frozen=True)
class LocalSource:
    """A file or folder on the local filesystem."""

    path: str


Source = HfSource | S3Source | HttpSource | PvcSource | LocalSource


def parse_source(uri: str) -> Source:
    """Classify a dataset URI without touching the network or the disk."""
    uri = (uri or "").strip()
    if not uri:
        raise StepError("dataset URI is empty: pass hf://org/name, s3://bucket/key, https://..., pvc://path or a path")
    match = _SCHEME.match(uri)
    scheme = match.group(1).lower() if match else ""
    rest = uri[match.end():] if match else uri
    if scheme in ("http", "https"):
        return HttpSource(uri)
    if scheme == "hf":
        repo, _, config = rest.partition(":")
        if repo.startswith("datasets/"):
            repo = repo[len("datasets/"):]
        return HfSource(repo.strip("/"), config or None)
    if scheme == "s3":
        bucket, _, key = rest.partition("/")
        return S3Source(bucket, key)
    if scheme == "pvc":
        return PvcSource(rest)
    if scheme == "file":
        parts = urlsplit(uri)
        path = unquote(parts.path)
        if parts.netloc not in ("", "localhost") or not path.startswith("/"):
            raise StepError(f"{uri}: file:// URIs need an absolute path, e.g. file:///data/train.jsonl")
        return LocalSource(path)
    if scheme:
        raise StepError(
            f"{redact_uri(uri)}: unknown scheme {scheme}://; use hf://, s3://, http(s)://, pvc://, file:// or a path"
        )
    if uri.startswith("/"):
        return LocalSource(uri)
    if uri.startswith(("./", "../", "~")) or uri.lower().endswith(DATA_SUFFIXES):
        return LocalSource(str(Path(uri).expanduser().absolute()))
    if _BARE_HF.match(uri):
        repo, _, config = uri.partition(":")
        return HfSource(repo, config or None)
    raise StepError(
        f"{uri!r} is not a dataset URI: use hf://org/name, s3://bucket/key, https://..., pvc://path or /abs/path"
    )


def has_data_suffix(name: str) -> bool:
    return name.lower().endswith(DATA_SUFFIXES)


def _files_under(path: Path, shown: str) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and has_data_suffix(p.name)
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not files:
            raise StepError(f"{shown}: folder holds no data files ({', '.join(DATA_SUFFIXES)})")
        return files
    raise StepError(f"{shown}: no such file or folder; check the path")


def resolve_pvc(src: PvcSource, workspace: Path) -> Path:
    """The real path of a pvc:// source: inside the data volume or the workspace, symlinks included."""
    roots = [Path(os.environ[DATA_DIR_ENV])] if os.environ.get(DATA_DIR_ENV) else []
    roots.append(workspace)
    for root in roots:
        root = root.resolve()
        candidate = (root / src.rel_path).resolve()
        if not candidate.is_relative_to(root):
            raise StepError(f"pvc://{src.rel_path}: resolves outside the volume ({root}); use a path inside it")
        if candidate.exists():
            return candidate
    where = " or ".join(str(r) for r in roots)
    raise StepError(f"pvc://{src.rel_path}: not found in {where}; copy the data onto the volume or fix the path")


def local_files(src: PvcSource | LocalSource, workspace: Path) -> list[Path]:
    """The data files a local or pvc:// source names (a file, or every data file in a folder)."""
    if isinstance(src, PvcSource):
        return _files_under(resolve_pvc(src, workspace), f"pvc://{src.rel_path}")
    return _files_under(Path(src.path), src.path)


# --- remote fetchers: download to a private temp folder, streaming (bounded memory) ------------------------


def fetch_http(src: HttpSource, dest: Path) -> list[Path]:
    """Download one http(s) file into ``dest`` with retries on transient errors."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    shown = redact_uri(src.url)
    name = Path(unquote(urlsplit(src.url).path)).name or "download"
    session = requests.Session()
    retry = Retry(total=3, backoff_factor=0.5, status_forcelist=(429, 500, 502, 503, 504), allowed_methods=["GET"])
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    target = dest / name
    try:
        with session.get(src.url, stream=True, timeout=(10, 120)) as resp:
            if resp.status_code >= 400:
                raise StepError(f"{shown}: server answered HTTP {resp.status_code}; check the URL and access rights")
            with open(target, "wb") as fh:
                for chunk in resp.iter_content(chunk_size=1 << 20):
                    fh.write(chunk)
    except requests.exceptions.RetryError as exc:
        raise StepError(f"{shown}: server kept failing ({exc.__class__.__name__}); try again later") from None
    except requests.exceptions.ConnectionError:
        raise StepError(f"{shown}: cannot connect; check the host and port, and that the server is reachable") from None
    except requests.exceptions.Timeout:
        raise StepError(f"{shown}: timed out; check that the server is reachable") from None
    return [target]


def s3_client():  # noqa: ANN201 - boto3 client types are generated at run time
    """A boto3 S3 client from the s3-secret env vars; custom endpoints (MinIO, Ceph) from AWS_ENDPOINT_URL[_S3]."""
    import boto3
    from botocore.config import Config

    key_id = os.environ.get("AWS_ACCESS_KEY_ID", "").strip()
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "").strip()
    if not key_id or not secret:
        missing = [n for n, v in (("AWS_ACCESS_KEY_ID", key_id), ("AWS_SECRET_ACCESS_KEY", secret)) if not v]
        raise StepError(
            f"s3:// source needs credentials: {' and '.join(missing)} not set; create the s3-secret secret "
            "with keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    config = Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=10, read_timeout=120,
                    s3={"addressing_style": "path"} if endpoint else None)
    return boto3.client("s3", aws_access_key_id=key_id, aws_secret_access_key=secret,
                        aws_session_token=os.environ.get("AWS_SESSION_TOKEN") or None,
                        endpoint_url=endpoint, region_name=region, config=config)


def _s3_keys(client, src: S3Source) -> Iterator[str]:  # noqa: ANN001
    from botocore.exceptions import ClientError

    if src.key and not src.key.endswith("/"):
        try:
            client.head_object(Bucket=src.bucket, Key=src.key)
            yield src.key
            return
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
    prefix = src.key if not src.key or src.key.endswith("/") else src.key + "/"
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=src.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            yield obj["Key"]


def fetch_s3(src: S3Source, dest: Path) -> list[Path]:
    """Download the object, or every data file under the prefix, into ``dest``."""
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

    shown = f"s3://{src.bucket}/{src.key}"
    client = s3_client()
    try:
        keys = sorted(k for k in _s3_keys(client, src) if not k.endswith("/"))
        data_keys = [k for k in keys if has_data_suffix(k) or k == src.key]
        if not data_keys:
            found = f" (found: {', '.join(keys[:5])})" if keys else ""
            raise StepError(f"{shown}: no data files ({', '.join(DATA_SUFFIXES)}) at that key or prefix{found}")
        out = []
        for i, key in enumerate(data_keys):
            target = dest / f"{i:05d}-{posixpath.basename(key)}"
            client.download_file(src.bucket, key, str(target))
            out.append(target)
        return out
    except EndpointConnectionError:
        raise StepError(f"{shown}: cannot reach the S3 endpoint; check AWS_ENDPOINT_URL and the network") from None
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        hint = {
            "NoSuchBucket": "the bucket does not exist",
            "AccessDenied": "access denied; check the keys in the s3-secret secret",
            "InvalidAccessKeyId": "the access key is not known; check the s3-secret secret",
            "SignatureDoesNotMatch": "the secret key is wrong; check the s3-secret secret",
            "403": "access denied; check the keys in the s3-secret secret",
        }.get(code, f"S3 error {code}")
        raise StepError(f"{shown}: {hint}") from None
    except BotoCoreError as exc:
        raise StepError(f"{shown}: S3 client error: {exc.__class__.__name__}") from None

