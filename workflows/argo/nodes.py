"""A Workflow's ``status.nodes`` as one entry per task, the way ``argo get`` shows them.

Argo (``workflow/controller/operator.go``) wraps every task whose template has a ``retryStrategy`` (all of ours)
in a node of type ``Retry`` named after the task (``train``), and runs each attempt as a child ``Pod`` node named
``train(0)``, ``train(1)``, …; when the task is done the Retry node carries the phase and a copy of the last
attempt's outputs. A task without retries is its Pod node; a task whose ``when`` is false is a ``Skipped`` node;
the exit handler's tasks sit under the ``<workflow>.onExit`` node. Reading Pod display names as task names
(``train(0)``) loses the task and reports a failed first attempt of a task that succeeded on retry.
"""

import re
from collections.abc import Mapping
from typing import Any

LEAF_TYPES = ("Pod", "Skipped", "Omitted", "Suspend")
_ATTEMPT = re.compile(r"^(?P<task>.+)\((?P<n>\d+)\)$")


def _attempt(node: Mapping[str, Any]) -> int:
    found = _ATTEMPT.match(str(node.get("displayName") or ""))
    return int(found.group("n")) if found else 0


def task_nodes(nodes: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One dict per task, in start order: ``name`` (the task's display name), ``phase``, ``message``, ``outputs``
    (``parameters`` and ``result``), ``attempts``, ``pod`` (the last attempt's node id, "" for skipped tasks),
    ``exit_handler`` (a task of the ``onExit`` handler), ``node`` (the node the phase comes from), ``last`` (the
    node of the last attempt)."""
    by_id = {str(k): v for k, v in nodes.items()}
    retry_of: dict[str, str] = {}  # attempt pod id -> its Retry node id
    for node_id, n in by_id.items():
        if n.get("type") == "Retry":
            for child in n.get("children") or []:
                retry_of[str(child)] = node_id
    tasks: list[dict[str, Any]] = []
    for node_id, n in sorted(by_id.items(), key=lambda kv: (kv[1].get("startedAt") or "~", kv[0])):
        kind = n.get("type")
        if kind == "Retry":
            attempts = [by_id[c] for c in (n.get("children") or []) if c in by_id]
            last = max(attempts, key=_attempt) if attempts else n
            task_node = n
        elif kind in LEAF_TYPES and node_id not in retry_of:
            attempts, last, task_node = ([n] if kind == "Pod" else []), n, n
        else:
            continue
        phase = task_node.get("phase") or "Pending"
        # the Retry node says "No more retries left"; the last attempt's message says why
        message = (last.get("message") or task_node.get("message") or "") if phase != "Succeeded" else (
            task_node.get("message") or "")
        outputs = task_node.get("outputs") or last.get("outputs") or {}
        tasks.append({
            "name": str(task_node.get("displayName") or task_node.get("name") or node_id),
            "phase": phase, "message": message, "outputs": dict(outputs),
            "attempts": len(attempts), "pod": str(last.get("id") or "") if last.get("type") == "Pod" else "",
            "exit_handler": ".onExit" in str(task_node.get("name") or ""),
            "node": task_node, "last": last,
        })
    return tasks


def output_parameters(task: Mapping[str, Any]) -> dict[str, str]:
    """name -> value of a task's output parameters."""
    return {p["name"]: str(p.get("value", "")) for p in (task.get("outputs") or {}).get("parameters") or []}
