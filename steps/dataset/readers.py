"""Stream rows out of JSONL (plain or gzip), JSON, Parquet and CSV files with bounded memory.

Each reader yields ``(position, payload)``: ``payload`` is the raw bytes of one JSON document
(JSONL) or an already-decoded dict (other formats); ``position`` is the 1-based line (JSONL, CSV)
or record number, for error messages.
"""

import csv
import gzip
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from steps.common.errors import StepError

FORMATS = ("jsonl", "json", "parquet", "csv")
Payload = bytes | dict[str, Any]


def _open(path: Path) -> BinaryIO:
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb", buffering=1 << 20)


def detect_format(path: Path) -> str:
    """The file's format from its suffix (``.gz`` aside), else from its first bytes."""
    name = path.name.lower().removesuffix(".gz")
    for suffix, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json"),
                        (".parquet", "parquet"), (".csv", "csv")):
        if name.endswith(suffix):
            return fmt
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head == b"PAR1":
        return "parquet"
    with _open(path) as fh:
        start = fh.read(4096).lstrip()
    if start.startswith(b"["):
        return "json"
    if start.startswith(b"{"):
        return "jsonl" if _first_line_is_document(start) else "json"
    raise StepError(f"{path.name}: unknown data format; use .jsonl, .json, .parquet or .csv (optionally .gz)")


def _first_line_is_document(head: bytes) -> bool:
    import msgspec

    line = head.split(b"\n", 1)[0]
    try:
        msgspec.json.decode(line)
    except msgspec.DecodeError:
        return False
    return True


def read_jsonl(path: Path) -> Iterator[tuple[int, Payload]]:
    with _open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                yield lineno, line


def read_json(path: Path) -> Iterator[tuple[int, Payload]]:
    """A top-level array of rows, or an object holding one array of rows (``{"data": [...]}``)."""
    import ijson

    with _open(path) as fh:
        first = fh.read(4096).lstrip()
    if first.startswith(b"{") and _first_line_is_document(first):
        yield from read_jsonl(path)  # a .json file that is really JSON Lines
        return
    prefix = "item"
    if first.startswith(b"{"):
        prefix = ""
        with _open(path) as fh:
            key = None
            for pfx, event, value in ijson.parse(fh):
                if pfx == "" and event == "map_key":
                    key = value
                elif pfx == key and event == "start_array":
                    prefix = f"{key}.item"
                    break
        if not prefix:
            raise StepError(f"{path.name}: JSON object holds no list of rows; use a JSON array or JSON Lines")
    with _open(path) as fh:
        try:
            yield from enumerate(ijson.items(fh, prefix, use_float=True), 1)
        except ijson.JSONError as exc:
            raise StepError(f"{path.name}: not valid JSON ({exc}); fix the file or use JSON Lines") from None


def read_parquet(path: Path) -> Iterator[tuple[int, Payload]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise StepError(f"{path.name}: not a readable Parquet file ({exc.__class__.__name__})") from None
    i = 0
    for batch in pf.iter_batches(batch_size=2048):
        for obj in batch.to_pylist():
            i += 1
            yield i, obj


def read_csv(path: Path) -> Iterator[tuple[int, Payload]]:
    csv.field_size_limit(sys.maxsize)
    with _open(path) as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        for obj in reader:
            yield reader.line_num, obj


READERS = {"jsonl": read_jsonl, "json": read_json, "parquet": read_parquet, "csv": read_csv}


def read_rows(path: Path) -> tuple[str, Iterator[tuple[int, Payload]]]:
    """The format of ``path`` and an iterator over its rows."""
    fmt = detect_format(path)
    if path.stat().st_size == 0:
        raise StepError(f"{path.name}: file is empty; point the dataset URI at a file with chat rows")
    return fmt, READERS[fmt](path)


def count_rows(path: Path, fmt: str) -> int | None:
    """The row count when it is cheap to know (plain JSONL: one fast scan; Parquet: metadata), else None."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    if fmt == "jsonl":
        with open(path, "rb") as fh:
            if fh.read(2) == b"\x1f\x8b":
                return None
        with open(path, "rb", buffering=1 << 20) as fh:
            return sum(1 for line in fh if not line.isspace())
    return None
