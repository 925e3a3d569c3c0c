"""One S3 client factory and one botocore-error mapper for every step that talks to S3.

Readers (the dataset step's sources), writers (publish) and the lineage store build their client here, from
the ``s3-secret`` env vars (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, optional ``AWS_SESSION_TOKEN``)
and ``AWS_ENDPOINT_URL[_S3]`` for MinIO, Ceph RGW or ODF (path-style addressing then). The client is made
with botocore itself: boto3's extras (s3transfer) cost 0.15 s to import and only publishing uploads with them.
Errors become one line naming what failed and the fix, with hints for reading or for writing.
"""

import contextlib
import os
from collections.abc import Iterator, Mapping

from steps.common.errors import StepError

_CREDENTIALS = "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"
_CHANGED = "the object changed while it was read; run again"
READ_HINTS = {
    "NoSuchBucket": "the bucket does not exist",
    "NoSuchKey": "the object is gone (deleted while it was read?)",
    "AccessDenied": "access denied; check the keys in the s3-secret secret",
    "403": "access denied; check the keys in the s3-secret secret",
    "InvalidAccessKeyId": "the access key is not known; check the s3-secret secret",
    "SignatureDoesNotMatch": "the secret key is wrong; check the s3-secret secret",
    "PreconditionFailed": _CHANGED,
    "412": _CHANGED,
}
WRITE_HINTS = {
    **READ_HINTS,
    "NoSuchBucket": "the bucket does not exist: create it, or fix phase_04_registry_opt_storage_uri",
    "AccessDenied": "access denied: the keys in the s3-secret secret may not write to this bucket/prefix",
    "403": "access denied: the keys in the s3-secret secret may not write to this bucket/prefix",
}


def s3_client(purpose: str, *, read_timeout: int = 60, max_attempts: int | None = None,
              max_pool_connections: int = 10):  # noqa: ANN201 - botocore client types are generated at run time
    """An S3 client for ``purpose`` (it names the use in the missing-credentials error, e.g. "s3:// source").

    ``max_attempts`` bounds the tries of each request, the first included (default ``AWS_MAX_ATTEMPTS``, as the AWS
    SDKs read it, else 5)."""
    import botocore.session
    from botocore.config import Config

    key_id, secret = (os.environ.get(name, "").strip() for name in _CREDENTIALS)
    if not key_id or not secret:
        missing = [n for n, v in zip(_CREDENTIALS, (key_id, secret), strict=True) if not v]
        raise StepError(f"{purpose} needs credentials: {' and '.join(missing)} not set; create the s3-secret "
                        "secret with keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    if max_attempts is None:
        try:
            max_attempts = max(1, int(os.environ.get("AWS_MAX_ATTEMPTS", "5")))
        except ValueError:
            max_attempts = 5
    config = Config(retries={"total_max_attempts": max_attempts, "mode": "standard"}, connect_timeout=10,
                    read_timeout=read_timeout, max_pool_connections=max_pool_connections,
                    s3={"addressing_style": "path"} if endpoint else None)
    return botocore.session.get_session().create_client(
        "s3", aws_access_key_id=key_id, aws_secret_access_key=secret,
        aws_session_token=os.environ.get("AWS_SESSION_TOKEN") or None, endpoint_url=endpoint, region_name=region,
        config=config)


@contextlib.contextmanager
def s3_errors(what: str, hints: Mapping[str, str] = READ_HINTS) -> Iterator[None]:
    """botocore (and s3transfer) errors as one-line StepErrors: ``what`` failed, and the hint for the code."""
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

    try:
        yield
    except StepError:
        raise
    except EndpointConnectionError:
        raise StepError(f"{what}: cannot reach the S3 endpoint; check AWS_ENDPOINT_URL and the network") from None
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise StepError(f"{what}: {hints.get(code, f'S3 error {code}')}") from None
    except (BotoCoreError, OSError) as exc:
        text = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise StepError(f"{what}: S3 client error: {type(exc).__name__}{': ' + text if text else ''}") from None


def not_found(exc: Exception) -> bool:
    """Whether ``exc`` is S3's "no such key" (404 on HEAD, NoSuchKey on GET)."""
    from botocore.exceptions import ClientError

    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey",
                                                                                          "NotFound")
