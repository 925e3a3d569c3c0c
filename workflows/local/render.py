"""Argo's tag substitution as the local engine applies it: ``{{workflow.*}}``, ``{{inputs.*}}``,
``{{tasks.X.outputs.*}}`` and ``{{= expression }}`` tags, and template inputs with their defaults.

Strings are cut exactly as Argo's template engine (fasttemplate) cuts them: a tag ends at the first ``}}``,
so a tag that would be truncated on the cluster is truncated here too and fails the same way."""

import json
import time
from collections.abc import Mapping
from typing import Any

from workflows.argo import fasttemplate
from workflows.argo.expr import ExprError, eval_expression, render
from workflows.local.state import RunState, _iso
from workflows.local.template import RunError


class TagRenderer:
    """Mixin of :class:`~workflows.local.engine.LocalRunner`: resolves tags against the run's state.

    Needs ``self.spec`` (the WorkflowTemplate's spec).
    """

    spec: Mapping[str, Any]

    def _context(self, state: RunState, inputs: Mapping[str, str], prefix: str = "") -> dict[str, Any]:
        failures = [{"displayName": t.name, "templateName": t.template, "phase": t.phase, "message": t.message,
                     "exitCode": t.exit_code} for t in state.tasks.values()
                    if t.phase in ("Failed", "Error") and t.kind == "pod"]
        return {"state": state, "inputs": inputs, "failures": failures, "prefix": prefix}

    def _lookup(self, path: list[str], ctx: Mapping[str, Any], where: str) -> str:
        state: RunState = ctx["state"]
        joined = ".".join(path)
        wf = {"name": state.name, "uid": state.uid, "namespace": state.namespace,
              "creationTimestamp": _iso(state.started), "serviceAccountName": self.spec.get("serviceAccountName", ""),
              "mainEntrypoint": self.spec.get("entrypoint", "")}
        if path[0] == "workflow":
            if len(path) == 3 and path[1] == "parameters" and path[2] in state.parameters:
                return state.parameters[path[2]]
            if len(path) == 2 and path[1] in wf:
                return str(wf[path[1]])
            if path[1:] == ["status"]:
                return state.phase
            if path[1:] == ["failures"]:
                return json.dumps(ctx["failures"])
            if path[1:] == ["duration"]:
                return f"{time.time() - state.started:.3f}"
        if path[:2] == ["inputs", "parameters"]:
            if len(path) == 2:
                return json.dumps([{"name": k, "value": v} for k, v in ctx["inputs"].items()])
            if len(path) == 3 and path[2] in ctx["inputs"]:
                return ctx["inputs"][path[2]]
        if path[0] == "tasks" and len(path) >= 4 and path[2] == "outputs":
            t = state.tasks.get(ctx.get("prefix", "") + path[1])
            if t is None:
                raise RunError(f"{where}: {{{{{joined}}}}} refers to unknown task {path[1]!r}")
            if t.phase != "Succeeded":
                raise RunError(f"{where}: {{{{{joined}}}}} is unavailable: task {path[1]!r} is {t.phase}")
            if path[3] == "result" and len(path) == 4 and t.result is not None:
                return t.result
            if path[3] == "parameters" and len(path) == 5 and path[4] in t.outputs:
                return t.outputs[path[4]]
            if path[3] == "artifacts":
                raise RunError(f"{where}: {{{{{joined}}}}}: artifact passing is not supported locally")
        if path[0] == "pod" and path[1:] == ["name"]:
            return f"{state.name}-{ctx.get('task', 'pod')}"
        raise RunError(f"{where}: cannot resolve {{{{{joined}}}}}")

    def _substitute(self, text: str, ctx: Mapping[str, Any], where: str) -> str:
        def evaluate(expr: str) -> Any:
            try:
                return eval_expression(expr, lambda p: _typed(self._lookup(p, ctx, where)))
            except ExprError as exc:
                raise RunError(f"{where}: {exc}") from None

        try:
            return fasttemplate.render(text, lambda name: self._lookup(name.split("."), ctx, where), evaluate)
        except fasttemplate.TemplateError as exc:  # a {{ with no }}: Argo refuses the whole template
            raise RunError(f"{where}: {exc}") from None

    def _inputs(self, tmpl: Mapping[str, Any], given: Mapping[str, str], task: str,
                state: RunState | None = None) -> dict[str, str]:
        declared = (tmpl.get("inputs") or {}).get("parameters") or []
        if (tmpl.get("inputs") or {}).get("artifacts"):
            raise RunError(f"template {tmpl['name']!r} (task {task}) declares input artifacts, which the local "
                           "runner does not support")
        out: dict[str, str] = {}
        for p in declared:
            n = p["name"]
            if n in given:
                value = given[n]
            elif "value" in p or "default" in p:
                value = render(p["value"] if "value" in p else p["default"])
                if state is not None:  # template-level values may use globals ({{workflow.status}} in onExit)
                    value = self._substitute(value, self._context(state, {}), f"task {task} input {n}")
            else:
                raise RunError(f"task {task}: input parameter {n!r} of template {tmpl['name']!r} has no value")
            enum = p.get("enum")
            if enum and value not in [render(e) for e in enum]:
                raise RunError(f"task {task}: {n}={value!r} must be one of {', '.join(render(e) for e in enum)}")
            out[n] = value
        return out


def _typed(text: str) -> Any:
    """Argo expression variables are strings; numbers stay strings too (use asInt/asFloat)."""
    return text
