"""Step 1, dataset: fetch, validate every row, take the first N, split train/eval deterministically.

Writes ``dataset/train.jsonl``, ``dataset/eval.jsonl`` and ``dataset/summary.json`` (the success
marker, written last) under the workspace. Memory stays flat as the data grows: rows stream from
the source through validation straight into the two splits, routed by a seeded index mask (one byte
per row). When the row count is not cheap to know up front (gzip, CSV, JSON, Hub), validated rows go
to a spool file first and a second pass routes them.
"""

import hashlib
import math
import os
import queue
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from steps.common.errors import StepError
from steps.common.secrets import add_secret, redact_uri
from steps.common.workspace import Workspace, atomic_outputs, remove_outputs, write_json
from steps.dataset.chat_format import RowError, parse_json_row, parse_obj_row
from steps.dataset.readers import Payload, count_rows, read_rows
from steps.dataset.sources import (
    HfSource,
    HttpSource,
    LocalSource,
    PvcSource,
    S3Source,
    Source,
    fetch_http,
    fetch_s3,
    local_files,
    parse_source,
)

STEP = "dataset"
_FLUSH_BYTES = 4 << 20
_HF_SPLITS = ("train_sft", "train_gen", "train", "training")


@dataclass
class _Stream:
    """The rows of one input file (or Hub split), with the row count when it is cheap to know."""

    name: str
    fmt: str
    rows: Iterator[tuple[int, Payload]]
    count: int | None


class _Writer:
    """Buffered JSONL writer; a background thread writes and hashes (both release the GIL)."""

    def __init__(self, path: Path) -> None:
        self.fh = open(path, "wb")
        self.hasher = hashlib.sha256()
        self.buf: list[bytes] = []
        self.size = 0
        self.rows = 0
        self.bytes = 0
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        while (chunk := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self.fh.write(chunk)
                    self.hasher.update(chunk)
                except BaseException as exc:  # surfaced by close()
                    self.error = exc

    def add(self, line: bytes) -> None:
        self.buf.append(line)
        self.size += len(line)
        self.rows += 1
        if self.size >= _FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self.buf:
            self.buf.append(b"")
            data = b"\n".join(self.buf)
            self.bytes += len(data)
            self.queue.put(data)
            self.buf = []
            self.size = 0

    def close(self) -> dict[str, Any]:
        self._flush()
        self.queue.put(None)
        self.thread.join()
        self.fh.close()
        if self.error is not None:
            raise StepError(f"cannot write {self.fh.name}: {self.error}")
        return {"rows": self.rows, "bytes": self.bytes, "sha256": self.hasher.hexdigest()}


def validate_args(split: float, subset: int, seed: int) -> None:
    """The step's checks of its numeric arguments (the pipeline's preflight applies them too)."""
    if not isinstance(split, int | float) or math.isnan(split) or not 0.0 < float(split) <= 1.0:
        raise StepError(f"split={split}: must be in (0, 1]; 0.9 keeps 90% for training, 1.0 means no eval split")
    if subset < 0:
        raise StepError(f"subset={subset}: must be >= 0 (0 = all rows)")
    if seed < 0:
        raise StepError(f"seed={seed}: must be >= 0")


def _hf_rows(src: HfSource, token: str | None):  # noqa: ANN202
    """Stream rows of a Hub dataset (preferring a training split)."""
    import datasets

    shown = f"hf://{src.repo}" + (f":{src.config}" if src.config else "")
    if os.environ.get("HF_HUB_OFFLINE", "").strip() in ("1", "true", "True", "ON", "YES"):
        raise StepError(
            f"{shown}: the Hugging Face Hub is offline here (HF_HUB_OFFLINE=1); download the dataset and pass "
            "a local, pvc://, s3:// or https:// path instead"
        )
    try:
        splits = datasets.load_dataset(src.repo, name=src.config, streaming=True, token=token or None)
    except Exception as exc:  # datasets raises many types: report one line, hide the token
        text = str(exc).split("\n")[0]
        hint = " (gated or private? set the hf-token secret)" if not token else ""
        raise StepError(f"{shown}: cannot load from the Hugging Face Hub: {text[:200]}{hint}") from None
    names = list(splits)
    if not names:
        raise StepError(f"{shown}: dataset has no splits")
    chosen = next((s for s in _HF_SPLITS if s in names), names[0])
    yield from enumerate(splits[chosen], 1)


def _source_files(src: Source, ws: Workspace, scratch: Path) -> list[Path]:
    if isinstance(src, PvcSource | LocalSource):
        return local_files(src, ws.root)
    if isinstance(src, HttpSource):
        return fetch_http(src, scratch)
    if isinstance(src, S3Source):
        return fetch_s3(src, scratch)
    raise AssertionError(src)


def _open_streams(src: Source, ws: Workspace, scratch: Path, token: str | None) -> list[_Stream]:
    if isinstance(src, HfSource):
        return [_Stream(f"hf://{src.repo}", "hub", _hf_rows(src, token), None)]
    streams = []
    for path in _source_files(src, ws, scratch):
        fmt, rows = read_rows(path)
        streams.append(_Stream(path.name, fmt, rows, count_rows(path, fmt)))
    return streams


def _validated(streams: list[_Stream], limit: int, schemas: Counter[str]) -> Iterator[bytes]:
    """Canonical lines of the first ``limit`` rows (0 = all), every one validated."""
    left = limit or -1
    for stream in streams:
        for pos, payload in stream.rows:
            try:
                if isinstance(payload, bytes):
                    line, schema = parse_json_row(payload)
                else:
                    line, schema = parse_obj_row(payload)
            except RowError as exc:
                unit = "line" if isinstance(payload, bytes) else "row"
                raise StepError(f"{stream.name} {unit} {pos}: {exc}") from None
            schemas[schema] += 1
            yield line
            left -= 1
            if left == 0:
                return


def _eval_mask(n: int, split: float, seed: int) -> tuple[bytes, int]:
    """One byte per row, 1 = eval; the eval count follows datasets' train_test_split (ceil of the test share)."""
    if n == 0:
        return b"", 0
    if split >= 1.0:
        return bytes(n), 0
    n_eval = min(n, math.ceil(round((1.0 - split) * n, 9)))
    if n_eval >= n:
        raise StepError(f"split={split} leaves no training rows out of {n}; raise the split ratio or add data")
    mask = np.zeros(n, dtype=np.uint8)
    mask[np.random.default_rng(seed).choice(n, size=n_eval, replace=False)] = 1
    return mask.tobytes(), n_eval


def _route(lines: Iterator[bytes], mask: bytes, outs: list[_Writer]) -> None:
    for flag, line in zip(mask, lines, strict=True):
        outs[flag].add(line)


def _split_rows(streams: list[_Stream], subset: int, split: float, seed: int, scratch: Path,
                train_path: Path, eval_path: Path, schemas: Counter[str]) -> tuple[dict, dict, int]:
    """Validate and split in one pass when the row count is known, else spool first, then split."""
    counts = [s.count for s in streams]
    outs = [_Writer(train_path), _Writer(eval_path)]
    try:
        if all(c is not None for c in counts):
            total = sum(counts)  # type: ignore[arg-type]
            n = min(total, subset) if subset else total
            try:
                mask, n_eval = _eval_mask(n, split, seed)
            except StepError:
                for _ in _validated(streams, n, schemas):  # bad rows are the better error to report
                    pass
                raise
            _route(_validated(streams, n, schemas), mask, outs)
        else:
            spool_path = scratch / "rows.jsonl"
            spool = _Writer(spool_path)
            for line in _validated(streams, subset, schemas):
                spool.add(line)
            n = spool.close()["rows"]
            mask, n_eval = _eval_mask(n, split, seed)
            with open(spool_path, "rb", buffering=1 << 20) as fh:
                _route((line.rstrip(b"\n") for line in fh), mask, outs)
    finally:
        infos = [o.close() for o in outs]
    return infos[0], infos[1], n_eval


def prepare_dataset(
    data_uri: str,
    workspace: str,
    split: float = 0.9,
    subset: int = 0,
    seed: int = 42,
    hf_token: str = "",
) -> dict[str, Any]:
    """Fetch a chat dataset, validate every row, and write the train/eval split into the workspace.

    Args:
        data_uri: hf://org/name[:config], s3://bucket/key-or-prefix, http(s)://..., pvc://path, file:// or /abs/path.
        workspace: workspace directory (the per-run volume in Argo).
        split: share of rows for training, in (0, 1]; 1.0 = no eval split.
        subset: keep only the first N valid rows (0 = all).
        seed: seed of the train/eval assignment.
        hf_token: Hub token for gated data; overrides HF_TOKEN; never printed (prefer the hf-token secret).

    Returns:
        Paths and row counts of the two splits, and the summary path.
    """
    started = time.monotonic()
    add_secret(hf_token)  # masked in every message and log line of this process from here on
    ws = Workspace.at(workspace)
    targets = (ws.train_jsonl, ws.eval_jsonl, ws.dataset_summary)
    remove_outputs(*targets)  # a failed run never leaves an earlier run's outputs looking current
    try:
        validate_args(split, subset, seed)
        src = parse_source(data_uri)
    except StepError as exc:
        ws.log(STEP, f"error: {exc}")
        raise
    shown = redact_uri(data_uri.strip())
    ws.log(STEP, f"start: source {shown}, split {split:g}, subset {subset or 'all'}, seed {seed}")
    token = (hf_token or os.environ.get("HF_TOKEN", "")).strip() or None
    ws.dataset_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".fetch-", dir=ws.dataset_dir))
    try:
        with atomic_outputs(*targets) as (train_tmp, eval_tmp, summary_tmp):
            streams = _open_streams(src, ws, scratch, token)
            schemas: Counter[str] = Counter()
            train_info, eval_info, n_eval = _split_rows(streams, subset, float(split), seed, scratch,
                                                        train_tmp, eval_tmp, schemas)
            n = train_info["rows"] + eval_info["rows"]
            if n == 0:
                raise StepError(f"{shown}: no rows found; the dataset is empty")
            ws.log(STEP, f"validated {n} rows ({', '.join(f'{k}: {v}' for k, v in schemas.items())})")
            summary = {
                "source": shown,
                "scheme": type(src).__name__.removesuffix("Source").lower(),
                "files": [st.name for st in streams],
                "formats": sorted({st.fmt for st in streams}),
                "schema": dict(schemas),
                "rows": n,
                "subset": subset,
                "split": float(split),
                "seed": seed,
                "train": {"path": "dataset/train.jsonl", **train_info},
                "eval": {"path": "dataset/eval.jsonl", **eval_info},
                "eval_note": "split = 1.0: no eval split, eval.jsonl is empty" if n_eval == 0 else "",
                "wall_s": round(time.monotonic() - started, 3),
            }
            write_json(summary_tmp, summary)
    except StepError as exc:
        ws.log(STEP, f"error: {exc}")
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    ws.log(STEP, f"done: train {train_info['rows']} rows, eval {eval_info['rows']} rows in {summary['wall_s']:.1f}s")
    if n_eval == 0:
        ws.log(STEP, "info: split = 1.0, so there is no eval split (eval.jsonl is empty)")
    return {
        "train_path": str(ws.train_jsonl),
        "eval_path": str(ws.eval_jsonl),
        "train_rows": train_info["rows"],
        "eval_rows": eval_info["rows"],
        "summary_path": str(ws.dataset_summary),
    }
