"""Small, size-bounded summaries of a step's results, for Argo output parameters.

Argo stores output parameters in the WorkflowTaskResult and the Workflow object (etcd: ~1 MiB per object
in total), so a step exports a summary here and keeps its full results (the per-step loss curve, every
eval metric, every registry property) on the workspace. ``BOUNDED_OUTPUTS`` lists each summary file with
its byte limit; :func:`bounded` enforces it whatever the run produced, and the Argo lint refuses an output
parameter that reads any other workspace file.
"""

import json
from pathlib import Path
from typing import Any

from steps.common.workspace import write_json

# workspace-relative path -> the most bytes the file may hold
BOUNDED_OUTPUTS: dict[str, int] = {
    "train/summary.json": 4096,
    "eval/summary.json": 16384,
    "registry/summary.json": 4096,
    "publish/summary.json": 4096,
    "dataset/status.txt": 64,
}
MAX_STRING = 300
MAX_ITEMS = 20


def _shrink(value: Any, max_string: int, max_items: int, top: bool = False) -> Any:
    """Strings cut to ``max_string``; lists and nested mappings to ``max_items`` (the top level keeps its keys)."""
    if isinstance(value, str):
        return value if len(value) <= max_string else value[: max_string - 1] + "…"
    if isinstance(value, dict):
        items = list(value.items())
        keep = items if top else items[:max_items]
        out = {str(k)[:max_string]: _shrink(v, max_string, max_items) for k, v in keep}
        if len(items) > len(keep):
            out["…"] = f"{len(items) - len(keep)} more"
        return out
    if isinstance(value, list | tuple):
        out_list = [_shrink(v, max_string, max_items) for v in list(value)[:max_items]]
        if len(value) > max_items:
            out_list.append(f"… {len(value) - max_items} more")
        return out_list
    return value


def _size(obj: Any) -> int:
    return len(json.dumps(obj, indent=2, default=str).encode("utf-8")) + 1


def bounded(summary: dict[str, Any], limit: int) -> dict[str, Any]:
    """``summary`` cut down until its JSON holds at most ``limit`` bytes: long strings and lists shortened
    first, then trailing keys dropped (``truncated`` names them)."""
    max_string, max_items = MAX_STRING, MAX_ITEMS
    out = _shrink(summary, max_string, max_items, top=True)
    while _size(out) > limit and (max_items > 1 or max_string > 20):
        max_items, max_string = max(1, max_items // 2), max(20, max_string // 2)
        out = _shrink(summary, max_string, max_items, top=True)
    dropped: list[str] = []
    while _size(out) > limit:
        out.pop("truncated", None)
        if not out:
            break
        key = list(out)[-1]
        dropped.insert(0, key)
        out.pop(key)
        out["truncated"] = [k[:40] for k in dropped[:5]]
    return out if _size(out) <= limit else {"truncated": True}


def write_summary(workspace: Path, rel: str, summary: dict[str, Any]) -> Path:
    """Write ``<workspace>/<rel>`` (one of ``BOUNDED_OUTPUTS``) within its byte limit."""
    if rel not in BOUNDED_OUTPUTS:
        raise KeyError(f"{rel} is not a bounded output (BOUNDED_OUTPUTS)")
    return write_json(workspace / rel, bounded(summary, BOUNDED_OUTPUTS[rel]))
