"""Step 1, dataset: fetch, validate every row, take the first N, split train/eval deterministically.

Writes ``dataset/train.jsonl``, ``dataset/eval.jsonl`` and ``dataset/summary.json`` (the success
marker, written last) under the workspace. One pass, whatever the source: rows stream from the file,
the S3 object or the HTTP response (read ahead by a thread, resumed after a dropped connection) through
validation into the seeded split (steps/dataset/split.py), which writes each row once, to its split.
Nothing else is written to disk and memory stays bounded as the data grows.
"""

import math
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from steps.common.errors import StepError
from steps.common.secrets import add_secret, redact_uri
from steps.common.threads import quick_handoffs
from steps.common.workspace import Workspace, atomic_outputs, remove_outputs, write_json
from steps.dataset.chat_format import RowError, parse_batch
from steps.dataset.readers import Batch, DataFile, batched, local_file, read_rows, remote_file
from steps.dataset.since import Mark, from_doc, is_new, newest
from steps.dataset.sources import (
    HfSource,
    HttpSource,
    LocalSource,
    PvcSource,
    S3Source,
    Source,
    http_object,
    local_files,
    parse_source,
    s3_listing,
    s3_objects,
)
from steps.dataset.split import JsonlWriter, SeededSplit
from steps.dataset.tokenized import parse_tokenized_batch

STEP = "dataset"
# "nothing-new" when since=last found no new file (absent otherwise: the dataset task's output parameter data_status
# then takes its default, "new"); the later tasks' `when` reads it
STATUS_TXT = "dataset/status.txt"
NOTHING_NEW = "nothing-new"
_HF_SPLITS = ("train_sft", "train_gen", "train", "training")
_NOTABLE_WAIT_S = 0.25  # a wait this long is logged (all of them are in summary.json's waits_s)


@dataclass
class _Input:
    """One input file (or Hub split), read lazily."""

    name: str
    file: DataFile | None = None  # None for the Hub
    fmt: str = ""


def validate_args(split: float, subset: int, seed: int) -> None:
    """The step's checks of its numeric arguments (the pipeline's preflight applies them too)."""
    if not isinstance(split, int | float) or math.isnan(split) or not 0.0 < float(split) <= 1.0:
        raise StepError(f"split={split}: must be in (0, 1]; 0.9 keeps 90% for training, 1.0 means no eval split")
    if subset < 0:
        raise StepError(f"subset={subset}: must be >= 0 (0 = all rows)")
    if seed < 0:
        raise StepError(f"seed={seed}: must be >= 0")


def _hf_rows(src: HfSource, token: str | None):  # noqa: ANN202
    """Stream the rows (dicts) of a Hub dataset, preferring a training split."""
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
    yield from splits[chosen]


def _listing(src: Source, ws: Workspace) -> tuple[list[Any], list[Mark], Any]:
    """A folder's/prefix's files (paths or S3 keys) with their (time, name) marks, listed, not opened; and the S3
    client that listed them (None for files)."""
    if isinstance(src, PvcSource | LocalSource):
        paths = local_files(src, ws.root)
        base = paths[0].parent if len(paths) == 1 else _common(paths)
        return paths, [Mark(p.stat().st_mtime_ns, p.relative_to(base).as_posix()) for p in paths], None
    if isinstance(src, S3Source):
        client, keys = s3_listing(src)
        return keys, [Mark(k.modified_ns, k.key) for k in keys], client
    raise AssertionError(src)


def anything_new(data_uri: str, workspace: str, since: Mark | None) -> bool:
    """Whether the folder, file or s3:// prefix at ``data_uri`` holds a file newer than ``since`` (a listing only;
    the lineage task asks before it downloads the parent's weights)."""
    _, marks, _ = _listing(parse_source(data_uri), Workspace.at(workspace))
    return any(is_new(m, since) for m in marks)


def _inputs(src: Source, ws: Workspace, since: Mark | None = None, incremental: bool = False
            ) -> tuple[list[_Input], Mark | None, int]:
    """The source's files (or remote objects), listed and checked now, opened later one at a time.

    Returns them (with ``incremental``, only those newer than ``since``), the watermark of *all* the files (None
    for a Hub dataset or a URL) and how many files were left out as already learned."""
    if isinstance(src, HfSource):
        return [_Input(f"hf://{src.repo}", fmt="hub")], None, 0
    if isinstance(src, HttpSource):
        return [_Input(f.name, f) for f in [remote_file(http_object(src))]], None, 0
    items, marks, client = _listing(src, ws)
    keep = [x for x, m in zip(items, marks, strict=True) if not incremental or is_new(m, since)]
    if isinstance(src, S3Source):
        files = [remote_file(obj) for obj in s3_objects(src, keep, client)] if keep else []
    else:
        files = [local_file(p) for p in keep]
    return [_Input(f.name, f) for f in files], newest(marks), len(items) - len(keep)


def _common(paths: list) -> Any:  # noqa: ANN401 - a Path
    from os.path import commonpath
    from pathlib import Path

    return Path(commonpath([str(p.parent) for p in paths]))


def _batches(item: _Input, src: Source, token: str | None) -> Iterator[Batch]:
    if item.file is None:
        return batched(_hf_rows(src, token))  # type: ignore[arg-type]
    item.fmt, batches = read_rows(item.file)
    return batches


def _stream_rows(inputs: list[_Input], src: Source, token: str | None, limit: int, router: SeededSplit,
                 schemas: Counter[str], processed: bool = False) -> None:
    """Validate the first ``limit`` rows (0 = all) in input order and hand them to the split (chat rows, or
    pre-tokenised ones with ``processed``)."""
    parse = parse_tokenized_batch if processed else parse_batch
    left = limit or -1
    for item in inputs:
        batches = _batches(item, src, token)
        try:
            for positions, batch in batches:
                try:
                    lines, kinds, _ = parse(batch, left)
                except RowError as exc:
                    msg, index = exc.args
                    pos = positions + index if isinstance(positions, int) else positions[index]
                    unit = "line" if isinstance(batch[index], bytes) else "row"
                    raise StepError(f"{item.name} {unit} {pos}: {msg}") from None
                schemas.update(kinds)
                router.extend(lines)
                left -= len(lines)
                if left == 0:
                    return
        finally:
            close = getattr(batches, "close", None)
            if close:
                close()


def _waits(streams: list, writers: tuple[JsonlWriter, ...]) -> dict[str, float]:
    """How long validation waited: for the first byte of each remote object, for more bytes from the network after
    that, and on the writers (the disk); the figures to read when a dataset step is slower than expected."""
    return {"first_byte": round(sum(st.first_byte_s or 0.0 for st in streams), 3),
            "network": round(sum(st.stalled_s for st in streams), 3),
            "writing": round(sum(w.stalled_s for w in writers), 3)}


def _parent_watermark(ws: Workspace) -> tuple[Mark | None, bool]:
    """The parent version's data watermark (None on the first run of a lineage: everything is new), and whether
    the lineage step already found nothing new (then it fetched no weights, and this step keeps to that answer
    even if a file has arrived since: the next run learns it)."""
    from steps.lineage import read_parent

    parent = read_parent(ws)
    if parent is None:
        raise StepError("since=last but lineage/parent.json is missing: it needs continue_from (the lineage step "
                        "records the parent's watermark)")
    return from_doc(parent.get("watermark")), parent.get("nothing_new") is True


def _show_mark(mark: Mark | None) -> str:
    return f"{mark.doc()['time']} {mark.key}" if mark else "(none: first version, all files are new)"


def _nothing_new(ws: Workspace, shown: str, src: Source, since: Mark | None, mark: Mark | None, old: int,
                 started: float) -> dict[str, Any]:
    """No file is newer than the watermark: record it and end the run early (the later tasks are skipped)."""
    summary = {"source": shown, "scheme": type(src).__name__.removesuffix("Source").lower(), "files": [],
               "rows": 0, "status": "nothing new to learn", "since": "last",
               "since_watermark": since.doc() if since else None, "watermark": mark.doc() if mark else None,
               "files_already_learned": old, "train": {"path": "", "rows": 0}, "eval": {"path": "", "rows": 0},
               "wall_s": round(time.monotonic() - started, 3)}
    write_json(ws.dataset_summary, summary)
    (ws.root / STATUS_TXT).write_text(NOTHING_NEW, encoding="utf-8")
    ws.log(STEP, f"nothing new to learn: no file under {shown} is newer than the parent's watermark "
                 f"{_show_mark(since)} ({old} file(s) already learned); train, evaluate, publish and register are "
                 "skipped")
    return {"status": NOTHING_NEW, "train_path": "", "eval_path": "", "train_rows": 0, "eval_rows": 0,
            "summary_path": str(ws.dataset_summary)}


def prepare_dataset(
    data_uri: str,
    workspace: str,
    split: float = 0.9,
    subset: int = 0,
    seed: int = 42,
    hf_token: str = "",
    processed_data: bool = False,
    since: str = "",
) -> dict[str, Any]:
    """Fetch a chat dataset, validate every row, and write the train/eval split into the workspace.

    Args:
        data_uri: hf://org/name[:config], s3://bucket/key-or-prefix, http(s)://..., pvc://path, file:// or /abs/path.
        workspace: workspace directory (the per-run volume in Argo).
        split: share of rows for training, in (0, 1]; 1.0 = no eval split.
        subset: keep only the first N valid rows (0 = all).
        seed: seed of the train/eval assignment.
        hf_token: Hub token for gated data; overrides HF_TOKEN; never printed (prefer the hf-token secret).
        processed_data: The rows are pre-tokenised ({"input_ids": [...], "labels": [...]}): validated as the trainer
            reads them and split as they are, instead of chat rows.
        since: '' = all the data; 'last' = only the files newer than the parent version's data watermark
            (lineage/parent.json, written by the lineage step); nothing new ends the run early, not as a failure.

    Returns:
        Paths and row counts of the two splits, and the summary path.
    """
    started = time.monotonic()
    add_secret(hf_token)  # masked in every message and log line of this process from here on
    ws = Workspace.at(workspace)
    targets = (ws.train_jsonl, ws.eval_jsonl, ws.dataset_summary)
    remove_outputs(ws.root / STATUS_TXT, *targets)  # a failed run never leaves an earlier run's outputs looking current
    try:
        validate_args(split, subset, seed)
        src = parse_source(data_uri)
        since = (since or "").strip()
        if since not in ("", "last"):
            raise StepError(f"since={since!r}: must be '' (all the data) or 'last'")
        watermark, settled = _parent_watermark(ws) if since == "last" else (None, False)
    except StepError as exc:
        ws.log(STEP, f"error: {exc}")
        raise
    shown = redact_uri(data_uri.strip())
    kind = "pre-tokenised rows" if processed_data else "chat rows"
    ws.log(STEP, f"start: source {shown} ({kind}), split {split:g}, subset {subset or 'all'}, seed {seed}")
    token = (hf_token or os.environ.get("HF_TOKEN", "")).strip() or None
    ws.dataset_dir.mkdir(parents=True, exist_ok=True)
    try:
        inputs, mark, old = _inputs(src, ws, watermark, since == "last")
        if settled and inputs:
            ws.log(STEP, f"since=last: {len(inputs)} file(s) arrived after the lineage step found nothing new; the "
                         "next run learns them")
            old, inputs, mark = old + len(inputs), [], watermark
        if since == "last":
            ws.log(STEP, f"since=last: {len(inputs)} file(s) newer than the parent's watermark "
                         f"{_show_mark(watermark)}, {old} already learned")
        if not inputs:
            return _nothing_new(ws, shown, src, watermark, mark, old, started)
        with atomic_outputs(*targets) as (train_tmp, eval_tmp, summary_tmp):
            schemas: Counter[str] = Counter()
            outs = (JsonlWriter(train_tmp), JsonlWriter(eval_tmp))
            try:
                with quick_handoffs():  # the reader and the writers take the GIL back promptly (steps/common/threads)
                    router = SeededSplit(float(split), seed, *outs)
                    _stream_rows(inputs, src, token, subset, router, schemas, bool(processed_data))
                    n, n_eval = router.finish()
            finally:
                train_info, eval_info = (o.close() for o in outs)
            if n == 0:
                raise StepError(f"{shown}: no rows found; the dataset is empty")
            ws.log(STEP, f"validated {n} rows ({', '.join(f'{k}: {v}' for k, v in schemas.items())})")
            streams = [i.file.stream for i in inputs if i.file is not None and i.file.stream is not None]
            resumed = sum(st.resumes for st in streams)
            if resumed:
                ws.log(STEP, f"info: resumed {resumed} dropped connection(s) from the byte reached")
            summary = {
                "source": shown,
                "scheme": type(src).__name__.removesuffix("Source").lower(),
                "files": [i.name for i in inputs],
                "formats": sorted({i.fmt for i in inputs if i.fmt}),
                "schema": dict(schemas),
                "processed_data": bool(processed_data),
                "rows": n,
                "subset": subset,
                "split": float(split),
                "seed": seed,
                "train": {"path": "dataset/train.jsonl", **train_info},
                "eval": {"path": "dataset/eval.jsonl", **eval_info},
                "eval_note": "split = 1.0: no eval split, eval.jsonl is empty" if n_eval == 0 else "",
                "resumed_connections": resumed,
                "waits_s": _waits(streams, outs),
                "since": since, "since_watermark": watermark.doc() if watermark else None,
                "watermark": mark.doc() if mark else None, "files_already_learned": old, "status": "new",
                "wall_s": round(time.monotonic() - started, 3),
            }
            write_json(summary_tmp, summary)
    except StepError as exc:
        ws.log(STEP, f"error: {exc}")
        raise
    ws.log(STEP, f"done: train {train_info['rows']} rows, eval {eval_info['rows']} rows in {summary['wall_s']:.1f}s")
    waits = summary["waits_s"]
    if max(waits.values()) >= _NOTABLE_WAIT_S:
        ws.log(STEP, f"info: validation waited {waits['first_byte']:.1f} s for the first byte of the data, "
                     f"{waits['network']:.1f} s for more of it and {waits['writing']:.1f} s on the disk")
    if n_eval == 0:
        ws.log(STEP, "info: split = 1.0, so there is no eval split (eval.jsonl is empty)")
    return {
        "status": "new",
        "train_path": str(ws.train_jsonl),
        "eval_path": str(ws.eval_jsonl),
        "train_rows": train_info["rows"],
        "eval_rows": eval_info["rows"],
        "summary_path": str(ws.dataset_summary),
    }
