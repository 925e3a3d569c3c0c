"""Step 1, dataset: fetch, validate every row, take the first N, split train/eval deterministically.

Writes ``dataset/train.jsonl``, ``dataset/eval.jsonl`` and ``dataset/summary.json`` (the success
marker, written last) under the workspace. Memory stays flat as the data grows: rows stream from
the source through validation into a spool file, and a second pass routes each spooled line to its
split by a seeded index mask (one byte per row).
"""

import math
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from steps.chat_format import RowError, parse_json_row, parse_obj_row
from steps.errors import StepError
from steps.readers import read_rows
from steps.secrets import redact_uri
from steps.sources import (
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
from steps.workspace import Workspace, atomic_outputs, remove_outputs

STEP = "dataset"
_FLUSH_BYTES = 4 << 20
_HF_SPLITS = ("train_sft", "train_gen", "train", "training")


class _Spool:
    """Buffered line writer that counts lines."""

    def __init__(self, path: Path) -> None:
        self.fh = open(path, "wb")
        self.buf: list[bytes] = []
        self.size = 0
        self.rows = 0

    def add(self, line: bytes) -> None:
        self.buf.append(line)
        self.size += len(line) + 1
        self.rows += 1
        if self.size >= _FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            self.buf.append(b"")
            self.fh.write(b"\n".join(self.buf))
            self.buf.clear()
            self.size = 0

    def close(self) -> None:
        self.flush()
        self.fh.close()


def _validate_args(split: float, subset: int, seed: int) -> None:
    if not (isinstance(split, int | float) and 0.0 < float(split) <= 1.0) or math.isnan(split):
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


def _spool_rows(src: Source, shown: str, ws: Workspace, scratch: Path, spool: _Spool, subset: int,
                token: str | None) -> dict[str, Any]:
    """Validate rows into the spool; stop after ``subset`` rows when it is > 0."""
    schemas: Counter[str] = Counter()
    formats: list[str] = []
    files: list[str] = []
    streams: list[tuple[str, Any]] = []
    if isinstance(src, HfSource):
        streams.append((f"hf://{src.repo}", _hf_rows(src, token)))
        formats.append("hub")
    else:
        for path in _source_files(src, ws, scratch):
            fmt, rows = read_rows(path)
            formats.append(fmt)
            files.append(path.name)
            streams.append((path.name, rows))
    add = spool.add
    for name, rows in streams:
        for pos, payload in rows:
            try:
                line, schema = (parse_json_row if isinstance(payload, bytes) else parse_obj_row)(payload)
            except RowError as exc:
                unit = "line" if isinstance(payload, bytes) else "row"
                raise StepError(f"{name} {unit} {pos}: {exc}") from None
            add(line)
            schemas[schema] += 1
            if subset and spool.rows >= subset:
                break
        if subset and spool.rows >= subset:
            break
    if spool.rows == 0:
        raise StepError(f"{shown}: no rows found; the dataset is empty")
    return {"formats": sorted(set(formats)), "files": files, "schemas": dict(schemas)}


def _eval_mask(n: int, split: float, seed: int) -> tuple[bytes, int]:
    """One byte per row, 1 = eval; the eval count follows datasets' train_test_split (ceil of the test share)."""
    if split >= 1.0:
        return bytes(n), 0
    n_eval = min(n, math.ceil(round((1.0 - split) * n, 9)))
    if n_eval >= n:
        raise StepError(f"split={split} leaves no training rows out of {n}; raise the split ratio or add data")
    mask = np.zeros(n, dtype=np.uint8)
    mask[np.random.default_rng(seed).choice(n, size=n_eval, replace=False)] = 1
    return mask.tobytes(), n_eval


def _route(spool_path: Path, mask: bytes, train_path: Path, eval_path: Path) -> tuple[dict, dict]:
    """Copy each spooled line to train or eval by the mask; hash while writing."""
    import hashlib

    outs = [_HashingWriter(train_path, hashlib.sha256()), _HashingWriter(eval_path, hashlib.sha256())]
    with open(spool_path, "rb", buffering=1 << 20) as fh:
        for flag, line in zip(mask, fh, strict=True):
            outs[flag].add(line)
    return outs[0].close(), outs[1].close()


class _HashingWriter:
    def __init__(self, path: Path, hasher: Any) -> None:
        self.fh = open(path, "wb")
        self.hasher = hasher
        self.buf: list[bytes] = []
        self.size = 0
        self.rows = 0
        self.bytes = 0

    def add(self, line: bytes) -> None:
        self.buf.append(line)
        self.size += len(line)
        self.rows += 1
        if self.size >= _FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        data = b"".join(self.buf)
        self.fh.write(data)
        self.hasher.update(data)
        self.bytes += len(data)
        self.buf.clear()
        self.size = 0

    def close(self) -> dict[str, Any]:
        self._flush()
        self.fh.close()
        return {"rows": self.rows, "bytes": self.bytes, "sha256": self.hasher.hexdigest()}


def _write_json(path: Path, obj: Any) -> None:
    import json

    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")


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
    _validate_args(split, subset, seed)
    src = parse_source(data_uri)
    ws = Workspace.at(workspace)
    shown = redact_uri(data_uri.strip())
    targets = (ws.train_jsonl, ws.eval_jsonl, ws.dataset_summary)
    remove_outputs(*targets)
    ws.log(STEP, f"start: source {shown}, split {split:g}, subset {subset or 'all'}, seed {seed}")
    token = (hf_token or os.environ.get("HF_TOKEN", "")).strip() or None
    ws.dataset_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".fetch-", dir=ws.dataset_dir))
    try:
        with atomic_outputs(*targets) as (train_tmp, eval_tmp, summary_tmp):
            spool = _Spool(scratch / "rows.jsonl")
            try:
                found = _spool_rows(src, shown, ws, scratch, spool, subset, token)
            finally:
                spool.close()
            n = spool.rows
            ws.log(STEP, f"validated {n} rows ({', '.join(f'{k}: {v}' for k, v in found['schemas'].items())})")
            mask, n_eval = _eval_mask(n, float(split), seed)
            train_info, eval_info = _route(scratch / "rows.jsonl", mask, train_tmp, eval_tmp)
            summary = {
                "source": shown,
                "scheme": type(src).__name__.removesuffix("Source").lower(),
                "files": found["files"],
                "formats": found["formats"],
                "schema": found["schemas"],
                "rows": n,
                "subset": subset,
                "split": float(split),
                "seed": seed,
                "train": {"path": "dataset/train.jsonl", **train_info},
                "eval": {"path": "dataset/eval.jsonl", **eval_info},
                "eval_note": "split = 1.0: no eval split, eval.jsonl is empty" if n_eval == 0 else "",
                "wall_s": round(time.monotonic() - started, 3),
            }
            _write_json(summary_tmp, summary)
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
