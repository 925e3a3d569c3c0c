"""Step 4: register the trained model in a Kubeflow Model Registry (skipped when no address is given).

Writes ``registry/registration.json`` (the success marker) and one line to ``pipeline_log.txt``.
Registration is idempotent: the same version with the same URI is reported as ``already registered``.
"""

import datetime as _dt
import os
import re
from pathlib import Path
from typing import Any

from steps.common.errors import StepError
from steps.common.secrets import SA_NAMESPACE_PATH, redact_uri, scrub
from steps.common.summary import write_summary
from steps.common.workspace import Workspace, remove_outputs, write_json
from steps.register.client import API_PREFIX, CLIENT_PIN, Connection, connect, find_token, parse_address
from steps.register.metadata import Scalar, base_model_of, build_properties, summary_dataset_uri

STEP = "register"
ATTEMPT_JSON = "attempt.json"  # written before the first write to the registry (see _register)
_SEMVER = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")
_URI = re.compile(r"([a-z][a-z0-9+.-]*)://\S+")
_LOCAL_SCHEMES = ("file", "local")


def _version_name(version: str) -> str:
    v = version.strip()
    if not v or any(c.isspace() for c in v) or len(v) > 128:
        raise StepError(f"version={version!r} is not usable: give e.g. 1.0.0, or 'auto' to bump the latest")
    return v


def next_version(names: list[str]) -> str:
    """Patch bump past the highest ``X.Y.Z`` among ``names`` (``1.0.0`` when there is none)."""
    found = [tuple(int(g) for g in m.groups()) for n in names if (m := _SEMVER.fullmatch(n.strip()))]
    if not found:
        return "1.0.0"
    major, minor, patch = max(found)
    return f"{major}.{minor}.{patch + 1}"


def _namespace(namespace: str) -> str:
    if namespace:
        return namespace
    try:
        return Path(SA_NAMESPACE_PATH).read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def model_location(ws: Workspace, model_uri: str, pvc_claim: str) -> tuple[str, str]:
    """(uri, path of the model inside the workspace). ``uri`` is '' when it cannot be told (local run)."""
    if model_uri.strip():
        uri = model_uri.strip()
        m = _URI.fullmatch(uri)
        if not m or m.group(1) in _LOCAL_SCHEMES:
            raise StepError(f"--model-uri {uri!r} is not a remote URI: give s3://bucket/key, pvc://claim/path, oci:// "
                            "or another URI a serving stack can read, never a container-local path")
        if redact_uri(uri) != uri:
            raise StepError("--model-uri holds credentials: register a URI without them (the serving stack gets "
                            "access through its own storage secret)")
        return uri, ""
    model = ws.trained_model()
    try:
        rel = model.relative_to(ws.root).as_posix()
    except ValueError:
        raise StepError(f"the trained model {model} lies outside the workspace {ws.root}: pass --model-uri") from None
    claim = pvc_claim.strip().strip("/")
    if not claim:
        return "", rel
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?(/[^/\s]+)*", claim):
        raise StepError(f"--pvc-claim {pvc_claim!r} is not a PVC name (optionally followed by /sub/dir)")
    return f"pvc://{claim}/{rel}", rel


def published_location(ws: Workspace, storage_uri: str, model_uri: str) -> tuple[str, dict[str, Any]]:
    """(uri, publish record) of the model the publish step stored at ``storage_uri``: register records that
    durable URI, never the workspace copy, when a storage URI is set."""
    from steps.publish import published_uri

    record = published_uri(ws, storage_uri)
    if model_uri.strip() and model_uri.strip() != record["uri"]:
        raise StepError(f"--model-uri {model_uri!r} and the published {record['uri']!r} differ: give one of "
                        "--model-uri and --storage-uri")
    return record["uri"], record


def storage_fields(uri: str) -> dict[str, str]:
    """The artifact's ``storageKey`` (the secret holding the storage credentials) and ``storagePath`` (the path
    inside the bucket) for an s3:// URI; none for other schemes (the URI says it all)."""
    if not uri.startswith("s3://"):
        return {}
    _, _, path = uri.removeprefix("s3://").partition("/")
    return {"storage_key": "s3-secret", "storage_path": path}


def publish_properties(record: dict[str, Any]) -> dict[str, Scalar]:
    """The manifest's checksums as version properties, so a consumer can verify what it loads."""
    props: dict[str, Scalar] = {"publish.manifest": record["manifest"],
                                "publish.manifest_sha256": str(record.get("manifest_sha256") or ""),
                                "publish.files": len(record.get("files") or []),
                                "publish.total_bytes": int(record.get("total_bytes") or 0)}
    for f in record.get("files") or []:
        props[f"publish.sha256.{f['path']}"] = f["sha256"]
        props[f"publish.size.{f['path']}"] = int(f["size"])
    return props


def lineage_properties(ws: Workspace) -> dict[str, Scalar]:
    """The lineage facts of an accepted version (publish/lineage.json's ledger) as version properties: parent
    version, chain, data watermark, held-out (retention) scores and backward transfer; none without a lineage."""
    import json

    try:
        record = json.loads((ws.root / "publish" / "lineage.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict):
        return {}
    props: dict[str, Scalar] = {"lineage.accepted": bool(record.get("accepted"))}
    ledger = record.get("ledger") or {}
    if not record.get("accepted") or not isinstance(ledger, dict):
        return props
    props.update({"lineage.version": str(ledger.get("version") or ""),
                  "lineage.parent_version": str(ledger.get("parent") or ""),
                  "lineage.chain": " -> ".join(str(v) for v in ledger.get("chain") or []),
                  "lineage.uri": str(record.get("lineage_uri") or "")})
    mark = ledger.get("watermark") or {}
    if isinstance(mark, dict) and mark:
        props["lineage.watermark.time"] = str(mark.get("time") or "")
        props["lineage.watermark.key"] = str(mark.get("key") or "")
    for key in ("backward_transfer", "worst_forgetting", "max_forgetting"):
        if isinstance(ledger.get(key), int | float):
            props[f"lineage.{key}"] = float(ledger[key])
    for v, entry in (ledger.get("scores") or {}).items():
        if isinstance(entry, dict) and isinstance(entry.get("loss"), int | float):
            props[f"lineage.retention.{v}.loss"] = float(entry["loss"])
    return props


def validate_inputs(address: str, port: int, name: str, version: str, format_version: str,
                    format_name: str = "pytorch", author: str = "pipeline", description: str = "") -> None:
    """The step's checks of its settings, before it reads the workspace (the pipeline's preflight applies them
    when a registry address is given)."""
    if not name.strip():
        raise StepError("name is empty: give the registered model's name")
    _version_name(version)
    if not format_version.strip():
        raise StepError("format_version is empty: give the model format's version (e.g. 2.9)")
    if not format_name.strip():
        raise StepError("format_name is empty: give the model format's name (e.g. pytorch, safetensors)")
    if not author.strip():
        raise StepError("author is empty: give who registers the model (recorded as its author and owner)")
    if len(description) > 4096:
        raise StepError(f"description is {len(description)} characters long: keep it under 4096")
    if address.strip():
        parse_address(address, port)


def _write_record(ws: Workspace, record: dict[str, Any]) -> Path:
    plan = record.get("would_register") or {}
    write_summary(ws.root, "registry/summary.json", {
        k: record.get(k, plan.get(k)) for k in ("status", "name", "version", "uri", "gate", "registered_model_id",
                                                "model_version_id", "model_artifact_id", "server", "reason")
        if record.get(k, plan.get(k)) is not None} | {"record": "registry/registration.json"})
    return write_json(ws.registry_dir / "registration.json", record)


def _existing(conn: Connection, name: str, version: str) -> tuple[Any, Any, Any]:
    """(registered model, version, artifact) already in the registry, each None when absent."""
    mr = conn.client
    rm = mr.get_registered_model(name)
    if rm is None:
        return None, None, None
    mv = mr.get_model_version(name, version)
    if mv is None:
        return rm, None, None
    return rm, mv, mr.get_model_artifact(name, version)


def _resolve_version(conn: Connection, name: str, version: str, uri: str) -> str:
    """``auto`` → patch bump past the latest semver version; a retried run whose latest version has this URI
    reuses that version (so the re-run reports ``already registered``)."""
    if version != "auto":
        return version
    mr = conn.client
    if mr.get_registered_model(name) is None:
        return "1.0.0"
    names = [mv.name for mv in mr.get_model_versions(name).page_size(100)]
    semver = [n for n in names if _SEMVER.fullmatch(n)]
    if semver:
        latest = max(semver, key=lambda n: tuple(int(g) for g in _SEMVER.fullmatch(n).groups()))
        art = mr.get_model_artifact(name, latest)
        if art is not None and art.uri == uri:
            return latest
    return next_version(names)


def register_model(workspace: str, address: str = "", port: int = 8080, name: str = "osft-model",
                   version: str = "1.0.0", author: str = "pipeline", format_name: str = "pytorch",
                   format_version: str = "2.9", model_uri: str = "", force: bool = False, description: str = "",
                   token_env: str = "MODEL_REGISTRY_TOKEN", ca_cert: str = "", pvc_claim: str = "",
                   pipeline_name: str = "osft-minimal-pipeline", workflow_name: str = "", workflow_uid: str = "",
                   namespace: str = "", dataset_uri: str = "", base_model: str = "", retries: int = 3,
                   storage_uri: str = "") -> dict:
    """Register the trained model, its version and artifact in a Kubeflow Model Registry.

    Args:
        workspace: The run's workspace directory (train/model, train/metrics.json, eval/*.json are read).
        address: Registry host or URL (http(s)://host[:port], host, host:port); empty = skip (dry run).
        port: Registry port when the address has none (0 = 443 for https, 80 for http).
        name: Registered model name.
        version: Version name, or 'auto' to bump the patch of the latest X.Y.Z version (1.0.0 when none).
        author: Author and owner recorded in the registry.
        format_name: Model format name (e.g. pytorch, safetensors).
        format_version: Model format version recorded on the artifact (upstream's default "2.9").
        model_uri: Where the model lives (s3://..., pvc://...); empty = pvc://<pvc-claim>/<path in workspace>.
        force: Register even when the eval gate failed.
        description: Version description; empty = a generated one naming the workflow.
        token_env: Env var holding the bearer token; falls back to $KF_PIPELINES_SA_TOKEN_PATH, then the pod's SA token.
        ca_cert: PEM CA bundle that signed the registry's TLS certificate (https only).
        pvc_claim: PVC holding the workspace, optionally with /sub/dir (Argo: {{workflow.name}}-workspace).
        pipeline_name: Pipeline name recorded as provenance.
        workflow_name: Argo workflow name (default: $ARGO_WORKFLOW_NAME).
        workflow_uid: Argo workflow uid (default: $ARGO_WORKFLOW_UID).
        namespace: Kubernetes namespace (default: the pod's service-account namespace).
        dataset_uri: Source dataset URI (default: dataset/summary.json's source); credentials are stripped.
        base_model: Base model trained from (default: what train/metrics.json records).
        retries: Connection retries (exponential backoff 1 s, 2 s, 4 s, ...) before failing.
        storage_uri: Where the publish step stored the model (s3://, pvc://); its publish/publish.json gives the
            URI registered (with the manifest's checksums); empty = the workspace copy (--pvc-claim).

    Returns:
        status (registered | already registered | skipped), ids, uri, version, record path.
    """
    validate_inputs(address, port, name, version, format_version, format_name, author, description)
    ws = Workspace.at(workspace, create=False)
    record_path = ws.registry_dir / "registration.json"
    remove_outputs(ws.registry_dir / "summary.json", record_path)
    try:
        return _register(ws, address, port, name.strip(), _version_name(version), author, format_name,
                         format_version, model_uri, force, description, token_env, ca_cert, pvc_claim,
                         pipeline_name, workflow_name, workflow_uid, namespace, dataset_uri, base_model, retries,
                         storage_uri.strip())
    except StepError as exc:
        ws.log(STEP, f"error: {exc}")
        raise


def _register(ws: Workspace, address: str, port: int, name: str, version: str, author: str, format_name: str,
              format_version: str, model_uri: str, force: bool, description: str, token_env: str, ca_cert: str,
              pvc_claim: str, pipeline_name: str, workflow_name: str, workflow_uid: str, namespace: str,
              data_uri: str, base_model: str, retries: int, storage_uri: str = "") -> dict:
    if retries < 0:
        raise StepError(f"--retries {retries} must be >= 0")
    workflow_name = workflow_name or os.environ.get("ARGO_WORKFLOW_NAME", "")
    workflow_uid = workflow_uid or os.environ.get("ARGO_WORKFLOW_UID", "")
    namespace = _namespace(namespace)
    published: dict[str, Any] = {}
    if storage_uri:
        uri, published = published_location(ws, storage_uri, model_uri)
        model_path = published.get("source", "")
    else:
        uri, model_path = model_location(ws, model_uri, pvc_claim)
    provenance = {
        "base_model": redact_uri(base_model.strip()) if base_model.strip() else base_model_of(ws),
        "dataset.uri": redact_uri(data_uri) if data_uri else summary_dataset_uri(ws),
        "pipeline.name": pipeline_name,
        "workflow.name": workflow_name,
        "workflow.uid": workflow_uid,
        "workflow.namespace": namespace,
    }
    props, gate = build_properties(ws, provenance)
    if published:
        props.update(publish_properties(published))
    props.update(lineage_properties(ws))
    fmt_version = format_version.strip()
    plan: dict[str, Any] = {"name": name, "version": version, "uri": uri or None, "model_path": model_path or None,
                            "format_name": format_name, "format_version": fmt_version, "author": author,
                            "description": description or _description(version, provenance), "gate": gate,
                            **storage_fields(uri), "custom_properties": props}
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    if not address.strip():
        if not uri:
            plan["uri_note"] = "no PVC claim known (local run): pass --pvc-claim or --model-uri"
        _write_record(ws, {"status": "skipped", "reason": "no registry address given (dry run)", "time": now,
                           "would_register": plan})
        ws.log(STEP, f"skipped (no registry address): would register {name} {version} uri={uri or model_path} "
                     f"gate={gate} with {len(props)} properties")
        return {"status": "skipped", "name": name, "version": version, "uri": uri, "gate": gate,
                "record_path": str(ws.registry_dir / "registration.json")}

    if gate == "fail" and not force:
        raise StepError("the eval gate failed (eval/comparison.json): the tuned model regressed past "
                        "--max-regression; not registering it. Pass --force to register anyway")
    if not uri:
        raise StepError("cannot tell where the model lives for the registry: pass --pvc-claim (in Argo the "
                        "workspace PVC, {{workflow.name}}-workspace) or --model-uri s3://...")
    if gate == "fail":
        props["eval.gate_forced"] = True
    server = parse_address(address, port)
    token, token_from = find_token(token_env)
    ws.log(STEP, f"connecting to {server.base}{API_PREFIX}/ (token: {token_from}, tls: {server.secure})")
    conn = connect(server, author, token, ca_cert, retries, lambda msg: ws.log(STEP, msg))
    # Before the first write to the registry: from here on a version may exist with this URI, so the run's
    # cleanup must keep the model's storage even if this step then fails (the exit handler gives the workspace
    # back to the workflow only when the run never got this far: steps/finish.py reads this file).
    write_json(ws.registry_dir / ATTEMPT_JSON, {"status": "registering", "name": name, "version": version,
                                                "uri": uri, "server": server.base, "time": now})
    try:
        result = _ensure_registered(conn, name, version, uri, author, format_name, fmt_version, description,
                                    props, provenance, retries, lambda msg: ws.log(STEP, msg), storage_fields(uri))
    except StepError:
        raise
    except Exception as exc:  # the client's own errors: one line, token scrubbed
        raise StepError(conn.safe(f"registering {name} {version} at {server.base} failed: "
                                  f"{type(exc).__name__}: {exc}")) from None
    record = {**result, "time": now, "server": server.base, "api": f"{API_PREFIX}/", "client": CLIENT_PIN,
              "uri": uri, **storage_fields(uri), "format_name": format_name, "format_version": fmt_version,
              "author": author, "description": description or _description(result["version"], provenance),
              "gate": gate, "forced": bool(force and gate == "fail"), "custom_properties": props}
    path = _write_record(ws, record)
    ws.log(STEP, f"{result['status']}: {name} {result['version']} (model {result['registered_model_id']}, version "
                 f"{result['model_version_id']}, artifact {result['model_artifact_id']}) uri={uri} at {server.base}")
    return {**result, "uri": uri, "gate": gate, "record_path": str(path)}


def _ensure_registered(conn: Connection, name: str, version: str, uri: str, author: str, format_name: str,
                       format_version: str, description: str, props: dict[str, Scalar],
                       provenance: dict[str, str], retries: int, log: Any,
                       storage: dict[str, str] | None = None) -> dict[str, Any]:
    from steps.register.client import with_retries

    def run() -> dict[str, Any]:
        mr = conn.client
        resolved = _resolve_version(conn, name, version, uri)
        rm, mv, art = _existing(conn, name, resolved)
        if art is not None:
            if art.uri != uri:
                raise StepError(f"{name} version {resolved} is already registered with a different URI "
                                f"({art.uri}); give a new --version, or --version auto")
            status = "already registered"
        elif mv is not None:  # an earlier run died between creating the version and its artifact: finish it
            log(f"{name} {resolved} exists without a model artifact; adding it")
            art = mr.async_runner(mr._register_model_artifact(mv, name, uri, model_format_name=format_name,
                                                               model_format_version=format_version,
                                                               **(storage or {}), **_source_fields(provenance)))
            status = "registered"
        else:
            rm = mr.register_model(
                name, uri, version=resolved, model_format_name=format_name, model_format_version=format_version,
                author=author, owner=author, metadata=props,
                version_description=description or _description(resolved, provenance),
                **(storage or {}), **_source_fields(provenance))
            rm, mv, art = _existing(conn, name, resolved)
            status = "registered"
        return {"status": status, "name": name, "version": resolved, "registered_model_id": rm.id,
                "model_version_id": mv.id, "model_artifact_id": art.id}

    return with_retries(run, "register the model", conn.server, retries, log)


def _source_fields(provenance: dict[str, str]) -> dict[str, str | None]:
    """The artifact's model-source fields: which Argo workflow produced it."""
    return {"model_source_kind": "argo", "model_source_class": "workflow",
            "model_source_group": provenance.get("workflow.namespace") or None,
            "model_source_id": provenance.get("workflow.uid") or None,
            "model_source_name": provenance.get("workflow.name") or provenance.get("pipeline.name") or None}


def _description(version: str, provenance: dict[str, str]) -> str:
    run = provenance.get("workflow.name") or "a local run"
    return scrub(f"OSFT fine-tune {version} of {provenance.get('base_model') or 'the base model'}, from {run}")
