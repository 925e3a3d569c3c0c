"""URI parsing (no I/O) and secret redaction."""

import pytest

from steps.common.errors import StepError
from steps.common.secrets import redact_uri, scrub
from steps.dataset.sources import HfSource, HttpSource, LocalSource, PvcSource, S3Source, parse_source


@pytest.mark.parametrize(("uri", "expected"), [
    ("hf://LipengCS/Table-GPT:All", HfSource("LipengCS/Table-GPT", "All")),
    ("hf://org/name", HfSource("org/name", None)),
    ("hf://datasets/org/name:a:b", HfSource("org/name", "a:b")),
    ("  org/name  ", HfSource("org/name", None)),
    ("org/name:cfg", HfSource("org/name", "cfg")),
    ("s3://bucket/path/to/x.jsonl", S3Source("bucket", "path/to/x.jsonl")),
    ("s3://bucket", S3Source("bucket", "")),
    ("https://host/x.jsonl", HttpSource("https://host/x.jsonl")),
    ("HTTP://host/x.jsonl", HttpSource("HTTP://host/x.jsonl")),
    ("pvc://data/x.parquet", PvcSource("data/x.parquet")),
    ("pvc://a/../b.jsonl", PvcSource("a/../b.jsonl")),
    ("file:///data/x%20y.csv", LocalSource("/data/x y.csv")),
    ("/abs/x.jsonl", LocalSource("/abs/x.jsonl")),
])
def test_parse_source(uri: str, expected: object) -> None:
    assert parse_source(uri) == expected


@pytest.mark.parametrize(("uri", "message"), [
    ("", "dataset URI is empty"),
    ("ftp://x/y", "unknown scheme ftp://"),
    ("s3:///key", "has no bucket"),
    ("https:///nohost", "URL has no host"),
    ("pvc://", "relative to the workspace volume"),
    ("pvc://a/../../b", "escapes the volume"),
    ("file://relative/x", "need an absolute path"),
    ("hf://bad name", "not a dataset id"),
    ("just words", "is not a dataset URI"),
])
def test_parse_source_rejects(uri: str, message: str) -> None:
    with pytest.raises(StepError, match=message):
        parse_source(uri)


def test_relative_data_file_is_local() -> None:
    src = parse_source("data/train.jsonl")
    assert isinstance(src, LocalSource) and src.path.endswith("/data/train.jsonl") and src.path.startswith("/")


def test_redact_uri_hides_credentials_and_signatures() -> None:
    assert redact_uri("https://u:p4ss@host:8443/x.jsonl?a=1&X-Amz-Signature=zzz&token=t") == (
        "https://***@host:8443/x.jsonl?a=1&X-Amz-Signature=***&token=***")
    assert redact_uri("s3://bucket/key") == "s3://bucket/key"
    assert redact_uri("/plain/path") == "/plain/path"


def test_scrub_masks_secret_env_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefgh")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI")
    assert scrub("token hf_abcdefgh and wJalrXUtnFEMI, extra xyz123", extra=("xyz123",)) == (
        "token *** and ***, extra ***")
