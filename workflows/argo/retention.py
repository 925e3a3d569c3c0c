"""No dangling URI, ever: what a run's cleanup leaves of the workspace claim, against what register records.

A registered version must stay loadable after the run: when register records the workspace copy
(``pvc://<workspace claim>/…``: a registry address and no storage URI), the claim must survive the run's
cleanup, which on a cluster is (1) the exit handler's tasks (``delete-workspace``) and (2) the Kubernetes
garbage collector deleting everything the workflow owns when its ttlStrategy deletes the workflow. And a
failed run that registered nothing must not leave an unowned claim behind forever.

This module simulates that cleanup from the template as written, for a set of parameter values and a final
workflow status, with Argo's semantics: ``when`` conditions rendered and evaluated as Argo evaluates them,
resource templates applied in DAG order (create/apply with ``setOwnerReference`` adds the controller's
ownerReference; a ``merge`` patch is RFC 7386, so ``ownerReferences: null`` removes it; delete deletes), then
the owner's deletion. :func:`retention_errors` is the lint rule; each of its checks has a mutation test.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from workflows.argo import podspec
from workflows.argo.expr import ExprError, eval_when

REGISTER_ENTRY = "steps.register:register_model"
PREFLIGHT_ENTRIES = ("workflows.argo.preflight:preflight", "workflows.argo.preflight:preflight_full")
STATUS_ENTRY = "steps.finish:record_status"
# The parameter sets simulated: registry address x storage URI (the values that decide where the model lives)
REGISTRY_VALUES = ("", "model-registry.ml.svc")
STORAGE_VALUES = ("", "s3://models/osft", "pvc://models/osft")


@dataclass
class Claim:
    """What the cluster holds of one PVC the run created."""

    owned: bool
    deleted_by: str | None = None

    def fate(self) -> str:
        if self.deleted_by:
            return f"deleted by task {self.deleted_by}"
        return "deleted with the workflow (ownerReference)" if self.owned else "kept"


@dataclass
class Outcome:
    """One simulated run: which tasks ran, the claims' fates, the pvc:// claim register recorded (if any)."""

    ran: list[str] = field(default_factory=list)
    claims: dict[str, Claim] = field(default_factory=dict)
    registered_claim: str | None = None
    registered: bool = False


def _entry(tmpl: Mapping[str, Any]) -> str | None:
    args = (tmpl.get("script") or {}).get("args") or []
    return args[args.index("-e") + 1] if "hera.workflows.runner" in args and "-e" in args else None


def _order(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from workflows.argo.expr import depends_targets

    deps = {t["name"]: depends_targets(str(t["depends"])) if t.get("depends") else list(t.get("dependencies") or [])
            for t in tasks}
    done: list[str] = []
    while len(done) < len(tasks):
        ready = [n for n in deps if n not in done and all(d in done for d in deps[n])]
        if not ready:
            raise ValueError(f"dependency cycle among {sorted(set(deps) - set(done))}")
        done.append(ready[0])
    by_name = {t["name"]: t for t in tasks}
    return [by_name[n] for n in done]


def _preflight_outputs(values: Mapping[str, str]) -> dict[str, str]:
    from workflows.argo.preflight import routing

    workers = values.get("workflow.parameters.phase_02_train_man_train_workers", "1")
    storage = values.get("workflow.parameters.phase_04_registry_opt_storage_uri", "")
    return {"train_mode": "trainjob" if workers.isdigit() and int(workers) > 1 else "single",
            **routing({"phase_04_registry_opt_storage_uri": storage})}


class _Run:
    def __init__(self, doc: Mapping[str, Any], values: Mapping[str, str], status: str, fail_at: str | None) -> None:
        self.doc = doc
        self.templates = {t["name"]: t for t in (doc.get("spec") or {}).get("templates") or []}
        self.gv = {**podspec.workflow_values(doc, values, name="osft-run-abcde"), "workflow.status": status}
        self.fail_at = fail_at
        self.out = Outcome()

    def _when(self, task: Mapping[str, Any], local: Mapping[str, str], where: str) -> bool:
        if task.get("when") is None:
            return True
        text = podspec.render_value(str(task["when"]), local, f"{where} when")
        try:
            return eval_when(text)
        except ExprError as exc:
            raise podspec.RenderError(f"{where}: {exc}") from None

    def dag(self, name: str, exit_handler: bool = False) -> bool:
        """Run a DAG template's tasks in order; False once the simulated failure point is reached."""
        local = dict(self.gv)
        for task in _order([dict(t) for t in (self.templates[name].get("dag") or {}).get("tasks") or []]):
            where = f"task {task['name']}"
            if not exit_handler and task["name"] == self.fail_at:
                return False
            if not self._when(task, local, where):
                continue
            tmpl = self.templates.get(task.get("template", ""), {})
            args = {p["name"]: str(p.get("value", "")) for p in (task.get("arguments") or {}).get("parameters") or []}
            inputs = podspec.template_inputs(tmpl, args, local, where)
            self.out.ran.append(task["name"])
            entry = _entry(tmpl)
            if "resource" in tmpl:
                self._resource(task["name"], tmpl, inputs)
            elif entry in PREFLIGHT_ENTRIES:
                local.update({f"tasks.{task['name']}.outputs.parameters.{k}": v
                              for k, v in _preflight_outputs(self.gv).items()})
            elif entry == REGISTER_ENTRY:
                self.out.registered = True
                if not inputs.get("storage_uri", "").strip() and inputs.get("pvc_claim", "").strip():
                    self.out.registered_claim = inputs["pvc_claim"].split("/")[0]
            elif entry == STATUS_ENTRY:
                status = "registered" if self.out.registered and self.gv["workflow.status"] == "Succeeded" else ""
                local[f"tasks.{task['name']}.outputs.parameters.registration_status"] = status
            else:  # another step: its output parameters take their defaults (the dataset's data_status: "new")
                for p in (tmpl.get("outputs") or {}).get("parameters") or []:
                    default = (p.get("valueFrom") or {}).get("default")
                    if default is not None:
                        local[f"tasks.{task['name']}.outputs.parameters.{p['name']}"] = str(default)
        return True

    def _resource(self, task: str, tmpl: Mapping[str, Any], inputs: Mapping[str, str]) -> None:
        res = tmpl["resource"]
        manifest = podspec.resource_manifest(tmpl, self.gv, inputs)
        if not isinstance(manifest, dict) or manifest.get("kind") != "PersistentVolumeClaim":
            return
        name = str((manifest.get("metadata") or {}).get("name"))
        action = res.get("action")
        if action in ("create", "apply"):
            self.out.claims[name] = Claim(owned=bool(res.get("setOwnerReference")))
        elif name in self.out.claims and action == "delete":
            self.out.claims[name].deleted_by = task
        elif name in self.out.claims and action == "patch" and res.get("mergeStrategy") == "merge":
            meta = manifest.get("metadata") or {}
            if "ownerReferences" in meta:  # null removes them all; a list replaces them
                self.out.claims[name].owned = any(o.get("kind") == "Workflow" for o in meta["ownerReferences"] or [])


def simulate(doc: Mapping[str, Any], values: Mapping[str, str], status: str = "Succeeded",
             fail_at: str | None = None) -> Outcome:
    """The run's cleanup as a cluster does it, for parameter ``values`` (a failed run stops before ``fail_at``)."""
    spec = doc.get("spec") or {}
    run = _Run(doc, values, status, fail_at)
    run.dag(spec["entrypoint"])
    if spec.get("onExit") in run.templates:
        run.dag(spec["onExit"], exit_handler=True)
    return run.out


def retention_errors(doc: Mapping[str, Any]) -> list[str]:
    """A registered pvc:// URI whose claim the run's cleanup deletes (dangling), and a claim a failed run that
    registered nothing leaves unowned and undeleted (leaked), for every registry/storage combination."""
    declared = {p["name"] for p in ((doc.get("spec") or {}).get("arguments") or {}).get("parameters") or []}
    if "phase_04_registry_man_address" not in declared:
        return []
    errors: list[str] = []
    entry = (doc.get("spec") or {}).get("entrypoint")
    main = [t["name"] for t in _order([dict(t) for t in ((
        {t["name"]: t for t in doc["spec"]["templates"]}.get(entry) or {}).get("dag") or {}).get("tasks") or []])]
    for address in REGISTRY_VALUES:
        for storage in STORAGE_VALUES:
            if storage and "phase_04_registry_opt_storage_uri" not in declared:
                continue  # a template without publishing: only the workspace copy can be registered
            values = {"phase_04_registry_man_address": address} | (
                {"phase_04_registry_opt_storage_uri": storage} if "phase_04_registry_opt_storage_uri" in declared
                else {})
            label = f"address={address!r}, storage_uri={storage!r}"
            try:
                ok = simulate(doc, values)
                failures = [simulate(doc, values, "Failed", fail_at=t) for t in main]
            except (podspec.RenderError, ValueError, KeyError) as exc:
                errors.append(f"cleanup with {label}: cannot simulate: {exc}")
                continue
            claim = ok.registered_claim
            if claim is not None:
                fate = ok.claims[claim].fate() if claim in ok.claims else "never created by the run"
                if fate != "kept":
                    errors.append(f"with {label} register records pvc://{claim}/… but after the run's cleanup the "
                                  f"claim is {fate}: the registered URI would dangle (release the claim before "
                                  "register and spare it in the exit handler)")
            for t, out in zip(main, failures, strict=True):
                leaked = [n for n, c in out.claims.items() if c.fate() == "kept"]
                if leaked:
                    errors.append(f"with {label} a run failing at task {t} (nothing registered) leaves claim "
                                  f"{leaked[0]} unowned and undeleted: give it back to the workflow in the exit "
                                  "handler")
    return sorted(set(errors), key=errors.index)
