"""Resolve the base model to a local Hugging Face checkpoint directory: the one resolver train and evaluate share.

Accepted forms: a local directory (``/models/x``, ``./x``, ``~/x``), ``hf://org/name`` (prefix stripped),
a bare Hugging Face id ``org/name`` (downloaded with ``HF_TOKEN``), and ``oci://registry/repo:tag``
(a modelcar image pulled with ``skopeo`` using ``OCI_PULL_SECRET_MODEL_DOWNLOAD`` as the Docker auth
file, then its ``models/`` layer members extracted). Every failure is a one-line StepError.

Remote models land on the workspace, so every step (each its own pod) sees the same copy: OCI images under
``<workspace>/base-model/<hash>/``, Hub downloads in ``<workspace>/.cache/huggingface/hub`` unless the model
is already in the local Hugging Face cache (``HF_HOME``; offline, that cache is the only source). The train
step records the directory it used in ``train/metrics.json`` (``base_model_dir``); evaluate loads that very
copy for the base-vs-tuned comparison (:func:`recorded_base_dir`), so nothing is downloaded twice.
"""

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from steps.common.errors import StepError
from steps.common.secrets import redact_uri, scrub

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
_HF_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)?$")
_OFFLINE = ("1", "true", "yes", "on")


def is_complete_model_dir(path: Path, need_tokenizer: bool = True) -> bool:
    """A directory with config.json, weights and (optionally) a tokenizer."""
    if not (path / "config.json").is_file():
        return False
    if not any((path / w).is_file() for w in WEIGHT_FILES) and not any(path.glob("model-*.safetensors")):
        return False
    return not need_tokenizer or any((path / t).is_file() for t in TOKENIZER_FILES)


def _looks_local(ref: str) -> bool:
    return ref.startswith(("/", "./", "../", "~")) or os.path.sep in ref and Path(ref).expanduser().exists()


def local_model_dir(ref: str) -> Path:
    """The checkpoint folder a local model reference names; StepError when missing or not a checkpoint."""
    path = Path(ref).expanduser().resolve()
    if not path.exists():
        raise StepError(f"model {ref}: no such local directory; pass an existing model folder, an HF id or oci://")
    if not path.is_dir():
        raise StepError(f"model {ref}: is a file; pass the model folder (with config.json) instead")
    if not is_complete_model_dir(path, need_tokenizer=False):
        raise StepError(f"model {ref}: {path} holds no config.json and weights; it is not a Hugging Face checkpoint")
    return path


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _OFFLINE


def workspace_hub_cache(root: Path) -> Path:
    """Where Hub models are downloaded on the workspace (the layout of ``HF_HOME``'s ``hub`` folder)."""
    return root / ".cache" / "huggingface" / "hub"


def _cached(repo: str, cache_dir: Path | None) -> Path | None:
    from huggingface_hub import snapshot_download

    try:
        found = Path(snapshot_download(repo, local_files_only=True, cache_dir=cache_dir))
    except Exception:  # noqa: BLE001 - not cached (the library raises several types)
        return None
    return found if is_complete_model_dir(found, need_tokenizer=False) else None


def _local_hub_copy(repo: str, root: Path | None) -> Path | None:
    """The Hub model's copy in the local HF cache or the workspace's; StepError offline when there is none."""
    ws_cache = workspace_hub_cache(root) if root is not None else None
    for cache in (None, ws_cache) if ws_cache is not None else (None,):
        found = _cached(repo, cache)
        if found is not None:
            return found
    if _offline():
        raise StepError(
            f"model {repo}: the Hugging Face Hub is offline here (HF_HUB_OFFLINE=1) and the model is not in "
            "the local cache; pass a local model folder (e.g. from `osft-pipeline demo-model DIR`) or oci://"
        )
    return None


def _hub_download(repo: str, root: Path | None) -> Path:
    """A local copy of a Hub model: the HF cache's or the workspace's if present, else downloaded to the workspace."""
    found = _local_hub_copy(repo, root)
    if found is not None:
        return found
    ws_cache = workspace_hub_cache(root) if root is not None else None
    from huggingface_hub import snapshot_download

    token = os.environ.get("HF_TOKEN", "").strip() or None
    try:
        return Path(snapshot_download(repo, token=token, cache_dir=ws_cache,
                                      allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja",
                                                      "*.py", "*.tiktoken"]))
    except Exception as exc:
        text = scrub(str(exc).split("\n")[0])[:200]
        hint = " (gated or private? set the hf-token secret)" if not token else ""
        raise StepError(f"model {repo}: cannot download from the Hugging Face Hub: {text}{hint}") from None


def oci_auth_json(raw: str) -> str | None:
    """Validate OCI_PULL_SECRET_MODEL_DOWNLOAD (a Docker config JSON); None when unset."""
    if not raw.strip():
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        raise StepError("OCI_PULL_SECRET_MODEL_DOWNLOAD is not valid JSON: it must be a Docker config "
                        '({"auths": {"registry": {"auth": "..."}}})') from None
    if not isinstance(doc, dict) or not isinstance(doc.get("auths"), dict) or not doc["auths"]:
        raise StepError("OCI_PULL_SECRET_MODEL_DOWNLOAD must be a Docker config JSON with a non-empty 'auths' field")
    return raw


def _auth_values(raw: str | None) -> tuple[str, ...]:
    """Every string inside a Docker config (tokens, passwords), to mask in error messages."""
    out: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, str) and len(node) >= 4:
            out.append(node)

    if raw:
        with contextlib.suppress(ValueError):
            walk(json.loads(raw))
    return tuple(out)


@contextlib.contextmanager
def private_auth_file(content: str | None):  # noqa: ANN201
    """Write ``content`` to a 0600 temp file for the duration of the block; yields its path (or None)."""
    if content is None:
        yield None
        return
    fd, name = tempfile.mkstemp(prefix="oci-auth-", suffix=".json")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(content)
        yield name
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def _extract_models(image_dir: Path, out: Path) -> None:
    """Extract regular files under ``models/`` from every tar layer of a skopeo ``dir:`` image."""
    for blob in sorted(image_dir.iterdir()):
        if not blob.is_file() or blob.suffix == ".json" or blob.name in ("manifest", "version", "index.json"):
            continue
        try:
            tf = tarfile.open(blob, "r:*")
        except tarfile.TarError:
            continue  # config blob or other non-tar layer
        with tf:
            members = [m for m in tf.getmembers()
                       if m.isreg() and m.name.lstrip("./").startswith("models/")]
            tf.extractall(out, members=members, filter="data")


def _find_model_dir(root: Path) -> Path | None:
    base = root / "models" if (root / "models").is_dir() else root
    for cfg in sorted(base.rglob("config.json"), key=lambda p: len(p.parts)):
        if is_complete_model_dir(cfg.parent, need_tokenizer=False):
            return cfg.parent
    return None


def pull_oci(ref: str, dest_root: Path) -> Path:
    """Pull ``oci://registry/repo:tag`` with skopeo into ``dest_root`` (reused when already complete)."""
    image = ref.removeprefix("oci://")
    if not re.match(r"^[^/\s]+/\S+$", image):
        raise StepError(f"model {ref}: an oci:// model must look like oci://registry/repository[:tag|@digest]")
    key = hashlib.sha256(image.encode()).hexdigest()[:16]
    target = dest_root / key
    marker = target / ".complete"
    if marker.is_file() and (found := _find_model_dir(target / "model")):
        return found  # pulled before (by train, or an earlier attempt): no skopeo, no second download
    auth = oci_auth_json(os.environ.get("OCI_PULL_SECRET_MODEL_DOWNLOAD", ""))
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        raise StepError(f"model {ref}: skopeo is not installed, so oci:// models cannot be pulled; install skopeo "
                        "in the step image, or pass a local model folder or an HF id instead")
    key = hashlib.sha256(image.encode()).hexdigest()[:16]
    target = dest_root / key
    marker = target / ".complete"
    if marker.is_file() and (found := _find_model_dir(target / "model")):
        return found
    shutil.rmtree(target, ignore_errors=True)
    image_dir, model_dir = target / "image", target / "model"
    image_dir.mkdir(parents=True)
    model_dir.mkdir()
    with private_auth_file(auth) as authfile:
        cmd = [skopeo, "copy", *(["--authfile", authfile] if authfile else []), f"docker://{image}", f"dir:{image_dir}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        err = scrub(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}",
                    extra=_auth_values(auth))
        raise StepError(f"model {ref}: skopeo copy failed: {err[:300]}")
    _extract_models(image_dir, model_dir)
    shutil.rmtree(image_dir, ignore_errors=True)  # the layers are extracted; keep one copy only
    found = _find_model_dir(model_dir)
    if found is None:
        shutil.rmtree(target, ignore_errors=True)
        raise StepError(f"model {ref}: the image holds no Hugging Face model (config.json + weights) under models/")
    marker.write_text(image + "\n", encoding="utf-8")
    return found


def check_model_ref(ref: str) -> str:
    """The kind of a model reference (``local``, ``hub`` or ``oci``) from its text alone; StepError when malformed.

    No file, network or registry access: the pipeline's preflight applies it wherever parameters are checked.
    """
    if not isinstance(ref, str) or not ref.strip():
        raise StepError("model is empty: pass an HF id (org/name), hf://org/name, a local folder or oci://...")
    ref = ref.strip()
    if ref.startswith("oci://"):
        if not re.match(r"^[^/\s]+/\S+$", ref.removeprefix("oci://")):
            raise StepError(f"model {ref}: an oci:// model must look like oci://registry/repository[:tag|@digest]")
        return "oci"
    if ref.startswith("hf://"):
        if not _HF_ID.match(ref.removeprefix("hf://").strip("/")):
            raise StepError(f"model {ref}: hf:// must be followed by a Hugging Face id such as org/name")
        return "hub"
    if _looks_local(ref) or Path(ref).expanduser().is_dir():
        return "local"
    if "://" in ref:
        raise StepError(f"model {ref}: unsupported scheme; use an HF id, hf://, oci:// or a local folder")
    if _HF_ID.match(ref):
        return "hub"
    raise StepError(f"model {ref}: not a local folder nor a Hugging Face id (org/name)")


def check_model_available(ref: str, root: Path) -> None:
    """What the train step checks before any download or training, without downloading: a local folder exists
    and holds a checkpoint; offline, a Hub model is in the local cache (or the workspace's). ``oci://``: syntax."""
    kind = check_model_ref(ref)
    if kind == "local":
        local_model_dir(ref.strip())
    elif kind == "hub":
        _local_hub_copy(ref.strip().removeprefix("hf://").strip("/"), root)


def resolve_model(ref: str, root: Path) -> Path:
    """A local directory holding the base model named by ``ref``; remote models land under the workspace ``root``."""
    kind = check_model_ref(ref)
    ref = ref.strip()
    if kind == "oci":
        return pull_oci(ref, root / "base-model")
    if kind == "local":
        return local_model_dir(ref)
    return _hub_download(ref.removeprefix("hf://").strip("/"), root)


def recorded_base_dir(ref: str, train_metrics: dict) -> Path | None:
    """The base-model directory the train step used for ``ref``, from its ``train/metrics.json`` (None: not recorded
    for this reference, or no longer a model directory)."""
    recorded = str(train_metrics.get("base_model") or "")
    path = str(train_metrics.get("base_model_dir") or "")
    if not path or recorded != redact_uri(ref.strip()):
        return None
    found = Path(path)
    return found if is_complete_model_dir(found, need_tokenizer=False) else None
