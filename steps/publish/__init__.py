"""Step 3b: publish the final model to durable storage, so the registered URI outlives the run.

Only the final checkpoint's serving files (config, weights, tokenizer, generation config: the folder
``train/model`` points at) are published, under a folder unique to the model version or run:
``<prefix>/<name>/<version>/`` for an explicit version, ``<prefix>/<name>/<run name>/`` for ``auto`` (the
version ``auto`` resolves to is only known when register asks the registry, after publishing). The manifest
(``osft-manifest.json``: every file's size and sha256) is written last; see ``store.py`` for the protocol.

Writes ``publish/publish.json`` (status, ``uri``, files with size and sha256, manifest location) and the
bounded ``publish/summary.json``; register reads ``uri`` from publish.json.
"""

import datetime as _dt
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steps.common.errors import StepError
from steps.common.secrets import redact_uri
from steps.common.summary import write_summary
from steps.common.workspace import Workspace, remove_outputs, write_json
from steps.publish.files import MANIFEST_NAME, serving_files
from steps.publish.store import publish_files

STEP = "publish"
SCHEMES = ("s3", "pvc")
PUBLISH_JSON = "publish/publish.json"
LINEAGE_JSON = "publish/lineage.json"  # whether this version was accepted into the lineage (register reads it)
SUMMARY_JSON = "publish/summary.json"
DEFAULT_MOUNT = "/models"  # where the publish-pvc template mounts the models volume
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_CLAIM = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,199}$")


@dataclass(frozen=True)
class StorageTarget:
    """A parsed storage URI: scheme, bucket or claim, and the path prefix under it."""

    scheme: str
    root: str
    prefix: str

    def folder(self, name: str, leaf: str) -> str:
        """The path (under the bucket or claim) of one published model folder."""
        return "/".join(p for p in (self.prefix, name_segment(name), leaf) if p)


def parse_storage_uri(uri: str) -> StorageTarget:
    """``s3://bucket[/prefix]`` or ``pvc://claim[/path]``; StepError naming the fix otherwise."""
    text = uri.strip()
    if redact_uri(text) != text or "?" in text or "#" in text:
        raise StepError("storage_uri holds credentials or a query: give s3://bucket/prefix or pvc://claim/path; "
                        "credentials come from the s3-secret secret")
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in SCHEMES:
        extra = (" (oci:// modelcar images are not published by this pipeline yet: docs/publishing.md)"
                 if scheme == "oci" else "")
        raise StepError(f"storage_uri {text!r} is not s3://bucket/prefix or pvc://claim/path{extra}")
    root, _, prefix = rest.partition("/")
    parts = [p for p in prefix.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise StepError(f"storage_uri {text!r}: '.' and '..' are not allowed in the path")
    if scheme == "s3" and not _BUCKET.match(root):
        raise StepError(f"storage_uri {text!r}: {root!r} is not an S3 bucket name (3-63 of a-z 0-9 . -)")
    if scheme == "pvc" and not _CLAIM.match(root):
        raise StepError(f"storage_uri {text!r}: {root!r} is not a PersistentVolumeClaim name (DNS-1123, lowercase)")
    return StorageTarget(scheme, root, "/".join(parts))


def name_segment(name: str) -> str:
    """The registered model's name as one path segment (characters other than A-Z a-z 0-9 . _ - become '-')."""
    seg = re.sub(r"[^A-Za-z0-9._\-]+", "-", name.strip()).strip("-.")
    if not seg:
        raise StepError(f"name {name!r} gives no usable folder name: use letters, digits, '.', '_' or '-'")
    return seg[:200]


def folder_leaf(version: str, run: str) -> str:
    """The last path segment: the version, or the run's name for ``auto`` (resolved only by register)."""
    v = version.strip()
    if v and v != "auto":
        if not _SEGMENT.match(v):
            raise StepError(f"version {version!r} cannot be a folder name: use e.g. 1.0.0 (or 'auto')")
        return v
    if not run.strip():
        raise StepError("version 'auto' publishes under the run's name, which is unknown: pass --workflow-name "
                        "(Argo sets $ARGO_WORKFLOW_NAME) or an explicit version")
    return name_segment(run)


def validate_inputs(storage_uri: str, name: str, version: str) -> StorageTarget:
    """The step's checks of its settings (the preflight applies them when a storage URI is given)."""
    if not storage_uri.strip():
        raise StepError("storage_uri is empty: give s3://bucket/prefix or pvc://claim/path")
    target = parse_storage_uri(storage_uri)
    name_segment(name)
    if version.strip() not in ("", "auto"):
        folder_leaf(version, "")
    return target


def models_claim(storage_uri: str) -> str:
    """The PVC a ``pvc://`` storage URI names ('' for other schemes or no URI): the publish-pvc pod mounts it."""
    if not storage_uri.strip():
        return ""
    target = parse_storage_uri(storage_uri)
    return target.root if target.scheme == "pvc" else ""


def _gate(ws: Workspace) -> str:
    try:
        return str(json.loads((ws.eval_dir / "comparison.json").read_text(encoding="utf-8")).get("gate") or "n/a")
    except (OSError, ValueError, AttributeError):
        return "n/a"


def publish_model(workspace: str, storage_uri: str, name: str = "osft-model", version: str = "1.0.0",
                  workflow_name: str = "", force: bool = False, part_size_mb: int = 64, concurrency: int = 8,
                  models_mount: str = DEFAULT_MOUNT, models_claim: str = "", continue_from: str = "") -> dict:
    """Publish the final checkpoint's serving files and their manifest to durable storage.

    Args:
        workspace: The run's workspace directory (train/model and eval/comparison.json are read).
        storage_uri: s3://bucket/prefix or pvc://claim/path; the model goes to <prefix>/<name>/<version or run>/.
        name: Registered model name (a path segment of the folder).
        version: Version; 'auto' publishes under the run's name (register resolves 'auto' later).
        workflow_name: The run's name (default: $ARGO_WORKFLOW_NAME); recorded in the manifest.
        force: Publish even when the eval gate failed (as register's --force).
        part_size_mb: Multipart part size in MiB (s3; files above it go up in parts), 5 to 5120.
        concurrency: Parallel transfers (s3: files and parts), 1 to 64.
        models_mount: Where the pvc:// claim is mounted in this pod (the publish-pvc template: /models).
        models_claim: The claim mounted there (checked against the URI's); '' = not checked.
        continue_from: '' = no lineage; 'latest' or a version: once published, the version is accepted into the
            lineage (held-out split, ledger, then the latest pointer, moved only if no other run moved it first).

    Returns:
        status (published | already published), uri, manifest, files, uploaded, skipped, record path.
    """
    target = validate_inputs(storage_uri, name, version)
    if not 5 <= part_size_mb <= 5120:
        raise StepError(f"part_size_mb={part_size_mb} must be in [5, 5120] (S3's part size limits)")
    if not 1 <= concurrency <= 64:
        raise StepError(f"concurrency={concurrency} must be in [1, 64]")
    ws = Workspace.at(workspace, create=False)
    remove_outputs(ws.root / SUMMARY_JSON, ws.root / PUBLISH_JSON, ws.root / LINEAGE_JSON)
    run = workflow_name or os.environ.get("ARGO_WORKFLOW_NAME", "")
    try:
        out = _publish(ws, target, storage_uri.strip(), name.strip(), version.strip(), run, force, part_size_mb,
                       concurrency, Path(models_mount), models_claim.strip())
        if continue_from.strip():
            out["lineage"] = _accept(ws, continue_from.strip(), folder_leaf(version.strip(), run), out["uri"], run,
                                     models_mount)
        return out
    except StepError as exc:
        ws.log(STEP, f"error: {exc}")
        raise


def _publish(ws: Workspace, target: StorageTarget, storage_uri: str, name: str, version: str, run: str,
             force: bool, part_size_mb: int, concurrency: int, mount: Path, claim: str) -> dict:
    gate = _gate(ws)
    if gate == "fail" and not force:
        raise StepError("the eval gate failed (eval/comparison.json): the tuned model regressed past "
                        "--max-regression; not publishing it. Pass --force to publish anyway")
    checkpoint = ws.trained_model()
    files = serving_files(checkpoint)
    rel = target.folder(name, folder_leaf(version, run))
    if target.scheme == "s3":
        from steps.publish.s3 import S3Store

        store: Any = S3Store(target.root, rel, part_size_mb << 20, concurrency)
    else:
        from steps.publish.pvc import PvcStore

        if claim and claim != target.root:
            raise StepError(f"storage_uri names claim {target.root!r} but {claim!r} is mounted at {mount}")
        if not mount.is_dir():
            raise StepError(f"the models volume (claim {target.root}) is not mounted at {mount}: run this step in "
                            "the publish-pvc template, or pass --models-mount")
        store = PvcStore(target.root, rel, mount)
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    meta = {"uri": store.uri, "name": name, "version": version, "run": run,
            "source": checkpoint.relative_to(ws.root).as_posix() if checkpoint.is_relative_to(ws.root)
            else str(checkpoint), "created": now}
    ws.log(STEP, f"publishing {len(files)} files of {meta['source']} to {store.uri} (gate {gate})")
    result = publish_files(store, files, meta, lambda msg: ws.log(STEP, msg))
    seconds = result["seconds"]
    record = {
        "status": result["status"], "storage_uri": storage_uri, "uri": store.uri, "manifest": store.manifest_uri,
        "manifest_sha256": result["manifest_sha256"], "name": name, "version": version, "run": run,
        "source": meta["source"], "gate": gate, "forced": bool(force and gate == "fail"),
        "files": [f.entry() for f in files], "total_bytes": sum(f.size for f in files),
        "uploaded": result["uploaded"], "skipped": result["skipped"], "removed": result["removed"],
        "bytes_uploaded": result["bytes_uploaded"], "seconds": seconds,
        "mb_per_s": round(result["bytes_uploaded"] / 1e6 / seconds, 1) if seconds and result["bytes_uploaded"]
        else None,
        "part_size_mb": part_size_mb, "concurrency": concurrency, "time": now,
    }
    write_summary(ws.root, SUMMARY_JSON, {k: record[k] for k in (
        "status", "uri", "manifest", "total_bytes", "bytes_uploaded", "seconds")} | {
        "files": len(files), "record": PUBLISH_JSON})
    path = write_json(ws.root / PUBLISH_JSON, record)
    return {"status": record["status"], "uri": store.uri, "manifest": store.manifest_uri, "files": len(files),
            "uploaded": len(result["uploaded"]), "skipped": len(result["skipped"]), "record_path": str(path)}


def _accept(ws: Workspace, continue_from: str, leaf: str, uri: str, run: str, mount: str) -> dict[str, Any]:
    """Accept the published version into the lineage, unless the gate failed (then it was only --force published)."""
    from steps.lineage import accept_version

    if _gate(ws) == "fail":
        write_json(ws.root / LINEAGE_JSON, {"accepted": False, "version": leaf,
                                             "reason": "the eval gate failed (published with --force)"})
        ws.log(STEP, f"{leaf} is published (force) but NOT accepted into the lineage: the eval gate failed; the "
                     "latest pointer does not move")
        return {"accepted": False, "version": leaf}
    result = accept_version(ws, continue_from=continue_from, version=leaf, model_uri=uri, run=run,
                            models_mount=mount, log=lambda msg: ws.log(STEP, msg))
    write_json(ws.root / LINEAGE_JSON, result)
    return {"accepted": True, "version": leaf, "parent": result["parent"]}


def published_uri(ws: Workspace, storage_uri: str) -> dict[str, Any]:
    """The publish step's record for ``storage_uri`` (register's source of the URI); StepError when the model was
    not (or not completely) published there."""
    path = ws.root / PUBLISH_JSON
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise StepError(f"storage_uri {storage_uri} is set but {PUBLISH_JSON} is missing: run the publish step "
                        "first (the model is registered only once it is published)") from None
    if record.get("storage_uri") != storage_uri.strip():
        raise StepError(f"{PUBLISH_JSON} records a publish to {record.get('storage_uri')!r}, not {storage_uri!r}: "
                        "run the publish step again")
    if record.get("status") not in ("published", "already published") or not record.get("uri"):
        raise StepError(f"{PUBLISH_JSON} says {record.get('status')!r}: the model is not published")
    return record


__all__ = ["MANIFEST_NAME", "PUBLISH_JSON", "StorageTarget", "models_claim", "parse_storage_uri", "publish_model",
           "published_uri", "validate_inputs"]
