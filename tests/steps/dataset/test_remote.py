"""Remote sources stream through validation into the splits: no staged copy, resume after a dropped
connection (Range from the byte reached), identical outputs, clear errors, ranged Parquet reads."""

import gzip
import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from steps.common.errors import StepError
from steps.dataset import prepare_dataset, remote
from tests.moto_s3 import moto_server
from tests.steps.dataset.servers import CuttingProxy, RangeServer
from tests.tiny_assets import chat_rows

ROWS = chat_rows(3000)  # ~0.5 MB of JSONL: several read-ahead chunks when CHUNK is small


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small network reads and no backoff, so a small object spans many reads and retries are quick."""
    monkeypatch.setattr(remote, "CHUNK", 16 << 10)
    monkeypatch.setattr(remote, "BACKOFF_S", (0.0,) * 6)


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _digest(ws: Path) -> dict[str, str]:
    return {s: hashlib.sha256((ws / "dataset" / f"{s}.jsonl").read_bytes()).hexdigest() for s in ("train", "eval")}


def _summary(ws: Path) -> dict:
    return json.loads((ws / "dataset" / "summary.json").read_text())


@pytest.fixture()
def reference(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The data as a local file, and the digests of its splits when read from disk."""
    src = tmp_path / "data" / "chat.jsonl"
    src.parent.mkdir()
    src.write_bytes(_jsonl(ROWS))
    ws = tmp_path / "ws-local"
    prepare_dataset(str(src), str(ws), split=0.85, seed=5)
    return src, _digest(ws)


@pytest.fixture()
def clean_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TMPDIR points at an empty folder, which must stay empty (nothing is staged on disk)."""
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def _only_outputs(ws: Path, clean_tmp: Path) -> None:
    assert sorted(p.name for p in (ws / "dataset").iterdir()) == ["eval.jsonl", "summary.json", "train.jsonl"]
    assert list(clean_tmp.iterdir()) == []


# --- HTTP -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("drops", [[], [100_000], [1, 70_000, 70_000, 200_000]])
def test_http_stream_resumes_after_drops_with_identical_outputs(reference: tuple[Path, dict[str, str]],
                                                                 tmp_path: Path, clean_tmp: Path,
                                                                 drops: list[int]) -> None:
    src, digests = reference
    server = RangeServer(src.parent, drops=drops).start()
    ws = tmp_path / "ws"
    prepare_dataset(f"{server.url}/chat.jsonl", str(ws), split=0.85, seed=5)
    assert _digest(ws) == digests
    assert _summary(ws)["resumed_connections"] == len(drops)
    # every resume asked for the bytes from where the last connection stopped, pinned to the version seen
    offsets = [0, *itertools_accumulate(drops)]
    assert [r for _, r, _ in server.log] == [None] + [f"bytes={o}-" for o in offsets[1:]]
    _only_outputs(ws, clean_tmp)
    if drops:
        assert "resumed" in (ws / "pipeline_log.txt").read_text()


def itertools_accumulate(values: list[int]) -> list[int]:
    import itertools

    return list(itertools.accumulate(values))


def test_http_gzip_json_array_and_csv_stream(tmp_path: Path, clean_tmp: Path) -> None:
    root = tmp_path / "www"
    root.mkdir()
    (root / "a.jsonl.gz").write_bytes(gzip.compress(_jsonl(ROWS[:500])) + gzip.compress(_jsonl(ROWS[500:800])))
    (root / "b.json").write_text(json.dumps({"version": 2, "meta": {"x": [1]}, "data": ROWS[:300]}))
    (root / "c.csv").write_text("id,messages\n" + "".join(
        f'{i},"{json.dumps(r["messages"]).replace(chr(34), chr(34) * 2)}"\n' for i, r in enumerate(ROWS[:40])))
    server = RangeServer(root, drops=[5_000]).start()
    for name, n in (("a.jsonl.gz", 800), ("b.json", 300), ("c.csv", 40)):
        ws = tmp_path / f"ws-{name}"
        result = prepare_dataset(f"{server.url}/{name}", str(ws), split=0.9)
        assert result["train_rows"] + result["eval_rows"] == n
        out = [json.loads(x) for x in (ws / "dataset" / "train.jsonl").read_text().splitlines()]
        out += [json.loads(x) for x in (ws / "dataset" / "eval.jsonl").read_text().splitlines()]
        assert sorted(json.dumps(r) for r in out) == sorted(json.dumps({"messages": r["messages"]}) for r in ROWS[:n])
        _only_outputs(ws, clean_tmp)


def test_http_without_range_support_still_resumes(reference: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    src, digests = reference
    server = RangeServer(src.parent, drops=[123_457], ranges=False).start()
    ws = tmp_path / "ws"
    prepare_dataset(f"{server.url}/chat.jsonl", str(ws), split=0.85, seed=5)
    assert _digest(ws) == digests
    assert [status for *_, status in server.log] == [200, 200]  # the server sent it all again; we skipped ahead


def test_http_gives_up_after_bounded_attempts_and_leaves_nothing(reference: tuple[Path, dict[str, str]],
                                                                  tmp_path: Path) -> None:
    src, _ = reference
    server = RangeServer(src.parent, drops=[50_000] + [0] * remote.RESUMES).start()
    ws = tmp_path / "ws"
    with pytest.raises(StepError) as err:
        prepare_dataset(f"{server.url}/chat.jsonl?token=s3cr3tvalue", str(ws), split=0.85, seed=5)
    text = str(err.value)
    assert "\n" not in text and "connection dropped at byte 50,000 of" in text and "5 resumes from there failed" in text
    assert "s3cr3tvalue" not in text and "token=***" in text
    assert len(server.log) == 1 + remote.RESUMES  # bounded: the first GET, then RESUMES resumes
    assert sorted(p.name for p in (ws / "dataset").iterdir()) == []


def test_http_file_replaced_mid_read_is_refused(reference: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    src, _ = reference
    server = RangeServer(src.parent, drops=[80_000]).start()
    original = server.next_drop

    def drop_then_replace() -> int | None:
        drop = original()
        if drop is not None:  # this GET is cut; a new version of the file replaces it before the resume
            new = src.with_suffix(".new")
            new.write_bytes(_jsonl(ROWS[::-1]))
            os.utime(new, ns=(1, 1))
            os.replace(new, src)
        return drop

    server.next_drop = drop_then_replace  # type: ignore[method-assign]
    ws = tmp_path / "ws"
    with pytest.raises(StepError, match="chat.jsonl: the file changed on the server while it was read; run again"):
        prepare_dataset(f"{server.url}/chat.jsonl", str(ws))
    assert sorted(p.name for p in (ws / "dataset").iterdir()) == []


def test_subset_stops_reading_and_closes_a_stalled_connection(reference: tuple[Path, dict[str, str]],
                                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    src, _ = reference
    # the server sends 3 chunks and a few bytes, then the network stalls for a minute: the rows needed are in the
    # first chunk, and the read-ahead thread is by then blocked on the socket, waiting for the 4th chunk
    assert len(_jsonl(ROWS[:100])) < remote.CHUNK
    server = RangeServer(src.parent, stall_after=3 * remote.CHUNK + 100).start()
    real_close = remote.ResumingStream.close

    def close_once_blocked(self: remote.ResumingStream) -> None:
        server.stalling.wait(5)
        time.sleep(0.2)  # the read-ahead thread has taken what was sent and waits on the socket
        real_close(self)

    monkeypatch.setattr(remote.ResumingStream, "close", close_once_blocked)
    try:
        started = time.monotonic()
        result = prepare_dataset(f"{server.url}/chat.jsonl", str(tmp_path / "ws"), split=1.0, subset=100)
        assert result["train_rows"] == 100
        assert time.monotonic() - started < 10  # the blocked read was interrupted, not waited out
        assert not [t for t in threading.enumerate() if t.name.startswith("read-ahead") and t.is_alive()]
    finally:
        server.stalled.set()


@pytest.mark.parametrize("ranges", [True, False])
def test_http_parquet_is_read_with_ranged_gets(tmp_path: Path, ranges: bool) -> None:
    root = tmp_path / "www"
    root.mkdir()
    table = pa.Table.from_pylist([{"id": i, "messages": r["messages"]} for i, r in enumerate(ROWS[:2000])])
    pq.write_table(table, root / "rows.parquet", row_group_size=250, compression="none", use_dictionary=False)
    server = RangeServer(root, ranges=ranges).start()
    ws = tmp_path / "ws"
    result = prepare_dataset(f"{server.url}/rows.parquet", str(ws), split=1.0)
    assert result["train_rows"] == 2000
    out = [json.loads(x) for x in (ws / "dataset" / "train.jsonl").read_text().splitlines()]
    assert out == [{"messages": r["messages"]} for r in ROWS[:2000]]
    asked = [r for _, r, _ in server.log if r]
    assert len(asked) >= 5  # the footer, then pages of the messages column (64 KiB reads at least)
    if ranges:  # a server without Range support sends it all each time: slow, but still right
        size = (root / "rows.parquet").stat().st_size
        spans = [int(b) - int(a) + 1 for a, b in (r.removeprefix("bytes=").split("-") for r in asked)]
        assert max(spans) < size / 2


def test_bad_row_in_a_remote_file_names_file_and_line(tmp_path: Path) -> None:
    root = tmp_path / "www"
    root.mkdir()
    body = _jsonl(ROWS[:2000]) + b'{"messages": [{"role": "user", "content": "no answer"}]}\n' + _jsonl(ROWS[:10])
    (root / "big.jsonl").write_bytes(body)
    server = RangeServer(root).start()
    with pytest.raises(StepError, match=r"^big.jsonl line 2001: messages has no assistant turn"):
        prepare_dataset(f"{server.url}/big.jsonl", str(tmp_path / "ws"))


def test_http_404_is_one_clear_line(tmp_path: Path) -> None:
    server = RangeServer(tmp_path).start()
    with pytest.raises(StepError, match=r"/missing.jsonl: server answered HTTP 404; check the URL"):
        prepare_dataset(f"{server.url}/missing.jsonl", str(tmp_path / "ws"))


# --- S3 (moto server) -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture()
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-value-123456")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    if "stream" not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket="stream")
    return client


def _via_proxy(moto_endpoint: str, cuts: list[int | None], monkeypatch: pytest.MonkeyPatch) -> CuttingProxy:
    host, port = moto_endpoint.removeprefix("http://").split(":")
    proxy = CuttingProxy((host, int(port)), cuts)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    return proxy


def test_s3_stream_survives_dropped_connections_with_identical_outputs(
        s3, moto_endpoint: str, reference: tuple[Path, dict[str, str]], tmp_path: Path, clean_tmp: Path,  # noqa: ANN001
        monkeypatch: pytest.MonkeyPatch) -> None:
    src, digests = reference
    s3.put_object(Bucket="stream", Key="drop/chat.jsonl", Body=src.read_bytes())
    # moto closes each connection after one response: 1 = HEAD, 2 = GET cut mid-object, 3 = resume cut, 4 = rest
    proxy = _via_proxy(moto_endpoint, [None, 150_000, 90_000, None], monkeypatch)
    ws = tmp_path / "ws"
    prepare_dataset("s3://stream/drop/chat.jsonl", str(ws), split=0.85, seed=5)
    assert proxy.cut == 2
    assert _digest(ws) == digests
    summary = _summary(ws)
    assert summary["resumed_connections"] == 2 and summary["files"] == ["s3://stream/drop/chat.jsonl"]
    _only_outputs(ws, clean_tmp)
    log = (ws / "pipeline_log.txt").read_text()
    assert "secret-value-123456" not in log and "AKIAEXAMPLEKEY" not in log


def test_s3_gives_up_after_bounded_attempts(s3, moto_endpoint: str, reference: tuple[Path, dict[str, str]],  # noqa: ANN001
                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, _ = reference
    s3.put_object(Bucket="stream", Key="flaky/chat.jsonl", Body=src.read_bytes())
    # after a cut mid-object, every new connection is cut inside the response headers
    _via_proxy(moto_endpoint, [None, 100_000] + [50] * 60, monkeypatch)
    ws = tmp_path / "ws"
    with pytest.raises(StepError, match=r"^s3://stream/flaky/chat.jsonl: connection dropped at byte [\d,]+ of [\d,]+ "
                                        r"and 5 resumes from there failed too"):
        prepare_dataset("s3://stream/flaky/chat.jsonl", str(ws))
    assert sorted(p.name for p in (ws / "dataset").iterdir()) == []


def test_s3_object_replaced_mid_read_is_refused(s3, reference: tuple[Path, dict[str, str]], tmp_path: Path,  # noqa: ANN001
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from steps.dataset import sources

    src, _ = reference
    s3.put_object(Bucket="stream", Key="moving/chat.jsonl", Body=src.read_bytes())
    opened = sources._s3_object

    def replace_after_first_open(client, bucket, item):  # noqa: ANN001, ANN202
        obj = opened(client, bucket, item)
        first = obj.open_at

        def open_at(start: int, end: int | None):  # noqa: ANN202
            body = first(start, end)
            s3.put_object(Bucket="stream", Key="moving/chat.jsonl", Body=_jsonl(ROWS[::-1]))
            if start == 0:
                return _Dropping(body, 60_000)
            return body

        obj.open_at = open_at
        return obj

    monkeypatch.setattr(sources, "_s3_object", replace_after_first_open)
    with pytest.raises(StepError, match="s3://stream/moving/chat.jsonl: the object changed while it was read"):
        prepare_dataset("s3://stream/moving/chat.jsonl", str(tmp_path / "ws"))


class _Dropping:
    """A body that fails (like a dropped connection) after ``limit`` bytes."""

    def __init__(self, body, limit: int) -> None:  # noqa: ANN001
        self.body, self.left = body, limit

    def read(self, amt: int) -> bytes:
        if self.left <= 0:
            raise remote.Transient("ProtocolError")
        data = self.body.read(min(amt, self.left))
        self.left -= len(data)
        return data

    def close(self) -> None:
        self.body.close()


def test_s3_prefix_mixes_gzip_jsonl_and_parquet_read_by_ranges(s3, tmp_path: Path, clean_tmp: Path,  # noqa: ANN001
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    table = pa.Table.from_pylist([{"messages": r["messages"], "id": i} for i, r in enumerate(ROWS[:2000])])
    pq_path = tmp_path / "rows.parquet"
    pq.write_table(table, pq_path, row_group_size=250, compression="none", use_dictionary=False)  # 8 row groups
    s3.put_object(Bucket="stream", Key="mixed/a.jsonl.gz", Body=gzip.compress(_jsonl(ROWS[2000:2500])))
    s3.put_object(Bucket="stream", Key="mixed/b.parquet", Body=pq_path.read_bytes())
    s3.put_object(Bucket="stream", Key="mixed/notes.txt", Body=b"not data")
    ranges: list[str] = []
    real = remote.RangedFile._fetch

    def spy(self, start: int, end: int) -> bytes:  # noqa: ANN001
        ranges.append(f"{start}-{end}")
        return real(self, start, end)

    monkeypatch.setattr(remote.RangedFile, "_fetch", spy)
    monkeypatch.setattr(remote.RangedFile, "MIN_READ", 1024)
    ws = tmp_path / "ws"
    result = prepare_dataset("s3://stream/mixed/", str(ws), split=1.0)
    assert result["train_rows"] == 2500
    out = [json.loads(x) for x in (ws / "dataset" / "train.jsonl").read_text().splitlines()]
    assert out == [{"messages": r["messages"]} for r in ROWS[2000:2500] + ROWS[:2000]]  # key order, row order
    summary = _summary(ws)
    assert summary["formats"] == ["jsonl", "parquet"]
    assert summary["files"] == ["s3://stream/mixed/a.jsonl.gz", "s3://stream/mixed/b.parquet"]
    size = pq_path.stat().st_size
    spans = [int(r.split("-")[1]) - int(r.split("-")[0]) + 1 for r in ranges]
    # the footer first, then the messages column one row group at a time: never the whole file in one read
    assert ranges[0].endswith(f"-{size - 1}") and len(ranges) >= 9 and max(spans[1:]) < size / 8
    _only_outputs(ws, clean_tmp)


# --- how long validation waited ---------------------------------------------------------------------------------


def test_summary_says_how_long_validation_waited_for_the_network(reference: tuple[Path, dict[str, str]],
                                                                   tmp_path: Path) -> None:
    src, digests = reference
    server = RangeServer(src.parent, body_delay_s=0.4).start()
    ws = tmp_path / "ws"
    prepare_dataset(f"{server.url}/chat.jsonl", str(ws), split=0.85, seed=5)
    assert _digest(ws) == digests
    waits = _summary(ws)["waits_s"]
    assert 0.3 <= waits["first_byte"] < 10, waits  # the server held the body back 0.4 s after the headers
    assert re.search(r"validation waited 0\.[3-9] s for the first byte", (ws / "pipeline_log.txt").read_text())
    assert waits["network"] >= 0 and waits["writing"] >= 0
    local = _summary(tmp_path / "ws-local")["waits_s"]
    assert local["first_byte"] == 0 and local["network"] == 0, local  # a local file has no network to wait for
    assert "validation waited" not in (tmp_path / "ws-local" / "pipeline_log.txt").read_text()


def test_rows_stream_with_a_short_switch_interval_put_back_after(reference: tuple[Path, dict[str, str]],
                                                                   tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The read-ahead and writer threads take the GIL back within 0.1 ms while rows stream (not CPython's 5 ms,
    which left validation waiting on them: steps/common/threads.py); the interval is put back, also on failure."""
    import sys

    import steps.dataset as dataset_step
    from steps.common.threads import HANDOFF_S

    src, _ = reference
    seen: list[float] = []
    stream_rows = dataset_step._stream_rows

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        seen.append(sys.getswitchinterval())
        return stream_rows(*args, **kwargs)

    monkeypatch.setattr(dataset_step, "_stream_rows", spy)
    before = sys.getswitchinterval()
    server = RangeServer(src.parent).start()
    prepare_dataset(f"{server.url}/chat.jsonl", str(tmp_path / "ws"), split=0.85, seed=5)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    with pytest.raises(StepError, match="no assistant turn"):
        prepare_dataset(str(bad), str(tmp_path / "ws-bad"))
    assert seen == [pytest.approx(min(before, HANDOFF_S), rel=0.05)] * 2
    assert sys.getswitchinterval() == before
