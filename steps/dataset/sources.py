"""Dataset sources: parse a URI into a typed source (no I/O), then list its files or remote objects.

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
from steps.common.s3 import s3_client, s3_errors
from steps.common.secrets import redact_uri
from steps.dataset.remote import Body, RemoteObject, Transient, abort_response

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


# --- remote objects: opened as streams (steps/dataset/remote.py), never downloaded to disk -------------------

_HTTP_TIMEOUT = (10, 60)  # connect, read (seconds between bytes)


def _http_session():  # noqa: ANN202 - requests is imported lazily
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    session = requests.Session()
    retry = Retry(total=3, backoff_factor=0.5, status_forcelist=(429, 500, 502, 503, 504), allowed_methods=["GET"],
                  raise_on_status=False)
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    return session


class _HttpBody:
    """A response body whose read errors are Transient (so the stream resumes)."""

    def __init__(self, resp) -> None:  # noqa: ANN001 - requests.Response
        self.resp = resp

    def read(self, amt: int) -> bytes:
        import requests
        import urllib3

        try:
            return self.resp.raw.read(amt, decode_content=False)
        except (urllib3.exceptions.HTTPError, requests.exceptions.RequestException, OSError) as exc:
            raise Transient(f"{exc.__class__.__name__}") from None

    def close(self) -> None:
        self.resp.close()

    def abort(self) -> None:
        abort_response(self.resp.raw)


class _SkipBody:
    """A body of a server that ignores Range: the first ``skip`` bytes are read and dropped."""

    def __init__(self, body: _HttpBody, skip: int) -> None:
        self.body, self.skip = body, skip

    def read(self, amt: int) -> bytes:
        while self.skip:
            dropped = self.body.read(min(self.skip, 1 << 20))
            if not dropped:
                return b""
            self.skip -= len(dropped)
        return self.body.read(amt)

    def close(self) -> None:
        self.body.close()

    def abort(self) -> None:
        self.body.abort()


def _validator(resp) -> str | None:  # noqa: ANN001
    """The version of what the server sent (strong ETag, else Last-Modified), for If-Range."""
    etag = resp.headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return resp.headers.get("Last-Modified")


def http_object(src: HttpSource) -> RemoteObject:
    """Open the URL once (status, size and version checked now), as a RemoteObject that can resume."""
    import requests

    shown = redact_uri(src.url)
    name = Path(unquote(urlsplit(src.url).path)).name or "download"
    session = _http_session()
    first: dict[str, object] = {}

    def get(start: int, end: int | None):  # noqa: ANN202
        headers = {"Accept-Encoding": "identity"}
        ranged = start > 0 or end is not None
        if ranged:
            headers["Range"] = f"bytes={start}-{'' if end is None else end}"
            if first.get("validator"):
                headers["If-Range"] = str(first["validator"])
        try:
            resp = session.get(src.url, stream=True, timeout=_HTTP_TIMEOUT, headers=headers)
        except requests.exceptions.ConnectionError:
            if not first:
                raise StepError(f"{shown}: cannot connect; check the host and port, and that the server is "
                                "reachable") from None
            raise Transient("cannot reconnect") from None
        except requests.exceptions.Timeout:
            if not first:
                raise StepError(f"{shown}: timed out; check that the server is reachable") from None
            raise Transient("timed out") from None
        if resp.status_code in (429, 500, 502, 503, 504):
            resp.close()
            if not first:
                raise StepError(f"{shown}: server kept failing (HTTP {resp.status_code}); try again later")
            raise Transient(f"HTTP {resp.status_code}")
        if resp.status_code >= 400:
            resp.close()
            raise StepError(f"{shown}: server answered HTTP {resp.status_code}; check the URL and access rights")
        if first and _validator(resp) != first.get("validator"):
            resp.close()
            raise StepError(f"{shown}: the file changed on the server while it was read; run again")
        if resp.status_code == 206 and not resp.headers.get("Content-Range", "").startswith(f"bytes {start}-"):
            resp.close()
            raise StepError(f"{shown}: asked for bytes from {start}, the server sent "
                            f"{resp.headers.get('Content-Range', 'no Content-Range')}; check the server")
        body = _HttpBody(resp)
        if ranged and resp.status_code == 200:  # Range not supported: read from the start, drop what we have
            return _SkipBody(body, start) if end is None else _Slice(body, start, end)
        return body

    resp_body = get(0, None)
    resp = resp_body.resp  # type: ignore[union-attr]
    length = resp.headers.get("Content-Length")
    first["validator"] = _validator(resp)
    pending = [resp_body]

    def open_at(start: int, end: int | None) -> Body:
        if pending and start == 0 and end is None:
            return pending.pop()
        while pending:
            pending.pop().close()
        return get(start, end)

    return RemoteObject(name=name, size=int(length) if length and length.isdigit() else None, open_at=open_at,
                        shown=shown)


class _Slice(_SkipBody):
    """Bytes ``start..end`` of a body that starts at byte 0."""

    def __init__(self, body: _HttpBody, start: int, end: int) -> None:
        super().__init__(body, start)
        self.left = end - start + 1

    def read(self, amt: int) -> bytes:
        data = super().read(min(amt, self.left)) if self.left > 0 else b""
        self.left -= len(data)
        return data


@dataclass(frozen=True)
class _S3Key:
    key: str
    size: int
    etag: str | None
    modified_ns: int = 0  # LastModified (the since=last watermark)


def _ns(when) -> int:  # noqa: ANN001 - a datetime from botocore
    return int(when.timestamp() * 1e9) if when is not None else 0


def _s3_keys(client, src: S3Source) -> Iterator[_S3Key]:  # noqa: ANN001
    from botocore.exceptions import ClientError

    if src.key and not src.key.endswith("/"):
        try:
            head = client.head_object(Bucket=src.bucket, Key=src.key)
            yield _S3Key(src.key, head["ContentLength"], head.get("ETag"), _ns(head.get("LastModified")))
            return
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
    prefix = src.key if not src.key or src.key.endswith("/") else src.key + "/"
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=src.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            yield _S3Key(obj["Key"], obj["Size"], obj.get("ETag"), _ns(obj.get("LastModified")))


class _S3Body:
    """A GetObject body whose read errors are Transient (so the stream resumes).

    It reads the bytes as stored (no Content-Encoding decoding: gzip is sniffed and inflated later, and
    byte offsets stay those of the object for Range). Reading botocore's urllib3 response directly with
    ``decode_content=False`` skips a buffer copy per read: a third of the CPU of reading 1 GB.
    """

    def __init__(self, body) -> None:  # noqa: ANN001 - botocore StreamingBody
        self.body = body
        raw = getattr(body, "_raw_stream", None)  # botocore keeps the urllib3 response there
        self.raw = raw if hasattr(raw, "_fp_bytes_read") else None

    def read(self, amt: int) -> bytes:
        import urllib3
        from botocore.exceptions import BotoCoreError

        try:
            if self.raw is not None:
                return self.raw.read(amt, decode_content=False)
            return self.body.read(amt)
        except (BotoCoreError, urllib3.exceptions.HTTPError, OSError) as exc:
            raise Transient(exc.__class__.__name__) from None

    def close(self) -> None:
        self.body.close()

    def abort(self) -> None:
        abort_response(self.raw)


def _s3_object(client, bucket: str, item: _S3Key) -> RemoteObject:  # noqa: ANN001
    from botocore.exceptions import BotoCoreError, ClientError

    shown = f"s3://{bucket}/{item.key}"

    def open_at(start: int, end: int | None) -> Body:
        args: dict[str, str] = {"Bucket": bucket, "Key": item.key}
        if start > 0 or end is not None:
            args["Range"] = f"bytes={start}-{'' if end is None else end}"
        if item.etag:
            args["IfMatch"] = item.etag  # never splice two versions of the object
        with s3_errors(shown):
            try:
                return _S3Body(client.get_object(**args)["Body"])
            except ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if status >= 500 or status == 429:
                    raise Transient(f"HTTP {status}") from None
                raise
            except BotoCoreError as exc:
                if start == 0 and end is None:
                    raise
                raise Transient(exc.__class__.__name__) from None

    return RemoteObject(name=shown, size=item.size, open_at=open_at, shown=shown)


def s3_listing(src: S3Source) -> tuple[object, list[_S3Key]]:
    """(client, the object or every data file under the prefix in key order, with LastModified)."""
    shown = f"s3://{src.bucket}/{src.key}"
    client = s3_client("s3:// source", max_attempts=5)
    with s3_errors(shown):
        items = sorted((i for i in _s3_keys(client, src) if not i.key.endswith("/")), key=lambda i: i.key)
    data = [i for i in items if has_data_suffix(i.key) or i.key == src.key]
    if not data:
        found = f" (found: {', '.join(i.key for i in items[:5])})" if items else ""
        raise StepError(f"{shown}: no data files ({', '.join(DATA_SUFFIXES)}) at that key or prefix{found}")
    return client, data


def s3_objects(src: S3Source, keys: list[_S3Key] | None = None, client: object = None) -> list[RemoteObject]:
    """The object, or every data file under the prefix in key order (or just ``keys`` of that listing), as
    RemoteObjects (nothing downloaded)."""
    if keys is None or client is None:
        client, keys = s3_listing(src)
    return [_s3_object(client, src.bucket, i) for i in keys]
