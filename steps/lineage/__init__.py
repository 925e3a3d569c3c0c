"""Continual learning: continue from the last accepted version, and record what each accepted version learned.

The ``lineage`` task (``fetch_lineage``, before the dataset step) reads the lineage store (steps/lineage/store.py)
next to the published models and writes ``lineage/parent.json`` on the workspace: which version this run
continues from (``latest`` = the newest accepted one, or an explicit version; none on the first run), the tag of
the latest pointer as read (for the conditional write at the end), the parent's data watermark (the dataset
step's ``since=last``), and every ancestor's held-out split (downloaded to ``lineage/heldout/``, scored again by
the evaluate step). The parent's published weights are downloaded once, to ``lineage/parent/<version>/`` (files
already there with the same sha256 are not fetched again); the train step trains from that folder. With
``since=last`` the data is listed first: when nothing is newer than the parent's watermark, no weights are
downloaded (``nothing_new`` in parent.json) and the dataset step ends the run as nothing new to learn.

:func:`accept_version` (called by the publish step, after the model is published) writes the new version's
held-out split and ledger and moves the latest pointer by a conditional write; :class:`store.LineageConflict`
when another run was accepted first.
"""

import json
import re
import time
from pathlib import Path
from typing import Any

from steps.common.errors import StepError
from steps.common.secrets import redact_uri
from steps.common.workspace import Workspace, write_json
from steps.lineage.store import (
    HELDOUT,
    LEDGER,
    LEDGER_FORMAT,
    POINTER_FORMAT,
    LineageConflict,
    open_lineage,
)

STEP = "lineage"
PARENT_JSON = "lineage/parent.json"
LATEST = "latest"
SINCE_LAST = "last"
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,199}$")


def validate_lineage(continue_from: str = "", since: str = "", storage_uri: str = "", data_uri: str = "",
                     max_forgetting: float = 0.0) -> None:
    """The pipeline's checks of the continual-learning settings (the preflight applies them)."""
    cf, sn = continue_from.strip(), since.strip()
    if cf and cf != LATEST and not _VERSION.match(cf):
        raise StepError(f"continue_from={continue_from!r}: must be '' (train the base model), 'latest' or a "
                        "published version such as 1.2.0")
    if cf and not storage_uri.strip():
        raise StepError(f"continue_from={cf!r} needs a storage URI (phase_04_registry_opt_storage_uri): the "
                        "lineage of accepted versions lives next to the published models")
    if cf and storage_uri.strip() and not storage_uri.strip().startswith(("s3://", "pvc://")):
        raise StepError(f"continue_from={cf!r} needs an s3:// or pvc:// storage URI")
    if sn not in ("", SINCE_LAST):
        raise StepError(f"since={since!r}: must be '' (all the data) or 'last' (only what is new since the parent)")
    if sn == SINCE_LAST and not cf:
        raise StepError("since=last needs continue_from (phase_02_train_opt_continue_from=latest): the watermark "
                        "is the parent version's")
    if sn == SINCE_LAST and data_uri.strip().startswith(("hf://", "http://", "https://")):
        raise StepError("since=last needs an s3:// prefix or a folder (or one file): a Hub dataset or a URL has no "
                        "modification times to compare")
    if isinstance(max_forgetting, bool) or not isinstance(max_forgetting, int | float) or not (
            max_forgetting >= 0.0) or max_forgetting != max_forgetting:
        raise StepError(f"max_forgetting={max_forgetting!r}: must be a number >= 0 (the largest allowed rise of "
                        "the held-out loss, nats per token, on any earlier version's held-out set)")


def read_parent(ws: Workspace) -> dict[str, Any] | None:
    """``lineage/parent.json`` of this run (None: the run does not continue from a lineage)."""
    try:
        doc = json.loads((ws.root / PARENT_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def require_parent(ws: Workspace, continue_from: str) -> dict[str, Any] | None:
    """The lineage record when ``continue_from`` is set (StepError when the lineage task did not write it)."""
    if not continue_from.strip():
        return None
    doc = read_parent(ws)
    if doc is None or doc.get("continue_from") != continue_from.strip():
        raise StepError(f"continue_from={continue_from.strip()!r} but {PARENT_JSON} is missing or for another "
                        "setting: run the lineage step first (osft-pipeline step lineage)")
    return doc


def parent_model_dir(ws: Workspace, continue_from: str) -> Path | None:
    """The parent's weights on the workspace (None: no parent, train the base model)."""
    doc = require_parent(ws, continue_from)
    if not doc or not doc.get("model_dir"):
        return None
    return ws.root / str(doc["model_dir"])


def fetch_lineage(workspace: str, storage_uri: str, name: str = "osft-model", continue_from: str = LATEST,
                  models_mount: str = "/models", models_claim: str = "", data_uri: str = "",
                  since: str = "") -> dict[str, Any]:
    """Find the version this run continues from and bring what it needs onto the workspace.

    Args:
        workspace: The run's workspace directory (writes lineage/parent.json, lineage/parent/, lineage/heldout/).
        storage_uri: s3://bucket/prefix or pvc://claim/path: where the models and their lineage are published.
        name: The model name (the folder under the storage URI).
        continue_from: 'latest' (the newest accepted version; none on the first run) or an explicit version.
        models_mount: Where a pvc:// claim is mounted in this pod (the lineage-pvc template: /models).
        models_claim: The claim mounted there (checked against the URI's); '' = not checked.
        data_uri: The run's data (with ``since='last'``: listed first; when no file is newer than the parent's
            watermark, the parent's weights are not downloaded and the dataset step ends the run as nothing new).
        since: '' or 'last' (the dataset step's setting).

    Returns:
        parent version ('' on the first run), model_dir, the number of held-out sets, what was downloaded.
    """
    ws = Workspace.at(workspace)
    (ws.root / PARENT_JSON).unlink(missing_ok=True)
    try:
        validate_lineage(continue_from, "", storage_uri)
        if not continue_from.strip():
            raise StepError("continue_from is empty: nothing to continue from (the lineage step runs only with it)")
        from steps.publish import parse_storage_uri

        target = parse_storage_uri(storage_uri)
        if target.scheme == "pvc" and models_claim and models_claim != target.root:
            raise StepError(f"storage_uri names claim {target.root!r} but {models_claim!r} is mounted at "
                            f"{models_mount}")
        return _fetch(ws, storage_uri.strip(), name.strip(), continue_from.strip(), models_mount,
                      data_uri.strip() if since.strip() == SINCE_LAST else "")
    except StepError as exc:
        ws.log(STEP, f"error: {exc}")
        raise


def _fetch(ws: Workspace, storage_uri: str, name: str, continue_from: str, mount: str, new_data_in: str = ""
           ) -> dict[str, Any]:
    started = time.monotonic()
    store = open_lineage(storage_uri, name, mount)
    pointer = store.pointer()
    version = pointer.version if continue_from == LATEST else continue_from
    record: dict[str, Any] = {"continue_from": continue_from, "storage_uri": storage_uri, "name": name,
                              "lineage_uri": f"{store.uri}/lineage", "pointer_tag": pointer.tag,
                              "pointer_version": pointer.version, "parent": version, "model_dir": "",
                              "model_uri": "", "watermark": None, "chain": [], "ancestors": [], "fetched": {}}
    if not version:
        ws.log(STEP, f"no accepted version under {store.uri} yet: this run trains the base model and starts the "
                     "lineage")
        write_json(ws.root / PARENT_JSON, record)
        return {"parent": "", "model_dir": "", "heldout_sets": 0, "fetched": 0}
    ledger = _ledger(store, version)
    chain = [str(v) for v in ledger.get("chain") or [version]]
    ancestors = []
    heldout_dir = ws.root / "lineage" / "heldout"
    heldout_dir.mkdir(parents=True, exist_ok=True)
    for v in chain:
        doc = ledger if v == version else _ledger(store, v)
        data = store.read(f"{v}/{HELDOUT}")
        if data is None:
            raise StepError(f"{store.uri}/lineage/{v}/{HELDOUT} is missing: the lineage is damaged (an accepted "
                            "version always keeps its held-out split)")
        path = heldout_dir / f"{v}.jsonl"
        path.write_bytes(data)
        own = (doc.get("scores") or {}).get(v)
        ancestors.append({"version": v, "heldout": path.relative_to(ws.root).as_posix(),
                          "rows": sum(1 for line in data.splitlines() if line.strip()),
                          "own_loss": own.get("loss") if isinstance(own, dict) else None,
                          "scores": doc.get("scores") or {}})
    record.update({"model_uri": ledger.get("model_uri", ""), "watermark": ledger.get("watermark"), "chain": chain,
                   "ancestors": ancestors, "parent_ledger": ledger})
    if new_data_in and not _anything_new(new_data_in, ws, ledger.get("watermark")):
        ws.log(STEP, f"continuing from version {version}: no file under {redact_uri(new_data_in)} is newer than its "
                     "data watermark, so its weights are not downloaded (nothing new to learn)")
        record.update({"nothing_new": True, "seconds": round(time.monotonic() - started, 2)})
        write_json(ws.root / PARENT_JSON, record)
        return {"parent": version, "model_dir": "", "heldout_sets": len(ancestors), "fetched": 0}
    dest = ws.root / "lineage" / "parent" / version
    how = "the latest accepted" if continue_from == LATEST else "as asked"
    ws.log(STEP, f"continuing from version {version} ({how}; chain {' -> '.join(chain)}): fetching its published "
                 f"weights to {dest.relative_to(ws.root)}")
    fetched = store.fetch_model(version, dest)
    ws.log(STEP, f"parent weights: {len(fetched['fetched'])} file(s) fetched ({fetched['bytes'] / 1e6:.1f} MB), "
                 f"{len(fetched['skipped'])} already on the workspace; {len(ancestors)} held-out set(s) to re-score")
    record.update({"model_dir": dest.relative_to(ws.root).as_posix(), "fetched": fetched,
                   "seconds": round(time.monotonic() - started, 2)})
    write_json(ws.root / PARENT_JSON, record)
    return {"parent": version, "model_dir": str(dest), "heldout_sets": len(ancestors),
            "fetched": len(fetched["fetched"])}


def _anything_new(data_uri: str, ws: Workspace, watermark: Any) -> bool:
    from steps.dataset import anything_new
    from steps.dataset.since import from_doc

    return anything_new(data_uri, str(ws.root), from_doc(watermark))


def _ledger(store: Any, version: str) -> dict[str, Any]:
    data = store.read(f"{version}/{LEDGER}")
    try:
        doc = json.loads(data) if data is not None else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or doc.get("format") != LEDGER_FORMAT:
        raise StepError(f"version {version!r} has no ledger under {store.uri}/lineage/{version}/: it is not an "
                        "accepted version; continue from 'latest' or from a version that was accepted")
    return doc


def accept_version(ws: Workspace, *, continue_from: str, version: str, model_uri: str, run: str,
                   log: Any, models_mount: str = "/models") -> dict[str, Any]:
    """Record the just-published ``version`` as accepted: held-out split, ledger, then the conditional move of the
    latest pointer. On a conflict the ledger and split are removed again and LineageConflict is raised."""
    parent = require_parent(ws, continue_from) or {}
    store = open_lineage(parent["storage_uri"], parent["name"], models_mount)
    now = store.pointer()
    if now.version == version and (now.doc or {}).get("run") == run and run:
        log(f"{version} is already the latest of {store.uri} (accepted by an earlier attempt of this run)")
        ledger = json.loads(store.read(f"{version}/{LEDGER}") or b"{}")
        return {"accepted": True, "version": version, "parent": ledger.get("parent", ""),
                "chain": ledger.get("chain", []), "lineage_uri": f"{store.uri}/lineage", "ledger": ledger}
    ledger = build_ledger(ws, parent, version, model_uri, run)
    heldout = ws.eval_jsonl.read_bytes() if ws.eval_jsonl.is_file() else b""
    store.write(f"{version}/{HELDOUT}", heldout)
    store.write(f"{version}/{LEDGER}", (json.dumps(ledger, indent=1) + "\n").encode())
    pointer = {"format": POINTER_FORMAT, "version": version, "parent": ledger["parent"], "model_uri": model_uri,
               "run": run, "time": ledger["created"]}
    try:
        store.move_pointer((json.dumps(pointer, indent=1) + "\n").encode(), parent.get("pointer_tag"))
    except LineageConflict:
        store.delete(f"{version}/{LEDGER}")
        store.delete(f"{version}/{HELDOUT}")
        raise
    log(f"accepted {version} as the latest of {store.uri} (parent {ledger['parent'] or 'the base model'}; chain "
        f"{' -> '.join(ledger['chain'])})")
    return {"accepted": True, "version": version, "parent": ledger["parent"], "chain": ledger["chain"],
            "lineage_uri": f"{store.uri}/lineage", "ledger": ledger}


def build_ledger(ws: Workspace, parent: dict[str, Any], version: str, model_uri: str, run: str) -> dict[str, Any]:
    """The ledger of ``version``: parent, chain, data watermark, and its scores on every held-out set so far."""
    import datetime as dt

    from steps.lineage.retention import ledger_scores

    try:
        dataset = json.loads(ws.dataset_summary.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        dataset = {}
    try:
        comparison = json.loads((ws.eval_dir / "comparison.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        comparison = {}
    retention = comparison.get("retention") or {}
    chain = [*[str(v) for v in parent.get("chain") or []], version]
    return {
        "format": LEDGER_FORMAT, "version": version, "parent": parent.get("parent") or "", "chain": chain,
        "model_uri": model_uri, "run": run, "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "base_model": parent.get("model_uri") or comparison.get("base_model_ref", ""),
        "data": dataset.get("source", ""),
        "watermark": dataset.get("watermark"), "since": dataset.get("since", ""),
        "rows": {"train": (dataset.get("train") or {}).get("rows"), "heldout": (dataset.get("eval") or {}).get("rows")},
        "scores": ledger_scores(retention, version),
        "backward_transfer": retention.get("backward_transfer"), "max_forgetting": retention.get("max_forgetting"),
        "worst_forgetting": retention.get("worst_forgetting"),
        "benchmarks": {f"{r['task']}/{r['metric']}": r.get("tuned") for r in comparison.get("rows") or []
                       if r.get("task") != "held_out"},
    }


__all__ = ["LATEST", "PARENT_JSON", "SINCE_LAST", "LineageConflict", "accept_version", "fetch_lineage",
           "parent_model_dir", "read_parent", "require_parent", "validate_lineage"]
