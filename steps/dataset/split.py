"""The seeded train/eval split, decided while rows stream by, and the two JSONL writers.

The eval count is exact: ``eval_count(n) = ceil((1 - split) * n)`` rows out of n, as in datasets'
``train_test_split``. Rows are taken in consecutive blocks of ``BLOCK_ROWS`` rows (a block closes
early once it holds ``BLOCK_BYTES``); a block of m rows starting after s rows sends
``eval_count(s + m) - eval_count(s)`` of them to eval, drawn by one seeded generator without
replacement. The quotas add up to ``eval_count(n)`` whatever n is, so the split needs no row count up
front and no second pass: memory holds one block, and every row is written once, to its own split,
in input order. The first block draws exactly what a whole-dataset draw did
(``default_rng(seed).choice(n, eval_count(n))``), so data of up to one block splits as before.
"""

import bisect
import itertools
import math
import queue
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from steps.common.errors import StepError

BLOCK_ROWS = 8192
BLOCK_BYTES = 16 << 20


def eval_count(n: int, split: float) -> int:
    """Rows that go to eval out of ``n``: ``ceil((1 - split) * n)`` (0 when split = 1)."""
    if split >= 1.0 or n <= 0:
        return 0
    return min(n, math.ceil(round((1.0 - split) * n, 9)))


class JsonlWriter:
    """Appends blocks of lines to a file; a background thread joins and writes them (both release the GIL on
    large buffers, so this work runs beside validation).

    The splits are not hashed here: the train step hashes train.jsonl for its resume key and records it
    (``data_sha256`` in train/metrics.json), and a second hash here cost 12% of this step (0.55 s of CPU per GB).
    """

    def __init__(self, path: Path) -> None:
        self.fh = open(path, "wb")
        self.rows = 0
        self.bytes = 0
        self.queue: queue.Queue[list[bytes] | None] = queue.Queue(maxsize=3)
        self.error: BaseException | None = None
        self.stalled_s = 0.0  # time the caller waited on a full queue (the disk behind), for the summary
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        while (lines := self.queue.get()) is not None:
            if self.error is None:
                try:
                    data = b"\n".join(lines)
                    self.fh.write(data)
                    self.fh.write(b"\n")
                    self.bytes += len(data) + 1
                except BaseException as exc:  # surfaced by close()
                    self.error = exc

    def write_lines(self, lines: list[bytes]) -> None:
        """Append ``lines`` (no newlines in them), one per line."""
        if lines:
            self.rows += len(lines)
            start = time.perf_counter()
            self.queue.put(lines)
            self.stalled_s += time.perf_counter() - start

    def close(self) -> dict[str, Any]:
        self.queue.put(None)
        self.thread.join()
        self.fh.close()
        if self.error is not None:
            raise StepError(f"cannot write {self.fh.name}: {self.error}")
        return {"rows": self.rows, "bytes": self.bytes}


class SeededSplit:
    """Routes validated lines to the train or eval writer, block by block (see the module docstring)."""

    def __init__(self, split: float, seed: int, train: JsonlWriter, evl: JsonlWriter) -> None:
        self.split = split
        self.rng = np.random.default_rng(seed)
        self.train, self.evl = train, evl
        self.block: list[bytes] = []
        self.block_bytes = 0
        self.rows = 0  # rows routed so far

    def extend(self, lines: list[bytes]) -> None:
        """Add rows in input order; a block closes at its BLOCK_ROWS-th row or the row that brings it to
        BLOCK_BYTES, wherever the batches happen to end."""
        while lines:
            take = lines[: BLOCK_ROWS - len(self.block)]
            sizes = list(itertools.accumulate(map(len, take), initial=self.block_bytes))
            full = bisect.bisect_left(sizes, BLOCK_BYTES, lo=1)  # rows of ``take`` that reach the byte cap
            if full < len(sizes):
                take = take[:full]
            self.block.extend(take)
            self.block_bytes = sizes[len(take)]
            lines = lines[len(take):]
            if len(self.block) >= BLOCK_ROWS or self.block_bytes >= BLOCK_BYTES:
                self._route()

    def _route(self) -> None:
        block, m = self.block, len(self.block)
        k = eval_count(self.rows + m, self.split) - eval_count(self.rows, self.split)
        if k == 0:
            self.train.write_lines(block)
        else:
            flags = np.zeros(m, dtype=bool)
            flags[self.rng.choice(m, size=k, replace=False)] = True
            self.evl.write_lines(list(itertools.compress(block, flags.tolist())))
            self.train.write_lines(list(itertools.compress(block, (~flags).tolist())))
        self.rows += m
        self.block, self.block_bytes = [], 0

    def finish(self) -> tuple[int, int]:
        """Route the last block; the row count and the eval count."""
        if self.block:
            self._route()
        n, n_eval = self.rows, eval_count(self.rows, self.split)
        if n and n_eval >= n:
            raise StepError(f"split={self.split:g} leaves no training rows out of {n}; raise the split ratio or "
                            "add data")
        return n, n_eval
