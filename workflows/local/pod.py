"""One task as a subprocess: the pod's command, env, mounts and outputs mapped to this machine."""

import contextlib
import copy
import json
import os
import posixpath
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from steps.common.errors import StepError
from steps.common.secrets import SECRET_ENV_VARS, scrub
from workflows.argo.expr import render
from workflows.local.state import LOGS, RunState, TaskState
from workflows.local.template import RunError

_UNSUPPORTED_TEMPLATE = ("resource", "suspend", "steps", "http", "plugin", "data", "containerSet")
_WORKSPACE_PVC_ACTIONS = ("create", "apply", "delete", "patch")
_UNSUPPORTED_POD = ("initContainers", "sidecars")
# A template annotated with this key is not run locally (it watches a cluster object, e.g. the workspace PVC
# binding): the task succeeds with the annotation's value as its message, after its Pod has been validated.
LOCAL_RUN_ANNOTATION = "osft-pipeline.io/local-run"


@dataclass
class _Pod:
    """Everything a template's container would see, mapped to this machine."""

    mounts: list[tuple[str, Path]]  # (mount path, local dir), longest mount path first
    root: Path  # DIR/.pods/<task>: stand-in for the container's own filesystem
    private: Path | None = None  # a 0700 temp folder outside the workspace (the staged script); removed after

    def cleanup(self) -> None:
        """Remove what must not outlive the process (the staged script holds rendered inputs, secrets included)."""
        if self.private is not None:
            shutil.rmtree(self.private, ignore_errors=True)
            self.private = None

    def rewrite(self, text: str) -> str:
        for mount, local in self.mounts:
            text = re.sub(rf"(?<![\w.\-/]){re.escape(mount.rstrip('/'))}(?=/|$|[\s\"',;:\]\)}}])", str(local), text)
        return text

    def local_path(self, path: str) -> Path:
        mapped = self.rewrite(path)
        if mapped != path:
            return Path(mapped)
        return self.root / path.lstrip("/")



class PodExecutor:
    """Mixin of :class:`~workflows.local.engine.LocalRunner`: runs a script/container template as a subprocess.

    Needs ``self.doc``, ``self.workspace``, ``self.volumes``, ``self.python``, ``self.spec``, ``self.listener`` and the
    tag rendering of :class:`~workflows.local.render.TagRenderer`.
    """

    def _execute(self, state: RunState, t: TaskState, tmpl: Mapping[str, Any], inputs: dict[str, str]) -> None:
        t.started = time.time()
        t.phase = "Running"
        t.log = f"{LOGS}/{t.name}.log"
        state.save()
        self.listener(state, t.name)
        if "resource" in tmpl and self._is_workspace_pvc(tmpl):
            self._workspace_resource(state, t, tmpl, inputs)
            return
        try:
            self._check_pod(state, t, tmpl, inputs)
            skip = ((tmpl.get("metadata") or {}).get("annotations") or {}).get(LOCAL_RUN_ANNOTATION)
            if skip:
                t.phase, t.message, t.exit_code, t.finished = "Succeeded", str(skip), 0, time.time()
                (self.workspace / t.log).write_text(f"# not run locally ({LOCAL_RUN_ANNOTATION}): {skip}\n",
                                                    encoding="utf-8")
                return
            cmd, env, cwd, pod = self._prepare(state, t, tmpl, inputs)
        except StepError as exc:
            t.phase, t.message, t.finished = "Error", str(exc), time.time()
            (self.workspace / t.log).write_text(f"error: {exc}\n", encoding="utf-8")
            return
        deadline = tmpl.get("activeDeadlineSeconds") or tmpl.get("timeout")
        timeout = _seconds(deadline)
        secrets = state.secrets() + tuple(v for k, v in env.items() if k in SECRET_ENV_VARS and v)
        try:
            code, stdout, last_err, rss = self._spawn(state, t, cmd, env, cwd, secrets, timeout)
        finally:
            pod.cleanup()
        t.exit_code, t.peak_rss_mb = code, rss
        t.finished = time.time()
        if code != 0:
            t.phase = "Failed"
            t.message = scrub(last_err, secrets) if code != -9 or not timeout else \
                f"exceeded activeDeadlineSeconds={deadline}"
            return
        try:
            self._collect(t, tmpl, pod, stdout, self._context(state, inputs))
        except StepError as exc:
            t.phase, t.message = "Failed", str(exc)
            return
        t.phase = "Succeeded"

    def _global_values(self, state: RunState) -> dict[str, str]:
        from workflows.argo import podspec

        values = podspec.workflow_values(self.doc, state.parameters, name=state.name)
        values.update({"workflow.uid": state.uid, "workflow.namespace": state.namespace})
        return values

    def _check_pod(self, state: RunState, t: TaskState, tmpl: Mapping[str, Any], inputs: dict[str, str]) -> None:
        """Render the Pod the cluster would create (podSpecPatch merged, resources, volumes) and validate it as the
        API server would, although nothing of it is applied here: what a cluster refuses is refused locally."""
        if not (tmpl.get("script") or tmpl.get("container")):
            return
        from workflows.argo import podspec

        try:
            pod = podspec.pod_for(self.doc, tmpl, self._global_values(state), inputs)
        except podspec.RenderError as exc:
            raise RunError(f"task {t.name!r}: {exc} (Argo would fail this pod)") from None
        errors = podspec.k8s_errors(pod, podspec.K8S_VERSIONS[-1:])
        if errors:
            raise RunError(f"task {t.name!r}: the cluster would refuse its pod: {errors[0]}")
        main = next((c for c in pod["spec"].get("containers") or [] if c.get("name") == "main"), {})
        t.resources = dict(main.get("resources") or {})

    def _is_workspace_pvc(self, tmpl: Mapping[str, Any]) -> bool:
        res = tmpl.get("resource") or {}
        return res.get("action") in _WORKSPACE_PVC_ACTIONS and "kind: PersistentVolumeClaim" in str(
            res.get("manifest", "")) and "workspace" in getattr(self, "volumes", {})

    def _workspace_resource(self, state: RunState, t: TaskState, tmpl: Mapping[str, Any],
                            inputs: dict[str, str]) -> None:
        """The workspace PVC's resource template: its manifest is rendered and validated (kubernetes-validate,
        strict) as the cluster would take it, and must name the claim the workspace volume mounts. Creating it
        means the local workspace folder; deleting it keeps the folder (locally it is the run's record); a merge
        patch is applied to the claim as created and the result validated. What the cluster would do with the
        claim (owned by the workflow or not, deleted by a task) is tracked in ``state.claims`` (run.json)."""
        from workflows.argo import podspec

        res = tmpl["resource"]
        where = f"task {t.name}"
        try:
            manifest = podspec.resource_manifest(tmpl, self._global_values(state), inputs)
            if not isinstance(manifest, dict) or manifest.get("kind") != "PersistentVolumeClaim":
                raise RunError(f"{where}: resource.manifest does not render to a PersistentVolumeClaim")
            if res["action"] == "patch":
                manifest = self._patched_claim(state, res, manifest, where)
            errors = podspec.k8s_errors(manifest, podspec.K8S_VERSIONS[-1:])
            if errors:
                raise RunError(f"{where}: the cluster would refuse the workspace PVC: {errors[0]}")
            claim = self._workspace_claim(state)
            name = (manifest.get("metadata") or {}).get("name")
            if claim is not None and name != claim:
                raise RunError(f"{where}: the manifest names PVC {name!r} but the workspace volume mounts {claim!r}")
        except (StepError, podspec.RenderError) as exc:
            t.phase, t.message, t.finished = "Error", str(exc), time.time()
            (self.workspace / t.log).write_text(f"error: {exc}\n", encoding="utf-8")
            return
        claim_state = state.claims.setdefault(name, {"owned": False, "deleted_by": None})
        if res["action"] == "delete":
            note = f"{t.name}: PVC {name} not deleted locally: the workspace folder is the run's record"
            msg = "validated; the local workspace folder is kept"
            claim_state["deleted_by"] = t.name
        elif res["action"] == "patch":
            owned = bool((manifest.get("metadata") or {}).get("ownerReferences"))
            claim_state.update(owned=owned, manifest=manifest)
            note = f"{t.name}: PVC {name} patched: " + ("owned by the workflow (deleted with it)" if owned else
                                                         "no ownerReference (kept after the workflow is deleted)")
            msg = "validated; " + note.split(": ", 1)[1]
        else:
            claim_state.update(owned=bool(res.get("setOwnerReference")), manifest=manifest, deleted_by=None)
            self.workspace.mkdir(parents=True, exist_ok=True)
            size = ((manifest.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage")
            note = f"{t.name}: PVC {name} ({size}) is the local workspace folder {self.workspace}"
            msg = f"validated; workspace folder {self.workspace}"
        if note not in state.notes:
            state.notes.append(note)
        (self.workspace / t.log).write_text(f"# {res['action']} {manifest['kind']}/{name}: {msg}\n"
                                            + yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
        t.phase, t.message, t.exit_code, t.finished = "Succeeded", msg, 0, time.time()

    @staticmethod
    def _patched_claim(state: RunState, res: Mapping[str, Any], patch: dict[str, Any], where: str) -> dict[str, Any]:
        """The claim as created, with ``patch`` applied as a JSON merge patch (RFC 7386: null removes a field), as
        ``kubectl patch --type merge`` applies it; the ownerReference the controller added (setOwnerReference) is
        part of the claim as created."""
        if res.get("mergeStrategy") != "merge":
            raise RunError(f"{where}: only mergeStrategy merge is supported for a patch of the workspace claim")
        name = (patch.get("metadata") or {}).get("name")
        current = state.claims.get(name, {})
        if "manifest" not in current:
            raise RunError(f"{where}: patches PVC {name!r}, which no earlier task created (kubectl patch fails: "
                           "NotFound)")
        base = copy.deepcopy(current["manifest"])
        if current.get("owned") and "ownerReferences" not in (base.get("metadata") or {}):
            base.setdefault("metadata", {})["ownerReferences"] = [
                {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "name": state.name, "uid": state.uid,
                 "controller": True, "blockOwnerDeletion": True}]
        from workflows.argo.podspec import merge_patch

        return merge_patch(base, patch)

    def _workspace_claim(self, state: RunState) -> str | None:
        """The rendered claimName of the workflow volume named ``workspace`` (None when it is not a PVC)."""
        from workflows.argo import podspec

        vol = next((v for v in self.spec.get("volumes") or [] if v.get("name") == "workspace"), None)
        claim = ((vol or {}).get("persistentVolumeClaim") or {}).get("claimName")
        return podspec.render_value(claim, self._global_values(state), "spec.volumes[workspace]") if claim else None

    def _prepare(self, state: RunState, t: TaskState, tmpl: Mapping[str, Any],
                 inputs: dict[str, str]) -> tuple[list[str], dict[str, str], str, _Pod]:
        for feature in _UNSUPPORTED_TEMPLATE:
            if feature in tmpl:
                what = {"resource": "resource templates (Kubernetes objects such as a TrainJob) need a cluster",
                        "steps": "steps templates are not supported locally (use a dag)"}.get(
                    feature, f"{feature} templates are not supported locally")
                raise RunError(f"task {t.name!r} uses template {tmpl['name']!r}: {what}")
        if "dag" in tmpl:
            raise RunError(f"task {t.name!r}: nested dag template {tmpl['name']!r} is not supported locally")
        for feature in _UNSUPPORTED_POD:
            if tmpl.get(feature):
                raise RunError(f"template {tmpl['name']!r} uses {feature}, which the local runner does not support")
        body = tmpl.get("script") or tmpl.get("container")
        if body is None:
            raise RunError(f"template {tmpl['name']!r} has no script or container, so it cannot run locally")
        ctx = {**self._context(state, inputs, t.name.rpartition(".")[0] + "." if "." in t.name else ""),
               "task": t.name}
        where = f"task {t.name}"
        pod_root = self.workspace / ".pods" / t.name
        shutil.rmtree(pod_root, ignore_errors=True)
        pod_root.mkdir(parents=True)
        mounts: list[tuple[str, Path]] = []
        local_vols = {v["name"]: self._template_volume(v, ctx, where, pod_root) for v in tmpl.get("volumes") or []}
        for vm in body.get("volumeMounts") or []:
            base = local_vols.get(vm["name"]) or self.volumes.get(vm["name"])
            if base is None:
                raise RunError(f"template {tmpl['name']!r} mounts unknown volume {vm['name']!r}")
            local = base / vm["subPath"] if vm.get("subPath") else base
            local.mkdir(parents=True, exist_ok=True)
            mounts.append((vm["mountPath"], local))
        mounts += self._output_dirs(tmpl, body, mounts, pod_root)
        mounts.sort(key=lambda m: len(m[0]), reverse=True)
        pod = _Pod(mounts, pod_root)
        sub = lambda s, what: pod.rewrite(self._substitute(render(s), ctx, f"{where} {what}"))  # noqa: E731
        env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV_VARS}
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH", "")] if p])
        for e in body.get("env") or []:
            value = self._env_value(e, tmpl, t, sub)
            if value is not None:
                env[e["name"]] = value
        for ef in body.get("envFrom") or []:
            ref = ef.get("secretRef") or ef.get("configMapRef") or {}
            if not ref.get("optional"):
                raise RunError(f"template {tmpl['name']!r} takes envFrom {ref.get('name')!r}, which the local runner "
                               "cannot map; set the variables in env with secretKeyRef, or mark it optional")
            state.notes.append(f"{t.name}: optional envFrom {ref.get('name')!r} skipped locally")
        cmd = [sub(c, "command") for c in body.get("command") or []] + [sub(a, "args") for a in body.get("args") or []]
        if "source" in body:
            # Argo stages the rendered source at /argo/staging/script inside the pod; it holds every
            # {{inputs.parameters}} value, secret ones included, so here it lives in a private temp folder
            # outside the workspace and is deleted as soon as the process exits (PodExecutor._execute).
            pod.private = Path(tempfile.mkdtemp(prefix=f"osft-{t.name.replace('/', '-')}-"))
            script = pod.private / "script"
            fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(sub(body["source"], "source"))
            cmd.append(str(script))
        if not cmd:
            raise RunError(f"template {tmpl['name']!r} has no command: the image's entrypoint is unknown locally")
        if cmd[0] in ("python", "python3") or re.fullmatch(r"(/usr(/local)?/bin/)?python3?(\.\d+)?", cmd[0]):
            cmd[0] = self.python
        cwd = sub(body["workingDir"], "workingDir") if body.get("workingDir") else os.getcwd()
        if body.get("workingDir") and not Path(cwd).is_dir():
            cwd = str(pod.local_path(body["workingDir"]))
            Path(cwd).mkdir(parents=True, exist_ok=True)
        return cmd, env, cwd, pod

    def _template_volume(self, vol: Mapping[str, Any], ctx: Mapping[str, Any], where: str, pod_root: Path) -> Path:
        """A template's own volume: a PersistentVolumeClaim (its claimName rendered) is the folder given with
        ``--pvc CLAIM=DIR``; a claim without one fails as the pod would hang Pending on a cluster. Other volumes
        (emptyDir, …) are a fresh folder of the pod."""
        pvc = vol.get("persistentVolumeClaim")
        if not pvc:
            return pod_root / "volumes" / vol["name"]
        claim = self._substitute(render(str(pvc.get("claimName", ""))), ctx, f"{where} volume {vol['name']}")
        folders = getattr(self, "pvcs", {}) or {}
        if claim not in folders:
            raise RunError(f"{where} mounts PersistentVolumeClaim {claim!r}, which does not exist locally: pass "
                           f"--pvc {claim}=DIR (on a cluster the pod would stay Pending until the claim exists)")
        return Path(folders[claim])

    @staticmethod
    def _output_dirs(tmpl: Mapping[str, Any], body: Mapping[str, Any], mounts: list[tuple[str, Path]],
                     pod_root: Path) -> list[tuple[str, Path]]:
        """Folders the template writes outputs to outside its volumes (``/tmp/hera-outputs``, ``/tmp/outputs``):
        mapped under the pod root, so parameter values and env naming them are rewritten too."""
        outputs = tmpl.get("outputs") or {}
        paths = [(p.get("valueFrom") or {}).get("path") for p in outputs.get("parameters") or []]
        paths = [posixpath.dirname(str(x)) for x in paths + [a.get("path") for a in outputs.get("artifacts") or []]
                 if x and "{{" not in str(x)]
        paths += [str(e.get("value")) for e in body.get("env") or [] if e.get("name") == "hera__outputs_directory"]
        out: list[tuple[str, Path]] = []
        for d in sorted(set(paths)):
            d = d.rstrip("/")
            under_mount = any(d == m.rstrip("/") or d.startswith(m.rstrip("/") + "/") for m, _ in mounts)
            if d.count("/") >= 2 and d.startswith("/") and not under_mount:  # never map / or /tmp wholesale
                local = pod_root / d.lstrip("/")
                local.mkdir(parents=True, exist_ok=True)
                out.append((d, local))
        return out

    def _env_value(self, e: Mapping[str, Any], tmpl: Mapping[str, Any], t: TaskState,
                   sub: Callable[[Any, str], str]) -> str | None:
        name = e["name"]
        if "valueFrom" not in e:
            return sub(e.get("value", ""), f"env {name}")
        vf = e["valueFrom"]
        ref = vf.get("secretKeyRef") or vf.get("configMapKeyRef")
        if ref is not None:
            kind = "secret" if "secretKeyRef" in vf else "configmap"
            if os.environ.get(name):
                return os.environ[name]
            if ref.get("optional"):
                return None
            raise RunError(f"task {t.name!r} needs env {name} from {kind} {ref.get('name')!r} (key {ref.get('key')!r}):"
                           f" export {name}=… locally, or make the {kind} reference optional")
        if "fieldRef" in vf:
            fp = vf["fieldRef"].get("fieldPath")
            values = {"metadata.name": f"local-{t.name}", "metadata.namespace": "local", "spec.nodeName": "localhost",
                      "status.podIP": "127.0.0.1", "spec.serviceAccountName": self.spec.get("serviceAccountName", "")}
            if fp in values:
                return values[fp]
            raise RunError(f"template {tmpl['name']!r}: env {name} fieldRef {fp!r} is not supported locally")
        raise RunError(f"template {tmpl['name']!r}: env {name} valueFrom {list(vf)} is not supported locally")

    def _spawn(self, state: RunState, t: TaskState, cmd: list[str], env: dict[str, str], cwd: str,
               secrets: tuple[str, ...], timeout: float | None) -> tuple[int, str, str, float | None]:
        log_path = self.workspace / t.log
        out_lines: list[str] = []
        err_tail: list[str] = []
        lock = threading.Lock()
        with open(log_path, "w", encoding="utf-8") as log:
            log.write(f"$ {' '.join(cmd)}\n")
            log.flush()
            try:
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd,
                                        start_new_session=True)
            except OSError as exc:
                log.write(f"error: {exc}\n")
                return 127, "", f"cannot start {cmd[0]!r}: {exc.strerror}", None
            self._proc = proc

            def pump(stream: Any, is_out: bool) -> None:
                for raw in iter(stream.readline, b""):
                    line = raw.decode("utf-8", "replace")
                    if is_out:
                        out_lines.append(line)
                    clean = scrub(line.rstrip("\n"), secrets)
                    with lock:
                        log.write(clean + "\n")
                        log.flush()
                    if not is_out and clean.strip():
                        err_tail.append(clean)
                        del err_tail[:-40]
                    progress = parse_progress(clean)
                    if progress:
                        t.progress = progress
                        self.listener(state, t.name)
                stream.close()

            threads = [threading.Thread(target=pump, args=(proc.stdout, True), daemon=True),
                       threading.Thread(target=pump, args=(proc.stderr, False), daemon=True)]
            for th in threads:
                th.start()
            done = threading.Event()
            threading.Thread(target=self._watch_metrics, args=(state, t, done), daemon=True).start()
            timer = threading.Timer(timeout, self._kill, args=(proc,)) if timeout else None
            if timer:
                timer.start()
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            except BaseException:
                self._kill(proc)
                with contextlib.suppress(ChildProcessError):
                    os.wait4(proc.pid, 0)
                proc.returncode = -9
                raise
            finally:
                if timer:
                    timer.cancel()
            done.set()
            proc.returncode = code = os.waitstatus_to_exitcode(status)
            for th in threads:
                th.join(timeout=10)
            self._proc = None
            log.write(f"# exit code {code}\n")
        return code, "".join(out_lines), one_line_error(err_tail, code), round(usage.ru_maxrss / 1024, 1)

    def _watch_metrics(self, state: RunState, t: TaskState, done: threading.Event) -> None:
        """Training progress from a ``training_metrics_*.jsonl`` the running step writes in the workspace
        (mini-trainer's workers log there, not to the step's own stderr)."""
        started = t.started or time.time()
        while not done.wait(1.0):
            files = [f for f in self.workspace.glob("*/training_metrics_*.jsonl") if f.stat().st_mtime >= started]
            if not files:
                continue
            with contextlib.suppress(OSError), open(max(files, key=lambda f: f.stat().st_mtime), "rb") as fh:
                fh.seek(max(0, fh.seek(0, os.SEEK_END) - 4096))
                lines = fh.read().decode("utf-8", "replace").splitlines()
                progress = next((p for p in map(parse_progress, reversed(lines)) if p), "")
                if progress and progress != t.progress:
                    t.progress = progress
                    self.listener(state, t.name)

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def _collect(self, t: TaskState, tmpl: Mapping[str, Any], pod: _Pod, stdout: str, ctx: Mapping[str, Any]) -> None:
        t.result = stdout.rstrip("\n")
        outputs = tmpl.get("outputs") or {}
        for p in outputs.get("parameters") or []:
            n = p["name"]
            vf = p.get("valueFrom") or {}
            if "value" in p:
                t.outputs[n] = self._substitute(render(p["value"]), ctx, f"task {t.name} output {n}")
                continue
            if "path" not in vf:
                raise RunError(f"template {tmpl['name']!r}: output parameter {n!r} uses valueFrom {list(vf)}; only "
                               "path (and default) are supported locally")
            local = pod.local_path(vf["path"])
            if not local.is_file() and pod.rewrite(vf["path"]) == vf["path"] and Path(vf["path"]).is_file():
                local = Path(vf["path"])
            if local.is_file():
                t.outputs[n] = local.read_text(encoding="utf-8").strip()
            elif "default" in vf:
                t.outputs[n] = render(vf["default"])
            else:
                raise RunError(f"output parameter {n!r}: {vf['path']} was not written (looked at {local})")
        for a in outputs.get("artifacts") or []:
            if "path" not in a:
                continue
            local = pod.local_path(a["path"])
            if local.exists():
                t.artifacts[a["name"]] = str(local)
            elif not a.get("optional"):
                raise RunError(f"output artifact {a['name']!r}: {a['path']} was not written (looked at {local})")


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    text = str(value).strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(s|m|h)?", text)
    if not m:
        return None
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


_EXC_LINE = re.compile(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception|Exit|Interrupt))(?:: (.*))?$")


def one_line_error(lines: list[str], code: int) -> str:
    """The one line that says why a step failed: ``error: …`` or the exception line of a traceback."""
    for line in reversed(lines):
        s = line.strip()
        if s.startswith("error: "):
            return s[len("error: "):]
        m = _EXC_LINE.match(s)
        if m:
            name, msg = m.group(1), (m.group(2) or "").strip()
            return msg if name == "StepError" and msg else f"{name}: {msg}" if msg else name
    if code < 0:
        return f"killed by signal {-code}"
    tail = [x.strip() for x in lines if x.strip()]
    return tail[-1][:300] if tail else f"exit code {code}"


_JSON_PROGRESS = re.compile(r"\{.*\"step\"\s*:\s*\d+.*\"loss\"\s*:.*\}")
_TEXT_PROGRESS = re.compile(r"\bstep[\s:=]+(\d+)(?:\s*/\s*(\d+))?\b.*?\bloss[\s:=]+([0-9.]+(?:[eE][-+]?\d+)?)", re.I)


def parse_progress(line: str) -> str:
    """``step N[/M] loss X`` from a training log line (mini-trainer JSON metrics or text), else ''."""
    m = _JSON_PROGRESS.search(line)
    if m:
        try:
            d = json.loads(m.group(0))
            total = d.get("total_steps") or d.get("steps_per_epoch")
            return f"step {d['step']}" + (f"/{total}" if total else "") + f" loss {float(d['loss']):.4f}"
        except (ValueError, KeyError, TypeError):
            pass
    m = _TEXT_PROGRESS.search(line)
    if m:
        return f"step {m.group(1)}" + (f"/{m.group(2)}" if m.group(2) else "") + f" loss {float(m.group(3)):.4f}"
    return ""
