"""Stream rows out of JSONL (plain or gzip), JSON, Parquet and CSV, from local files or remote objects.

Every file is read once, front to back, in chunks (local: 4 MiB reads; remote: the read-ahead stream of
steps/dataset/remote.py), and gzip is inflated on the fly, so memory stays bounded whatever the file's
size and nothing is copied to disk. Parquet needs random access: a local file, or ranged GETs that read
the footer and then one row group at a time.

Each reader yields batches ``(positions, payloads)``: a payload is the raw bytes of one JSON document
(JSONL; blank lines are kept in the batch for the caller to skip, so positions stay consecutive) or an
already-decoded dict (other formats); positions are 1-based lines (JSONL, CSV) or record numbers, for
error messages: ``positions`` is the first one (the rest follow on) or a list of them.
"""

import csv
import io
import itertools
import sys
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from steps.common.errors import StepError
from steps.dataset.remote import RangedFile, RemoteObject, ResumingStream

FORMATS = ("jsonl", "json", "parquet", "csv")
Payload = bytes | dict[str, Any]
Batch = tuple[int | list[int], list[Payload]]
_BATCH = 2048  # rows per batch for the decoded formats
_PARQUET_BUFFER = 8 << 20
CHAT_COLUMNS = ("messages", "conversations")  # the columns a row is read from (steps/dataset/chat_format.py)
_LOCAL_CHUNK = 4 << 20
_INFLATE_MAX = 8 << 20  # most bytes one inflate call may return (a gzip bomb stays bounded)
_HEAD = 4096


@dataclass
class DataFile:
    """One input file, local or remote: how to read it front to back, and (for Parquet) at random."""

    name: str  # names the file in messages and the summary
    size: int | None
    chunks: Callable[[], Iterator[bytes]]  # the raw bytes, front to back
    open_random: Callable[[], BinaryIO]  # a seekable file (Parquet)
    stream: ResumingStream | None = None  # the last remote stream opened (its resume count)


def local_file(path: Path) -> DataFile:
    """A local file, read in 4 MiB chunks."""

    def chunks() -> Iterator[bytes]:
        with open(path, "rb", buffering=0) as fh:
            while chunk := fh.read(_LOCAL_CHUNK):
                yield chunk

    return DataFile(path.name, path.stat().st_size, chunks, lambda: open(path, "rb"))


def remote_file(obj: RemoteObject) -> DataFile:
    """A remote object, streamed with read-ahead (or read with ranged GETs, for Parquet)."""
    df = DataFile(obj.name, obj.size, lambda: iter(()), lambda: RangedFile(obj))

    def chunks() -> Iterator[bytes]:
        stream = df.stream = ResumingStream(obj)
        try:
            while chunk := stream.read_chunk():
                yield chunk
        finally:
            stream.close()

    df.chunks = chunks
    return df


# --- bytes: gzip and the first bytes, for sniffing ------------------------------------------------------------


def _inflate(name: str, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Gunzip a stream of chunks (several gzip members too, zero padding after them), in bounded pieces."""
    d = None  # the current member's decompressor; None between members
    try:
        for chunk in chunks:
            data = chunk
            while data:
                if d is None:
                    if not data.strip(b"\x00"):
                        break  # zero padding after the last member
                    d = zlib.decompressobj(31)
                out = d.decompress(data, _INFLATE_MAX)
                if out:
                    yield out
                if d.eof:
                    data, d = d.unused_data, None
                else:
                    data = d.unconsumed_tail
        if d is not None:
            if tail := d.flush():
                yield tail
            if not d.eof:
                raise StepError(f"{name}: gzip data ends early (a truncated file?); upload the whole file again")
    except zlib.error as exc:
        raise StepError(f"{name}: not valid gzip ({exc}); fix or re-compress the file") from None


def _with_head(chunks: Iterator[bytes], size: int = _HEAD) -> tuple[bytes, Iterator[bytes]]:
    """The first ``size`` bytes (fewer at the end) and an iterator over all the bytes, head included."""
    taken: list[bytes] = []
    got = 0
    for chunk in chunks:
        taken.append(chunk)
        got += len(chunk)
        if got >= size:
            break
    head = b"".join(taken)[:size]
    return head, itertools.chain(taken, chunks)


class _ChunkFile(io.RawIOBase):
    """A read-only file over an iterator of chunks (for ijson and csv)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self.chunks = chunks
        self.pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # noqa: ANN001 - a writable buffer
        while not len(self.pending):
            chunk = next(self.chunks, None)
            if chunk is None:
                return 0
            self.pending = memoryview(chunk)
        n = min(len(buf), len(self.pending))
        buf[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


# --- formats --------------------------------------------------------------------------------------------------


def detect_format(name: str, head: bytes) -> str:
    """The format from the name's suffix (``.gz`` aside), else from the first bytes (already gunzipped)."""
    lower = name.lower().removesuffix(".gz")
    for suffix, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json"),
                        (".parquet", "parquet"), (".csv", "csv")):
        if lower.endswith(suffix):
            return fmt
    if head.startswith(b"PAR1"):
        return "parquet"
    start = head.lstrip()
    if start.startswith(b"["):
        return "json"
    if start.startswith(b"{"):
        return "jsonl" if _first_line_is_document(start) else "json"
    raise StepError(f"{name}: unknown data format; use .jsonl, .json, .parquet or .csv (optionally .gz)")


def _first_line_is_document(head: bytes) -> bool:
    import msgspec

    line = head.split(b"\n", 1)[0]
    try:
        msgspec.json.decode(line)
    except msgspec.DecodeError:
        return False
    return True


def jsonl_rows(chunks: Iterable[bytes]) -> Iterator[Batch]:
    """The lines of each chunk, blank ones included, numbered from 1; a line may span any number of chunks."""
    lineno = 1
    rest: list[bytes] = []
    for chunk in chunks:
        if b"\n" not in chunk:
            rest.append(chunk)
            continue
        lines = chunk.split(b"\n")
        if rest:
            rest.append(lines[0])
            lines[0] = b"".join(rest)
        rest = [lines.pop()]
        yield lineno, lines
        lineno += len(lines)
    last = b"".join(rest)
    if last:
        yield lineno, [last]


def batched(items: Iterable[Payload], first: int = 1) -> Iterator[Batch]:
    it = iter(items)
    while batch := list(itertools.islice(it, _BATCH)):
        yield first, batch
        first += len(batch)


def json_rows(name: str, chunks: Iterator[bytes], head: bytes) -> Iterator[Batch]:
    """A top-level array of rows, or an object holding one array of rows (``{"data": [...]}``), in one pass."""
    import ijson

    fh = io.BufferedReader(_ChunkFile(chunks), 1 << 20)
    try:
        events = ijson.parse(fh, use_float=True)
        prefix = "item"
        if head.lstrip().startswith(b"{"):
            key, found = None, None
            for pfx, event, value in events:
                if pfx == "" and event == "map_key":
                    key = value
                elif pfx == key and event == "start_array":
                    found = (pfx, event, value)
                    break
            if found is None:
                raise StepError(f"{name}: JSON object holds no list of rows; use a JSON array or JSON Lines")
            prefix = f"{key}.item"
            events = itertools.chain([found], events)
        yield from batched(ijson.items(events, prefix))
    except ijson.JSONError as exc:
        raise StepError(f"{name}: not valid JSON ({exc}); fix the file or use JSON Lines") from None


def csv_rows(chunks: Iterator[bytes]) -> Iterator[Batch]:
    """Rows as dicts; a record may span lines, so each batch carries its records' line numbers."""
    csv.field_size_limit(sys.maxsize)
    raw = io.BufferedReader(_ChunkFile(chunks), 1 << 20)
    with io.TextIOWrapper(raw, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        while True:
            lines, rows = [], []
            for obj in itertools.islice(reader, _BATCH):
                lines.append(reader.line_num)
                rows.append(obj)
            if not rows:
                return
            yield lines, rows


def parquet_rows(name: str, fh: BinaryIO) -> Iterator[Batch]:
    """Rows of a Parquet file, page by page (reads of at most 8 MiB, ranged GETs when remote): only the chat
    columns are read when the file has them, so memory does not grow with row groups or extra columns."""
    import pyarrow.parquet as pq

    with fh:
        try:
            pf = pq.ParquetFile(fh, pre_buffer=False, buffer_size=_PARQUET_BUFFER)
        except StepError:
            raise
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise StepError(f"{name}: not a readable Parquet file ({exc.__class__.__name__})") from None
        columns = [c for c in CHAT_COLUMNS if c in pf.schema_arrow.names] or None
        first = 1
        for batch in pf.iter_batches(batch_size=_BATCH, columns=columns):
            rows = batch.to_pylist()
            yield first, rows
            first += len(rows)


def read_rows(df: DataFile) -> tuple[str, Iterator[Batch]]:
    """The format of ``df`` and an iterator over its rows; the file is opened (and sniffed) now."""
    if df.size == 0:
        raise StepError(f"{df.name}: file is empty; point the dataset URI at a file with chat rows")
    if df.name.lower().endswith(".parquet"):
        return "parquet", parquet_rows(df.name, df.open_random())
    source = df.chunks()
    try:
        magic, raw = _with_head(source, 4)
        gz = magic.startswith(b"\x1f\x8b")
        if magic.startswith(b"PAR1"):
            source.close()  # Parquet is read with random access instead
            return "parquet", parquet_rows(df.name, df.open_random())
        head, data = _with_head(_inflate(df.name, raw) if gz else raw)
        if not head:
            raise StepError(f"{df.name}: file is empty; point the dataset URI at a file with chat rows")
        fmt = detect_format(df.name, head)
        if fmt == "parquet":
            raise StepError(f"{df.name}: a gzip'd Parquet file cannot be read; upload the .parquet file itself")
        if fmt == "json" and head.lstrip().startswith(b"{") and _first_line_is_document(head.lstrip()):
            fmt = "jsonl"  # a .json file that is really JSON Lines
        rows = {"jsonl": lambda: jsonl_rows(data), "csv": lambda: csv_rows(data),
                "json": lambda: json_rows(df.name, data, head)}[fmt]()
    except BaseException:
        source.close()
        raise
    return fmt, _closing(rows, source)


def _closing(rows: Iterator[Batch], source: Generator[bytes, None, None]) -> Iterator[Batch]:
    """``rows``, then close ``source`` (which stops a remote read-ahead thread), also when abandoned early."""
    try:
        yield from rows
    finally:
        source.close()
