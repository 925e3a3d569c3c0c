"""Incremental data (``since=last``): only the files that are new since the parent version's data watermark.

A watermark is the newest input file's modification time (a folder's mtime, an S3 object's LastModified) plus its
name: ``{"time_ns": …, "time": "2026-…Z", "key": "daily/2026-11-27.jsonl"}``. A file is new when its
(time, name) pair is greater than the watermark's, so a prefix or folder that receives one file a day feeds each
run exactly the new ones. What this cannot see: a file added later with an *older* time (copied with its
original mtime) or an existing file rewritten in place with an older time; write new data as new files.
"""

import datetime as dt
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Mark:
    """One input file's (time, name)."""

    time_ns: int
    key: str

    def doc(self) -> dict[str, Any]:
        when = dt.datetime.fromtimestamp(self.time_ns / 1e9, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return {"time_ns": self.time_ns, "time": when, "key": self.key}


def from_doc(doc: Any) -> Mark | None:
    """A watermark from a ledger/summary document (None when absent or malformed)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("time_ns"), int) or not isinstance(doc.get("key"), str):
        return None
    return Mark(int(doc["time_ns"]), str(doc["key"]))


def newest(marks: list[Mark]) -> Mark | None:
    return max(marks, key=lambda m: (m.time_ns, m.key)) if marks else None


def is_new(mark: Mark, since: Mark | None) -> bool:
    return since is None or (mark.time_ns, mark.key) > (since.time_ns, since.key)
