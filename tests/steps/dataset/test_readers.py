"""Readers over chunked bytes: lines across chunk ends, gzip members and damage, sniffing."""

import gzip
import json
from pathlib import Path

import pytest

from steps.common.errors import StepError
from steps.dataset.readers import DataFile, jsonl_rows, read_rows


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def _flat(batches) -> list[tuple[int, bytes]]:  # noqa: ANN001
    out = []
    for first, lines in batches:
        out += [(first + i, line) for i, line in enumerate(lines) if line and not line.isspace()]
    return out


def _file(name: str, data: bytes, size: int = 7) -> DataFile:
    return DataFile(name, len(data), lambda: (c for c in _chunks(data, size)), lambda: None)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [1, 2, 5, 64, 10_000])
def test_jsonl_lines_and_numbers_do_not_depend_on_chunking(size: int) -> None:
    data = b'{"a": 1}\n\n  \n{"b": "' + b"x" * 300 + b'"}\r\n{"c": 3}'
    want = [(1, b'{"a": 1}'), (4, b'{"b": "' + b"x" * 300 + b'"}\r'), (5, b'{"c": 3}')]
    assert _flat(jsonl_rows(_chunks(data, size))) == want


@pytest.mark.parametrize("size", [1, 3, 4096])
def test_gzip_with_several_members_and_any_chunking(size: int) -> None:
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}
            for i in range(50)]
    data = b"".join(gzip.compress("".join(json.dumps(r) + "\n" for r in part).encode())
                    for part in (rows[:10], rows[10:30], rows[30:]))
    fmt, batches = read_rows(_file("rows.jsonl.gz", data + b"\x00" * 9, size=size))
    assert fmt == "jsonl"
    assert [json.loads(line) for _, line in _flat(batches)] == rows


def test_truncated_and_damaged_gzip_are_clear_errors() -> None:
    data = gzip.compress(b'{"a": 1}\n' * 1000)
    with pytest.raises(StepError, match=r"cut.jsonl.gz: gzip data ends early \(a truncated file\?\)"):
        list(read_rows(_file("cut.jsonl.gz", data[: len(data) // 2], size=64))[1])
    bad = data[:20] + bytes(b ^ 0x5A for b in data[20:60]) + data[60:]
    with pytest.raises(StepError, match=r"bad.jsonl.gz: not valid gzip"):
        list(read_rows(_file("bad.jsonl.gz", bad, size=64))[1])


def test_format_is_sniffed_when_the_name_says_nothing(tmp_path: Path) -> None:
    lines = b'{"messages": []}\n{"messages": []}\n'
    assert read_rows(_file("download", lines))[0] == "jsonl"
    assert read_rows(_file("download", b'[{"messages": []}]'))[0] == "json"
    assert read_rows(_file("data.json", lines))[0] == "jsonl"  # .json that is really JSON Lines
    with pytest.raises(StepError, match="download: unknown data format"):
        read_rows(_file("download", b"\x00\x01binary"))
