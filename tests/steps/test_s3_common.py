"""steps/common/s3.py: the one S3 client factory and error mapper of the dataset, publish and lineage steps."""

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from steps.common.errors import StepError
from steps.common.s3 import READ_HINTS, WRITE_HINTS, not_found, s3_client, s3_errors


def _client_error(code: str, status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "GetObject")


@pytest.mark.parametrize("purpose", ["s3:// source", "publishing to s3://", "the lineage store on s3://"])
def test_missing_keys_name_the_use_and_the_secret(purpose: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    with pytest.raises(StepError) as err:
        s3_client(purpose)
    assert str(err.value) == (f"{purpose} needs credentials: AWS_SECRET_ACCESS_KEY not set; create the s3-secret "
                              "secret with keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")


def test_a_custom_endpoint_gets_path_style_and_the_retry_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    client = s3_client("s3:// source")
    assert client.meta.endpoint_url == "http://127.0.0.1:9"
    assert client.meta.config.s3 == {"addressing_style": "path"}
    assert client.meta.config.retries["total_max_attempts"] == 3
    assert s3_client("s3:// source", max_attempts=4, read_timeout=7).meta.config.read_timeout == 7


@pytest.mark.parametrize(("hints", "expected"), [(READ_HINTS, "the bucket does not exist"),
                                                 (WRITE_HINTS, "the bucket does not exist: create it")])
def test_error_codes_become_one_line_with_the_fix(hints: dict[str, str], expected: str) -> None:
    with pytest.raises(StepError, match=f"^reading s3://b/k: {expected}"), s3_errors("reading s3://b/k", hints):
        raise _client_error("NoSuchBucket", 404)
    with pytest.raises(StepError, match="^reading s3://b/k: S3 error SlowDown$"), s3_errors("reading s3://b/k"):
        raise _client_error("SlowDown", 503)


def test_connection_and_client_errors_say_what_failed() -> None:
    with pytest.raises(StepError, match="cannot reach the S3 endpoint; check AWS_ENDPOINT_URL"), s3_errors("x"):
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")
    with pytest.raises(StepError, match=r"^x: S3 client error: ReadTimeoutError: Read timeout on endpoint"), \
            s3_errors("x"):
        raise ReadTimeoutError(endpoint_url="http://127.0.0.1:9")
    with pytest.raises(StepError, match="^already one line$"), s3_errors("x"):
        raise StepError("already one line")


def test_not_found_is_a_missing_key_only() -> None:
    assert not_found(_client_error("NoSuchKey", 404)) and not_found(_client_error("404", 404))
    assert not not_found(_client_error("AccessDenied", 403)) and not not_found(ValueError("404"))
